"""Options shared by every subcommand that reads records (count now; compress, validate later)."""

from __future__ import annotations

from typing import Annotated

import typer

# The values some options take, for shell completion (tests/test_help_and_completion.py checks
# them against the library's own lists: omnitok.io.writers.OUTPUT_FORMATS, omnitok.options).
INPUT_FORMATS = ("auto", "jsonl", "json", "parquet", "text")
OUTPUT_FORMATS = ("auto", "number", "jsonl", "json", "csv", "parquet", "table")
COMPRESS_FORMATS = ("auto", "jsonl", "json", "text")
REPORT_FORMATS = ("auto", "table", "jsonl", "json", "junit", "github", "markdown")
METHODS = ("auto", "combined", "bm25", "dense")
METRICS = ("rouge-l", "compression", "bertscore", "bleu", "chrf")
ON_ERROR = ("stop", "skip", "record")
ENGINES = ("auto", "gigatoken", "tiktoken", "tokenizers", "sentencepiece", "transformers")
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

    def callback(param: typer.CallbackParam, value):
        name = max(param.opts, key=len) if param.opts else param.name
        return checked(name, value, low, high, low_open=low_open, integer=integer)

    return callback


Files = Annotated[
    list[str] | None,
    typer.Argument(
        help="Input files (JSONL, JSON, Parquet, text; .gz by suffix). '-' or none: stdin.", show_default=False
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Model id, e.g. gpt-4o, gpt-4.1-mini, o3, text-embedding-3-small. Default: $OMNITOK_MODEL, else gpt-4o.",
        show_default=False,
        autocompletion=complete_model,
    ),
]
Encoding = Annotated[
    str | None,
    typer.Option(
        "--encoding",
        help="Count with this encoding (o200k_base, cl100k_base, ...) instead of the model's.",
        show_default=False,
    ),
]
Field = Annotated[
    list[str] | None,
    typer.Option(
        "--field",
        "-f",
        help="Field to count: a name, a dotted path (meta.body), or a chat "
        "'messages' array. Repeat or comma-separate to count several. Default: 'messages', "
        "else 'text'.",
        show_default=False,
    ),
]
IdField = Annotated[
    str,
    typer.Option("--id-field", help="Field copied to the output as the record's id when present."),
]
InputFormat = Annotated[
    str,
    typer.Option(
        "--input-format",
        help="auto (by suffix: .jsonl/.ndjson JSONL, .json a JSON document, .parquet/.pq Parquet, else "
        "text; stdin and pipes: JSONL if the first non-blank line is {...}, Parquet if it starts with "
        "PAR1, a JSON document if it starts with \\[ or { and parses as one, else text), jsonl, json "
        "(an array of records or one record, at most 64 MiB), parquet, text.",
        autocompletion=complete(INPUT_FORMATS),
    ),
]
Lines = Annotated[
    bool,
    typer.Option("--lines", help="Text input: count each line as a record (default: the whole input)."),
]
Format = Annotated[
    str,
    typer.Option(
        "--format",
        help="auto (a bare number for one text, else JSONL; or by -o suffix), "
        "number, jsonl, json, csv, parquet, table.",
        autocompletion=complete(OUTPUT_FORMATS),
    ),
]
Output = Annotated[
    str | None,
    typer.Option("--output", "-o", help="Write results here instead of stdout.", show_default=False),
]
OnError = Annotated[
    str,
    typer.Option(
        "--on-error",
        help="Bad record: stop (exit 1), skip (report on stderr, exit 4), or "
        "record (an error row in the output, exit 4).",
        autocompletion=complete(ON_ERROR),
    ),
]
Jobs = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        "-j",
        callback=number(1, 1024, integer=True),
        help="Worker processes. Default: auto (all cores for large inputs; small ones stay in-process).",
        show_default=False,
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or notes on stderr.")]
Engine = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Engine: auto (fastest exact), gigatoken, tiktoken (OpenAI reference), "
        "tokenizers (Hugging Face reference), sentencepiece (tokenizer.model), transformers.",
        autocompletion=complete(ENGINES),
    ),
]


Tokenizer = Annotated[
    str | None,
    typer.Option(
        "--tokenizer",
        help="Hugging Face models: a directory (or tokenizer.json) holding the "
        "tokenizer files, or a llama.cpp .gguf model file, instead of looking them up.",
        show_default=False,
    ),
]
NoSpecialTokens = Annotated[
    bool,
    typer.Option(
        "--no-special-tokens",
        help="Hugging Face models: leave out the special tokens (BOS, ...) "
        "the tokenizer adds to a text. Chats are framed by their template either way.",
    ),
]


Online = Annotated[
    bool | None,
    typer.Option(
        "--online/--offline",
        help="Use the provider's count API where one exists (Anthropic, "
        "Gemini, Bedrock, vLLM) with its credentials from the environment. Default: the "
        "config's prefer_offline (offline).",
        show_default=False,
    ),
]
Strict = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Fail (exit 5) instead of giving an estimate: no heuristic, no "
        "calibrated estimate, no fallback from an exact count to an estimate.",
    ),
]


CacheMode = Annotated[
    str,
    typer.Option(
        "--cache",
        help="auto (cache what is dear to redo: online counts, embeddings, BERTScore), on (cache everything), off.",
        autocompletion=complete(CACHE_MODES),
    ),
]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Same as --cache off.")]


def cache_mode(cache: str, no_cache: bool) -> str:
    """The one --cache value of a command that takes --cache and --no-cache (every command that
    caches takes both, spelled the same)."""
    if cache not in ("auto", "on", "off"):
        from ..errors import UsageError

        raise UsageError(f"--cache must be auto, on or off, not {cache!r}")
    return "off" if no_cache else cache


CacheDir = Annotated[
    str | None,
    typer.Option(
        "--cache-dir",
        help="L2 disk cache directory ('none': no disk tier). Default: $XDG_CACHE_HOME/omnitok.",
        show_default=False,
    ),
]
L3Url = Annotated[
    str | None,
    typer.Option(
        "--l3-url", help="L3 Redis/Valkey URL (redis://host:port/db). Default: $L3_CACHE_URL.", show_default=False
    ),
]


def split_fields(values: list[str] | None) -> tuple[str, ...] | None:
    """The --field names, repeated or comma-separated; a name given twice is a usage error (its
    text would be counted twice)."""
    if not values:
        return None
    out = tuple(part.strip() for v in values for part in v.split(",") if part.strip())
    twice = next((name for i, name in enumerate(out) if name in out[:i]), None)
    if twice is not None:
        from ..errors import UsageError, shown

        raise UsageError(f"--field {shown(twice)} is given twice; give each field once")
    return out or None
