"""Options shared by every subcommand that reads records (count now; compress, validate later)."""

from __future__ import annotations

import functools
from typing import Annotated

# The values some options take, for shell completion (tests/test_help_and_completion.py checks
# them against the library's own lists: omnitok.io.writers.OUTPUT_FORMATS, omnitok.options).
INPUT_FORMATS = ("auto", "jsonl", "json", "parquet", "text")
OUTPUT_FORMATS = ("auto", "number", "jsonl", "json", "csv", "parquet", "table")
COMPRESS_FORMATS = ("auto", "jsonl", "json", "text")
REPORT_FORMATS = ("auto", "table", "jsonl", "json", "junit", "github", "markdown")
METHODS = ("auto", "combined", "bm25", "dense")
METRICS = ("rouge-l", "compression", "bertscore", "bleu", "chrf")
ON_ERROR = ("stop", "skip", "record")
ENGINES = ("auto", "gigatoken", "tiktoken", "pybpe", "tokenizers", "sentencepiece", "transformers")
CACHE_MODES = ("auto", "on", "off")


def complete(values: tuple[str, ...]):
    """Shell completion of an option's values (typer's `autocompletion`)."""

    def completions(incomplete: str) -> list[str]:
        return [v for v in values if v.startswith(incomplete)]

    return completions


def complete_list(values: tuple[str, ...]):
    """Completion of a comma-separated list (--metrics rouge-l,bl<TAB>): the values not given yet."""

    def completions(incomplete: str) -> list[str]:
        *given, last = incomplete.split(",")
        head = "".join(g + "," for g in given)
        return [head + v for v in values if v.startswith(last) and v not in given]

    return completions


def complete_model(incomplete: str) -> list[str]:
    """Shell completion of -m: the model ids the registry knows (omnitok models)."""
    from .. import api

    ids = (m["model"] for fam in api.model_families() for m in fam["models"] if m.get("kind") in ("id", "bedrock id"))
    return sorted({i for i in ids if i.startswith(incomplete)})


def number(low=None, high=None, *, low_open: bool = False, integer: bool = False):
    """A callback for a numeric option: finite and within the bounds (omnitok.numbers.checked),
    else a usage error naming the option (exit 2)."""
    from ..numbers import checked

    def callback(_ctx, param, value):  # typer passes the click context and parameter by position
        return checked(_name(param), value, low, high, low_open=low_open, integer=integer)

    return callback


def _name(param) -> str:
    """How an option is named in a message: its long form (`--jobs`)."""
    return max(param.opts, key=len) if param.opts else param.name


def not_empty(_ctx, param, value):
    """A callback refusing an empty value (`-o "$OUT"` with OUT unset): it was taken as no value
    at all, the results going to stdout or the default field counted without a word."""
    if value == "" or (isinstance(value, (list, tuple)) and "" in value):
        from ..errors import UsageError

        raise UsageError(f"{_name(param)} is empty; give a value or leave the option out")
    return value


def jobs_value(value: str | None) -> int | None:
    """--jobs: "auto" (None: the library's rule) or a whole number from 1 to 1024."""
    if value is None or value == "auto":
        return None
    if value.isascii() and value.isdigit() and 1 <= int(value) <= 1024:
        return int(value)
    from ..errors import UsageError, shown

    raise UsageError(f"--jobs must be auto or a whole number from 1 to 1024, not {shown(value)}")


def cache_mode(cache: str, no_cache: bool) -> str:
    """The one --cache value of a command that takes --cache and --no-cache (every command that
    caches takes both, spelled the same)."""
    if cache not in ("auto", "on", "off"):
        from ..errors import UsageError

        raise UsageError(f"--cache must be auto, on or off, not {cache!r}")
    return "off" if no_cache else cache


def split_fields(values: list[str] | None) -> tuple[str, ...] | None:
    """The --field names, repeated or comma-separated (records.fields_given's rule); a name given
    twice is a usage error (its text would be counted twice)."""
    from .. import api

    return api.fields_given(values or None, "--field")


def _option(annotation, *decls: str, **settings) -> tuple:
    return annotation, "Option", decls, settings


def _argument(annotation, **settings) -> tuple:
    return annotation, "Argument", (), settings


