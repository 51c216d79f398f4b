"""`omnitok encode`, `omnitok decode`, `omnitok truncate`: a text's token ids and back, and a text
cut to N tokens, with a model's exact local tokenizer (as ttok --encode, --decode and -t N)."""

from __future__ import annotations

import sys

import typer

from . import _options as opt
from ._output import write_stdout

ENCODE_EPILOG = """\
Examples:

  omnitok encode -m gpt-4o "hello world"                  # 24912 2375

  echo -n "hello world" | omnitok encode --format json     # [24912,2375]

  omnitok encode -m gpt-4 --tokens "hi 😀"                 # each token: id, text

  omnitok encode -m org/model --tokenizer model.gguf < prompt.txt
"""

DECODE_EPILOG = """\
Examples:

  omnitok decode -m gpt-4o 24912 2375                     # hello world

  omnitok encode "hello" | omnitok decode                  # ids on stdin

  omnitok decode -m gpt-4o "[24912, 2375]"                 # a JSON array, or 24912,2375
"""

TRUNCATE_EPILOG = """\
Examples:

  omnitok truncate -m gpt-4o --max-tokens 1 "hello world"          # hello

  omnitok truncate -m gpt-4o -t 8000 < long.txt > prompt.txt       # at most 8000 tokens

The text is printed exactly, with no newline added (one is added only on a terminal), so
`omnitok truncate ... | omnitok count` counts at most N.
"""

Text = typer.Argument(
    None,
    help="The text (several arguments are joined by spaces, as ttok joins them). None: stdin, read whole.",
    show_default=False,
)
TextFormat = typer.Option(
    "text",
    "--format",
    help="text (ids separated by spaces) or json (an array).",
    autocompletion=opt.complete(("text", "json")),
)


def _encoder(model, encoding, engine, tokenizer, purpose: str, words: list[str] | None = None):
    from ..api import Encoder, TokenizerSettings

    TokenizerSettings.load()  # the config file and environment, checked as count checks them (exit 2)

    if engine == "auto" and tokenizer is None and purpose != "decode":  # decode: the library's rule (tokens.py)
        from ._small import small_input_engine

        engine = small_input_engine(model, encoding, None, words)  # encode, truncate: count's rule
    return Encoder(model, encoding=encoding, engine=engine, tokenizer=tokenizer, purpose=purpose)


def _read_text(words: list[str] | None) -> str:
    """The arguments joined by spaces, or stdin decoded as UTF-8 (an error names the bad byte)."""
    if words:
        from .. import api

        return api.argument_text(" ".join(words), "<argument>")
    try:
        data = sys.stdin.buffer.read()
    except (OSError, ValueError, AttributeError) as e:  # a closed stdin (`<&-`), a directory
        from ..api import read_error
        from ..errors import InputError

        raise InputError("<stdin>", None, f"cannot read: {read_error(e)}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        from .. import api
        from ..errors import InputError

        raise InputError("<stdin>", *api.utf8_error(data, e)) from None


def _write_text(text: str) -> None:
    """The text exactly; a newline after it only on a terminal, so that the prompt starts on its own line."""
    data = text.encode("utf-8")
    if data and not data.endswith(b"\n") and sys.stdout.isatty():
        data += b"\n"
    write_stdout(data)


def _check_format(fmt: str) -> None:
    if fmt not in ("text", "json"):
        from ..errors import UsageError

        raise UsageError(f"--format must be text or json, not {fmt!r}")


def encode_cmd(
    text: list[str] | None = Text,
    model: opt.Model = None,
    encoding: opt.Encoding = None,
    fmt: str = TextFormat,
    tokens: bool = typer.Option(
        False,
        "--tokens",
        help="Show each token: its id and its text (a Python string literal), or its bytes (b'\\xf0\\x9f') "
        "where they are not whole UTF-8 characters. JSON: objects with 'id' and 'text' or 'bytes'.",
    ),
    engine: opt.Engine = "auto",
    tokenizer: opt.Tokenizer = None,
) -> None:
    """Print a text's token ids, as count counts it (tiktoken's encode_ordinary for OpenAI models).

    For an OpenAI encoding, text that looks like a special token (<|endoftext|>) is plain text; a
    Hugging Face tokenizer reads its own special tokens' text as those tokens, as count does. No
    BOS is added: the number of ids is what `count --no-special-tokens` gives. Needs an exact local tokenizer
    (OpenAI models, Hugging Face tokenizer files, GGUF); Claude offline is only an estimate.
    Empty text prints nothing (--format json: []).
    """
    import orjson

    _check_format(fmt)
    enc = _encoder(model, encoding, engine, tokenizer, "encode", text)
    source = _read_text(text)
    if not tokens:
        ids = enc.encode(source)
        if fmt == "json":
            write_stdout(orjson.dumps(ids) + b"\n")
        elif ids:
            write_stdout(" ".join(map(str, ids)).encode() + b"\n")
        return
    pairs = enc.tokenize(source)
    if fmt == "json":
        rows = [{"id": i, "text": t} if isinstance(t, str) else {"id": i, "bytes": list(t)} for i, t in pairs]
        write_stdout(orjson.dumps(rows) + b"\n")
    else:
        write_stdout("".join(f"{i}\t{t!r}\n" for i, t in pairs).encode())


def decode_cmd(
    ids: list[str] | None = typer.Argument(
        None,
        help="Token ids, separated by spaces or commas, or a JSON array. None: stdin.",
        show_default=False,
    ),
    model: opt.Model = None,
    encoding: opt.Encoding = None,
    engine: opt.Engine = "auto",
    tokenizer: opt.Tokenizer = None,
) -> None:
    """Print the text of token ids (what `omnitok encode` printed) exactly, with no newline added.

    An id the vocabulary does not have is an error naming it (exit 2). A multi-byte character cut
    by the last id shows as U+FFFD, as tiktoken's decode shows it.
    """
    from ..api import parse_ids

    enc = _encoder(model, encoding, engine, tokenizer, "decode")
    values = parse_ids(_read_text(ids))  # arguments' bytes checked as UTF-8, as stdin's are
    _write_text(enc.decode(values))


def truncate_cmd(
    text: list[str] | None = Text,
    max_tokens: int = typer.Option(
        ...,
        "--max-tokens",
        "-t",
        callback=opt.number(0, integer=True),
        help="Keep at most this many tokens.",
        show_default=False,
    ),
    model: opt.Model = None,
    encoding: opt.Encoding = None,
    engine: opt.Engine = "auto",
    tokenizer: opt.Tokenizer = None,
) -> None:
    """Print the longest start of a text that is at most --max-tokens of its tokens.

    Whole tokens only (the text of its first N tokens, as ttok -t N gives), and never part of a
    character: a token that ends inside an emoji or CJK character is left out with it. Counted as
    `count --no-special-tokens` counts. The text is printed exactly, with no newline added.
    """
    enc = _encoder(model, encoding, engine, tokenizer, "truncate", text)
    _write_text(enc.truncate(_read_text(text), max_tokens))
