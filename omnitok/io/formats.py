"""Which format an input is (`input_format="auto"`): a file named .jsonl/.ndjson is JSONL, .json is
a JSON document (JSONL where its first non-blank line is a whole JSON object: JSONL named .json),
.parquet/.pq is Parquet (a trailing .gz is looked through), any other named file is text. An
input with no telling name (stdin, a pipe, a FIFO, process substitution, /dev/stdin) is sniffed
(`sniff`): gzip is looked through; Parquet if it starts with PAR1; JSONL if its first non-blank
line (a UTF-8 BOM aside; any number of blank lines before it, up to 64 MiB of them) starts with
`{` and ends with `}`, so a malformed first record is the same `<stdin>:N: invalid JSON` error a
.jsonl file gives; a JSON document if that line starts with `[` or `{` (and is not such a record)
and the whole input parses as JSON within JSON_DOC_MAX bytes; otherwise text."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import IO

from ..errors import InputError
from .ids import read_keeping_surrogates
from .inputs import Progress, open_input

FORMATS = ("auto", "jsonl", "json", "parquet", "text")
_JSONL_SUFFIXES = {".jsonl", ".ndjson"}
# A JSON document is parsed whole (its records are Python objects at once, some 5-10x its bytes in
# memory), unlike JSONL or Parquet which stream: past this size, convert it to JSONL.
JSON_DOC_MAX = 64 << 20
_PARQUET_SUFFIXES = {".parquet", ".pq"}


BOM = b"\xef\xbb\xbf"
_SNIFF_BLANK_BYTES = 64 << 20  # bytes of blank lines looked past before a stream is called text


def detect_format(path: str) -> str:
    """Input format from the file name (a trailing .gz is looked through)."""
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = os.path.splitext(name)[1]
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix in _PARQUET_SUFFIXES:
        return "parquet"
    return "text"


def sniff(f: IO[bytes], documents: bool = True) -> tuple[str, list[bytes]]:
    """(format, what was read) of an unnamed stream, by the module's rule. Any number of blank lines
    is looked past, up to _SNIFF_BLANK_BYTES of them; they come back as one item of whole lines
    (not one a line: 10 million blank lines are 10 MB here, not a list of 10 million), then the
    first non-blank line. Read them as lines with `head_lines`."""
    try:
        if f.peek(4)[:4] == b"PAR1":  # type: ignore[attr-defined]
            return "parquet", []
    except (AttributeError, OSError, EOFError):
        pass
    blank = bytearray()
    while len(blank) < _SNIFF_BLANK_BYTES:
        line = f.readline(_SNIFF_BLANK_BYTES - len(blank))
        if not line:
            break
        # (a BOM after blank lines too: the JSONL reader then refuses that line, as a file's)
        s = line.removeprefix(BOM).strip()
        if s:
            if not line.endswith(b"\n"):  # cut at the bound: the first record is read whole
                line += f.readline()
                s = line.removeprefix(BOM).strip()
            head = [bytes(blank), line] if blank else [line]
            if s.startswith(b"{") and s.endswith(b"}"):
                return "jsonl", head
            if documents and s.startswith((b"[", b"{")):  # a JSON document, if the whole input parses as one
                head.append(f.read(JSON_DOC_MAX + 1 - sum(map(len, head))))
                return ("json" if _parses(b"".join(head)) else "text"), head
            return "text", head
        blank += line
    return "text", [bytes(blank)] if blank else []


def _parses(data: bytes) -> bool:
    """Whether `data` (at most JSON_DOC_MAX bytes) is one JSON document."""
    import orjson

    if len(data) > JSON_DOC_MAX:
        return False
    try:
        orjson.loads(data.removeprefix(BOM))
    except orjson.JSONDecodeError:
        # A lone surrogate escape is its record's error (the document reader's), not text's sign.
        return read_keeping_surrogates(data.removeprefix(BOM))[0]
    return True


def jsonl_named_json(path: str) -> bool:
    """Whether a file named .json holds JSONL: its first non-blank line is a whole JSON object."""
    import orjson

    try:
        f = open_input(path, Progress())
    except InputError:
        return False
    try:
        fmt, head = sniff(f, documents=False)
    except (OSError, EOFError):
        return False
    finally:
        f.close()
    if fmt != "jsonl":
        return False
    try:
        orjson.loads(head[-1].removeprefix(BOM))
    except orjson.JSONDecodeError:
        return read_keeping_surrogates(head[-1].removeprefix(BOM))[0]
    return True


def head_lines(head: list[bytes]) -> Iterator[bytes]:
    """The lines of a sniffed head, one by one (its blank lines come as one item)."""
    for item in head:
        yield from io.BytesIO(item)