# The option types (`Files`, `Model`, ...): typer's parameter declarations, read as this module's
# attributes (opt.Model) in the annotations of the commands' parameters. They are made from this
# table on first use (__getattr__), when typer builds a command: a plain count
# (cli.app._plain_count) reads no annotation and so never imports typer.
_DECLARED: dict[str, tuple] = {
    "Files": _argument(
        list[str] | None,
        help="Input files (JSONL, JSON, Parquet, text; .gz by suffix). '-' or none: stdin.",
        show_default=False,
    ),
    "Model": _option(
        str | None,
        "--model",
        "-m",
        help="Model id, e.g. gpt-4o, gpt-4.1-mini, o3, text-embedding-3-small. Default: $OMNITOK_MODEL, else gpt-4o.",
        show_default=False,
        autocompletion=complete_model,
    ),
    "Encoding": _option(
        str | None,
        "--encoding",
        help="Count with this encoding (o200k_base, cl100k_base, ...) instead of the model's.",
        show_default=False,
    ),
    "Field": _option(
        list[str] | None,
        "--field",
        "-f",
        callback=not_empty,
        help="Field to count: a name, a dotted path (meta.body), or a chat "
        "'messages' array. Repeat or comma-separate to count several. Default: 'messages', "
        "else 'text'.",
        show_default=False,
    ),
    "IdField": _option(str, "--id-field", help="Field copied to the output as the record's id when present."),
    "InputFormat": _option(
        str,
        "--input-format",
        help="auto (by suffix: .jsonl/.ndjson JSONL, .json a JSON document, .parquet/.pq Parquet, else "
        "text; stdin and pipes: JSONL if the first non-blank line is {...}, Parquet if it starts with "
        "PAR1, a JSON document if it starts with \\[ or { and parses as one, else text), jsonl, json "
        "(an array of records or one record, at most 64 MiB), parquet, text.",
        autocompletion=complete(INPUT_FORMATS),
    ),
    "Lines": _option(bool, "--lines", help="Text input: count each line as a record (default: the whole input)."),
    "Format": _option(
        str,
        "--format",
        help="auto (a bare number for one text, else JSONL; or by -o suffix), "
        "number, jsonl, json, csv, parquet, table.",
        autocompletion=complete(OUTPUT_FORMATS),
    ),
    "Output": _option(
        str | None,
        "--output",
        "-o",
        callback=not_empty,
        help="Write results here instead of stdout.",
        show_default=False,
    ),
    "OnError": _option(
        str,
        "--on-error",
        help="Bad record: stop (exit 1), skip (report on stderr, exit 4), or "
        "record (an error row in the output, exit 4).",
        autocompletion=complete(ON_ERROR),
    ),
    "Jobs": _option(
        str | None,
        "--jobs",
        "-j",
        callback=lambda _ctx, _param, value: jobs_value(value),
        metavar="auto|N",
        help="Worker processes: auto (the default: the idle cores for large inputs; small ones stay "
        "in-process) or 1 to 1024.",
        show_default=False,
    ),
    "Quiet": _option(bool, "--quiet", "-q", help="No progress bar or notes on stderr."),
    "Engine": _option(
        str,
        "--engine",
        help="Engine: auto (fastest exact), gigatoken, tiktoken (OpenAI reference), pybpe (small inputs), "
        "tokenizers (Hugging Face reference), sentencepiece (tokenizer.model), transformers.",
        autocompletion=complete(ENGINES),
    ),
    "Tokenizer": _option(
        str | None,
        "--tokenizer",
        help="Hugging Face models: a directory (or tokenizer.json) holding the "
        "tokenizer files, or a llama.cpp .gguf model file, instead of looking them up.",
        show_default=False,
    ),
    "NoSpecialTokens": _option(
        bool,
        "--no-special-tokens",
        help="Hugging Face models: leave out the special tokens (BOS, ...) "
        "the tokenizer adds to a text. Chats are framed by their template either way.",
    ),
    "Online": _option(
        bool | None,
        "--online/--offline",
        help="Use the provider's count API where one exists (Anthropic, "
        "Gemini, Bedrock, vLLM) with its credentials from the environment. Default: the "
        "config's prefer_offline (offline).",
        show_default=False,
    ),
    "Strict": _option(
        bool,
        "--strict",
        help="Fail (exit 5) instead of giving an estimate: no heuristic, no "
        "calibrated estimate, no fallback from an exact count to an estimate.",
    ),
    "CacheMode": _option(
        str,
        "--cache",
        help="auto (cache what is dear to redo: online counts, embeddings, BERTScore), on (cache everything), off.",
        autocompletion=complete(CACHE_MODES),
    ),
    "NoCache": _option(bool, "--no-cache", help="Same as --cache off."),
    "CacheDir": _option(
        str | None,
        "--cache-dir",
        help="L2 disk cache directory ('none': no disk tier). Default: $XDG_CACHE_HOME/omnitok.",
        show_default=False,
    ),
    "L3Url": _option(
        str | None,
        "--l3-url",
        help="L3 Redis/Valkey URL (redis://host:port/db). Default: $L3_CACHE_URL.",
        show_default=False,
    ),
}


def __getattr__(name: str):
    if name in _DECLARED:
        return _declared(name)
    if name in ("Option", "Argument"):  # for the commands' own options, in Annotated form
        import typer

        return getattr(typer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _declared(name: str):
    import typer

    annotation, kind, decls, settings = _DECLARED[name]
    return Annotated[annotation, getattr(typer, kind)(*decls, **settings)]
