"""Readers: files and stdin -> a stream of Records, in input order, in constant memory.

Formats: JSONL (one JSON value a line; blank lines are not records), a JSON document (an array of
records, or one record such as `{"messages": [...]}`; read whole, so at most JSON_DOC_MAX bytes),
Parquet (streamed by record batch), plain text (the whole input is one record, or one record a line with `lines=True`).
`.gz` inputs are decompressed by suffix. A bad record becomes a Record with `error` set; the
pipeline decides whether that stops the run.

One rule picks the format (`input_format="auto"`): a file named .jsonl/.ndjson is JSONL, .json is
a JSON document (JSONL where its first non-blank line is a whole JSON object: JSONL named .json),
.parquet/.pq is Parquet (a trailing .gz is looked through), any other named file is text. An
input with no telling name (stdin, a pipe, a FIFO, process substitution, /dev/stdin) is sniffed:
gzip is looked through; Parquet if it starts with PAR1; JSONL if its first non-blank line (a UTF-8
BOM aside; any number of blank lines before it, up to 64 MiB of them) starts with `{` and ends with
`}`, so a malformed first record is the same `<stdin>:N: invalid JSON` error a .jsonl file gives;
a JSON document if that line starts with `[` or `{` (and is not such a record) and the whole input
parses as JSON within JSON_DOC_MAX bytes; otherwise text. A JSON document's records are numbered
by the line each starts on (`req.json:14`), and an array element's error also names its index
(`req.json:14: [2]: ...`, 0-based as in jq's `.[2]`). A BOM before a JSONL file's first record is skipped. An integer id past 64 bits
keeps its exact value (orjson reads it as a float; io.ids reads that line again).

Empty input is not an error: empty text is one text of 0 tokens (as tiktoken and ttok count
it); JSONL or Parquet with no records gives no records, and the run says so on stderr.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import os
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from .. import notices
from ..errors import InputError, UsageError
from ..records import ExtractError, Extractor, Record, record_id, record_of
from .ids import exact_id, id_type

if TYPE_CHECKING:
    from .shards import Shard

STDIN = "-"


def _gzip_guard(name: str):
    def method(self, *args):
        try:
            return getattr(gzip.GzipFile, name)(self, *args)
        except zlib.error as e:  # not an OSError: every reader's handler of a damaged file takes this
            raise OSError(f"damaged gzip data ({e})") from None

    return method


class GzipReader(gzip.GzipFile):
    """gzip.GzipFile whose damaged data (zlib.error, which is no OSError) is an OSError, so that a
    .gz whose compressed bytes are damaged is the same one-line error as a truncated one."""

    read = _gzip_guard("read")
    read1 = _gzip_guard("read1")
    readinto = _gzip_guard("readinto")
    readline = _gzip_guard("readline")
    peek = _gzip_guard("peek")


FORMATS = ("auto", "jsonl", "json", "parquet", "text")
_JSONL_SUFFIXES = {".jsonl", ".ndjson"}
# A JSON document is parsed whole (its records are Python objects at once, some 5-10x its bytes in
# memory), unlike JSONL or Parquet which stream: past this size, convert it to JSONL.
JSON_DOC_MAX = 64 << 20
_PARQUET_SUFFIXES = {".parquet", ".pq"}


def source_name(path: str) -> str:
    return "<stdin>" if path == STDIN else path


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


@dataclass
class Progress:
    """Bytes (or rows) consumed so far, read by the progress bar."""

    done: int = 0
    total: int | None = None
    records: int = 0


def _utf8_error(data: bytes, err: UnicodeDecodeError, first_line: int = 1) -> tuple[int, str]:
    line = first_line + data.count(b"\n", 0, err.start)
    col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
    return line, f"invalid UTF-8 (byte 0x{data[err.start]:02x} at column {col})"


class _Counted(io.RawIOBase):
    """Counts the bytes read from an underlying binary file, for progress."""

    def __init__(self, raw: IO[bytes], progress: Progress):
        self._raw = raw
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        if n:
            self._progress.done += n
        return n


BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
_SNIFF_BLANK_BYTES = 64 << 20  # bytes of blank lines looked past before a stream is called text


def _open(path: str, progress: Progress) -> IO[bytes]:
    if path == STDIN:
        raw: IO[bytes] = sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
        except FileNotFoundError:
            raise InputError(path, None, "no such file") from None
        except IsADirectoryError:
            raise InputError(path, None, "is a directory, not a file") from None
        except PermissionError:
            raise InputError(path, None, "permission denied") from None
        except OSError as e:
            raise InputError(path, None, f"cannot open: {e.strerror}") from None
    counted = io.BufferedReader(_Counted(raw, progress), buffer_size=1 << 20)
    if path != STDIN and path.lower().endswith(".gz"):
        return GzipReader(fileobj=counted, mode="rb")  # type: ignore[return-value]
    return counted


def is_stream(path: str) -> bool:
    """stdin, a pipe, a FIFO or a device: an input that has no size and cannot seek."""
    if path == STDIN or path.startswith(("/dev/", "/proc/")):  # /dev/stdin, /dev/fd/63: names of streams
        return True
    try:
        return not os.path.isdir(path) and not os.path.isfile(path) and os.path.exists(path)
    except OSError:
        return False


def _sniff(f: IO[bytes], documents: bool = True) -> tuple[str, list[bytes]]:
    """(format, what was read) of an unnamed stream, by the module's rule. Any number of blank lines
    is looked past, up to _SNIFF_BLANK_BYTES of them; they come back as one item of whole lines
    (not one a line: 10 million blank lines are 10 MB here, not a list of 10 million), then the
    first non-blank line. Read them as lines with `_head_lines`."""
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
        s = (line.removeprefix(BOM) if not blank else line).strip()
        if s:
            if not line.endswith(b"\n"):  # cut at the bound: the first record is read whole
                line += f.readline()
                s = line.removeprefix(BOM).strip() if not blank else line.strip()
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
        return False
    return True


def _jsonl_named_json(path: str) -> bool:
    """Whether a file named .json holds JSONL: its first non-blank line is a whole JSON object."""
    import orjson

    try:
        f = _open(path, Progress())
    except InputError:
        return False
    try:
        fmt, head = _sniff(f, documents=False)
    except (OSError, EOFError):
        return False
    finally:
        f.close()
    if fmt != "jsonl":
        return False
    try:
        orjson.loads(head[-1].removeprefix(BOM))
    except orjson.JSONDecodeError:
        return False
    return True


_WS = None


def _skip_ws(text: str, i: int) -> int:
    global _WS
    if _WS is None:
        import re

        _WS = re.compile(r"[ \t\n\r]*")
    return _WS.match(text, i).end()


def _one_line(element: str) -> bytes:
    """A JSON value's text on one line, for JSONL output (--add-field): a raw line end can only be
    whitespace between tokens (inside strings they are escaped), so it becomes a space."""
    return element.replace("\r\n", " ").replace("\n", " ").replace("\r", " ").encode()


def _head_lines(head: list[bytes]) -> Iterator[bytes]:
    """The lines of a sniffed head, one by one (its blank lines come as one item)."""
    for item in head:
        yield from io.BytesIO(item)


class InputStream:
    """All inputs of a run as one stream of Records, numbered in input order."""

    def __init__(
        self,
        paths: list[str],
        extractor: Extractor,
        input_format: str = "auto",
        lines: bool = False,
        keep_raw: bool = False,
        texts: list[str] | None = None,
    ):
        self.texts = texts
        if texts is not None:
            if paths:
                raise UsageError("give input files or --text, not both")
            if input_format not in ("auto", "text"):
                raise UsageError("--text is text; --input-format does not apply to it")
        elif not paths:
            paths = [STDIN]
        if paths.count(STDIN) > 1:
            raise UsageError("stdin ('-') can be read only once")
        if input_format not in FORMATS:
            raise UsageError(f"unknown input format {input_format!r}; one of {', '.join(FORMATS)}")
        self.paths = paths
        self.extractor = extractor
        self.input_format = input_format
        self.lines = lines
        self.keep_raw = keep_raw
        self.progress = Progress(total=self._total_bytes())
        self._pos = 0
        # Streams sniffed (or opened) ahead of reading: path -> (stream, lines read, format).
        self._opened: dict[str, tuple[IO[bytes], list[bytes], str]] = {}
        self._named_json: dict[str, str] = {}  # a .json file's format: json, or jsonl (JSONL named .json)
        if len(paths) == 1 and self._sniffed(paths[0]):
            # Sniff now, so the output format can depend on what the stream holds.
            self._open_sniffed(paths[0])

    def _total_bytes(self) -> int | None:
        total = 0
        for p in self.paths:
            try:
                if p == STDIN or not os.path.isfile(p):
                    return None
                total += os.path.getsize(p)
            except OSError:
                return None
        return total

    def _sniffed(self, path: str) -> bool:
        """Whether the format of `path` is found by looking at its bytes (the module's rule)."""
        if self.input_format != "auto":
            return False
        return path == STDIN or (detect_format(path) == "text" and not path.lower().endswith(".gz") and is_stream(path))

    def _open_sniffed(self, path: str) -> tuple[IO[bytes], list[bytes], str]:
        if path not in self._opened:
            f = _open(path, self.progress)
            with contextlib.suppress(AttributeError, OSError):
                if f.peek(2)[:2] == GZIP_MAGIC:  # type: ignore[attr-defined]
                    f = GzipReader(fileobj=f, mode="rb")  # type: ignore[assignment]
                    f = io.BufferedReader(f, buffer_size=1 << 20)  # type: ignore[arg-type]
            try:
                fmt, head = _sniff(f)
            except (OSError, EOFError) as e:  # damaged gzip data, an I/O error: before the first record
                raise InputError(source_name(path), None, f"cannot read: {_read_error(e)}") from None
            self._opened[path] = (f, head, fmt)
        return self._opened[path]

    def format_of(self, path: str) -> str:
        if self.input_format != "auto":
            return self.input_format
        if path in self._opened:
            return self._opened[path][2]
        if self._sniffed(path):
            return "text"
        fmt = detect_format(path)
        if fmt == "json" and not is_stream(path):
            if path not in self._named_json:
                self._named_json[path] = "jsonl" if _jsonl_named_json(path) else "json"
            fmt = self._named_json[path]
        return fmt

    @property
    def single_text(self) -> bool:
        """One whole-text input: the run yields exactly one record."""
        if self.texts is not None:
            return len(self.texts) == 1
        return len(self.paths) == 1 and not self.lines and self.format_of(self.paths[0]) == "text"

    def shardable(self) -> bool:
        """Whether every input can be cut into shards of lines (io.shards): JSONL, or text read a
        line a record; not Parquet (read by row group here) nor a whole text."""
        if self.texts is not None:
            return False
        return all(
            self.format_of(p) == "jsonl"
            or (self.lines and self.format_of(p) == "text")
            or (self.format_of(p) == "parquet" and not is_stream(p))
            for p in self.paths
        )

    def id_type(self):
        """The Arrow type of the id column of Parquet output for these inputs (io.ids.id_type:
        the Parquet inputs' own id type where they all agree, else string)."""
        if self.texts is not None:
            return id_type([], None, [])
        return id_type(self.paths, self.extractor.id_field, [self.format_of(p) for p in self.paths])

    def fresh(self) -> InputStream:
        """A copy that reads shards from position 0 (a worker's reader)."""
        import copy

        other = copy.copy(self)
        other._pos, other.progress, other._opened = 0, Progress(), {}
        return other

    def shards(self, path: str, chunk: int) -> Iterator[Shard | Record]:
        """The shards of one input in order (or its error Record, where it cannot be opened). A
        read error of a stream is raised after the shards read before it (see stream_shards)."""
        from .shards import Shard, file_shards, stream_shards

        source = source_name(path)
        head: list[bytes] = []
        try:
            if self._sniffed(path):
                f, head, fmt = self._open_sniffed(path)
            elif self.format_of(path) == "parquet":  # a row group a shard
                opened = self.parquet_open(path, source)
                if isinstance(opened, Record):
                    yield opened
                    return
                meta = opened[0].metadata
                for group in range(meta.num_row_groups):
                    rg = meta.row_group(group)
                    nbytes = sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))
                    yield Shard(source, "parquet", group == 0, path, 0, nbytes, group=group)
                return
            else:
                fmt = self.format_of(path)
                f = _open(path, self.progress)
                if path != STDIN and not path.lower().endswith(".gz") and os.path.isfile(path):
                    f.close()
                    yield from file_shards(path, source, fmt, os.path.getsize(path), chunk)
                    return
        except InputError as e:
            yield self._error(source, None, e.reason)
            return
        try:
            yield from stream_shards(f, head, source, fmt, chunk)
        finally:
            self._opened.pop(path, None)
            if path != STDIN:
                f.close()

    def shard_error(self, source: str, lines: int, e: BaseException) -> Record:
        """The error record for an input whose reading failed after `lines` lines."""
        return self._error(source, lines + 1, f"cannot read past line {lines}: {_read_error(e)}")

    @staticmethod
    def no_records(source: str, fmt: str) -> None:
        """Say on stderr that an input held no records (not an error: README "Empty input")."""
        what = {"jsonl": "no records (the input is empty or blank)", "parquet": "no rows"}.get(
            fmt, "no lines (the input is empty)"
        )
        notices.warn_once(f"no-records:{source}", f"{source}: {what}")

    def __iter__(self) -> Iterator[Record]:
        if self.texts is not None:  # texts given on the command line: one record each
            for i, text in enumerate(self.texts, 1):
                yield self._record("--text", i if len(self.texts) > 1 else None, text)
            return
        for path in self.paths:
            yield from self._read(path)

    def next_pos(self) -> int:
        pos = self._pos
        self._pos += 1
        self.progress.records += 1
        return pos

    def take_pos(self, n: int) -> int:
        """The first of `n` consecutive positions (a run of records merged at once)."""
        pos = self._pos
        self._pos += n
        self.progress.records += n
        return pos

    def _record(
        self, source: str, line: int | None, obj: Any, extractor: Extractor | None = None, text: bytes | None = None
    ) -> Record:
        rec = record_of(extractor or self.extractor, self.next_pos(), source, line, obj)
        if self.keep_raw:
            rec.raw, rec.raw_json = obj, text
        return rec

    def _error(self, source: str, line: int | None, message: str, raw: Any = None) -> Record:
        return Record(self.next_pos(), source, line, error=message, raw=raw)

    def _read(self, path: str) -> Iterator[Record]:
        source = source_name(path)
        head: list[bytes] = []
        try:
            if self._sniffed(path):
                f, head, fmt = self._open_sniffed(path)
            else:
                fmt = self.format_of(path)
                f = None if fmt == "parquet" else _open(path, self.progress)
            if fmt == "parquet":
                yield from self._read_parquet(path, source, f)
                return
        except InputError as e:
            yield self._error(source, None, e.reason)
            return
        try:
            if fmt == "jsonl":
                yield from self._read_jsonl(f, source, head)
            elif fmt == "json":
                yield from self._read_json(f, source, head)
            else:
                yield from self._read_text(f, source, head)
        finally:
            self._opened.pop(path, None)
            if path != STDIN:
                f.close()

    def _read_jsonl(self, f: IO[bytes], source: str, head: list[bytes]) -> Iterator[Record]:
        first = self._pos
        try:
            yield from self.jsonl_lines(itertools.chain(_head_lines(head), f), source)
        except (OSError, EOFError) as e:  # a truncated .gz, an I/O error: where the reading stopped
            yield self.shard_error(source, self.lines_read, e)
            return
        if self._pos == first:
            self.no_records(source, "jsonl")

    def _read_json(self, f: IO[bytes], source: str, head: list[bytes]) -> Iterator[Record]:
        """The records of one JSON document: each element of a top-level array, else the document
        itself (one record, such as {"messages": [...]}). Read whole, at most JSON_DOC_MAX bytes."""
        import json

        import orjson

        try:
            data = b"".join(head)
            data += f.read(JSON_DOC_MAX + 1 - len(data))
        except (OSError, EOFError) as e:
            yield self._error(source, None, f"cannot read: {_read_error(e)}")
            return
        if len(data) > JSON_DOC_MAX:
            yield self._error(
                source,
                None,
                f"a JSON document over {JSON_DOC_MAX >> 20} MiB (it is read whole): "
                "give it as JSONL, one record a line (jq -c '.[]')",
            )
            return
        data = data.removeprefix(BOM)
        if not data.strip():
            self.no_records(source, "jsonl")
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line, msg = _utf8_error(data, e)
            yield self._error(source, line, msg)
            return
        del data
        try:
            # Checked whole first (the same rules and messages as JSONL's lines), so a document is
            # all records or one error; the objects are dropped at once: the peak is this check's.
            orjson.loads(text)
        except orjson.JSONDecodeError as e:
            # The whole document is refused: no line of its own (--on-error has no record to go on to).
            yield self._error(source, None, f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}")
            return
        # The stdlib decoder, element by element: where each starts (its line) and exact integers.
        decoder = json.JSONDecoder()
        i = _skip_ws(text, 0)
        if text[i] != "[":
            obj, end = decoder.raw_decode(text, i)
            raw = _one_line(text[i:end]) if self.keep_raw else None
            yield self._record(source, 1 + text.count("\n", 0, i), obj, text=raw)
            return
        i, line, seen, index = _skip_ws(text, i + 1), 1, 0, 0
        while text[i] != "]":
            obj, end = decoder.raw_decode(text, i)
            line += text.count("\n", seen, i)
            seen = i
            raw = _one_line(text[i:end]) if self.keep_raw else None
            rec = self._record(source, line, obj, text=raw)
            if rec.error is not None:
                rec.error = f"[{index}]: {rec.error}"
            yield rec
            index += 1
            i = _skip_ws(text, end)
            if text[i] == ",":
                i = _skip_ws(text, i + 1)
        if index == 0:
            self.no_records(source, "jsonl")

    def jsonl_lines(self, lines: Iterable[bytes], source: str, first_of_file: bool = True, plain: bool = False):
        """The records of JSONL lines (ends included), numbered from 1; `lines_read` says how many
        lines were taken. A BOM is skipped on line 1 when it is the file's first line. Shards of a
        file counted in workers (pipeline) go through here too, so they read exactly alike.

        plain (shard workers, where a Record a line was a fifth of the work): each plain record
        (a JSON object with a string "text" and no "messages", read by the default extractor's
        fast path and framed as one text) comes as a tuple (line, id, text, overhead) instead;
        with --field or --add-field (a non-default extractor, raws kept) there are none."""
        import orjson

        loads = orjson.loads
        keep = self.keep_raw
        ex = self.extractor
        if plain and (keep or type(ex) is not Extractor or ex.fields is not None):
            plain = False
        if plain:
            frame = ex.framing.text
        # An id orjson read as a float may be an integer past 64 bits (io.ids): looked at again
        # only where the record has the id field and no id came of it.
        id_field = getattr(ex, "id_field", None)
        dotted = id_field is not None and "." in id_field
        self.lines_read = lineno = 0
        for line in lines:
            lineno += 1
            self.lines_read = lineno
            if lineno == 1 and first_of_file:
                line = line.removeprefix(BOM)
            if not line or line.isspace():  # (not strip(): that copies every line)
                continue
            try:
                obj = loads(line)
            except orjson.JSONDecodeError as e:
                yield self._error(source, lineno, _json_error(line, e), raw=_raw_line(line))
                continue
            if plain and type(obj) is dict and "messages" not in obj:  # Extractor.extract's fast path
                value = obj.get("text")
                if type(value) is str:
                    texts, overhead = frame(value)
                    if len(texts) == 1:
                        rid = record_id(obj, id_field)
                        if rid is None and (dotted or id_field in obj):  # orjson's float of a wide integer?
                            rid = exact_id(ex, obj, line)
                        yield (lineno, rid, texts[0], overhead)
                        continue
            rec = self._record(source, lineno, obj, text=line if keep else None)
            if rec.id is None and type(obj) is dict and (dotted or id_field in obj):
                rec.id = exact_id(ex, obj, line)
            yield rec

    def _read_text(self, f: IO[bytes], source: str, head: list[bytes]) -> Iterator[Record]:
        if not self.lines:
            try:
                data = b"".join(head) + f.read()
            except (OSError, EOFError) as e:
                yield self._error(source, None, f"cannot read: {_read_error(e)}")
                return
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                line, msg = _utf8_error(data, e)
                yield self._error(source, line, msg)
                return
            yield self._record(source, None, text)
            return
        first = self._pos
        try:
            yield from self.text_lines(itertools.chain(_head_lines(head), f), source)
        except (OSError, EOFError) as e:
            yield self.shard_error(source, self.lines_read, e)
            return
        if self._pos == first:
            self.no_records(source, "text")

    def text_lines(self, lines: Iterable[bytes], source: str, first_of_file: bool = True) -> Iterator[Record]:
        """One record a line (its end removed), numbered from 1; as jsonl_lines."""
        self.lines_read = lineno = 0
        for raw in lines:
            lineno += 1
            self.lines_read = lineno
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                _, msg = _utf8_error(raw, e)
                yield self._error(source, lineno, msg, raw=_raw_line(raw))
                continue
            if text.endswith("\n"):
                text = text[:-2] if text.endswith("\r\n") else text[:-1]
            yield self._record(source, lineno, text)

    def _read_parquet(self, path: str, source: str, stream: IO[bytes] | None = None) -> Iterator[Record]:
        opened = self.parquet_open(path, source, stream)
        if isinstance(opened, Record):
            yield opened
            return
        pf, size, extractor, columns = opened
        row = 0
        for group in range(pf.metadata.num_row_groups):
            yield from self.parquet_group(pf, group, extractor, columns, source, row, size)
            row += pf.metadata.row_group(group).num_rows
        if row == 0:
            self.no_records(source, "parquet")

    def parquet_open(self, path: str, source: str, stream: IO[bytes] | None = None):
        """(ParquetFile, file size, extractor for its columns, columns to read), or the error
        Record of a file that cannot be read as Parquet or lacks the columns."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            if stream is not None or path == STDIN:  # cannot seek: read it whole
                with stream or _open(path, self.progress) as f:
                    target: Any = io.BytesIO(f.read())
                size = 0
            else:
                target, size = path, os.path.getsize(path)
            pf = pq.ParquetFile(target)
        except (pa.ArrowException, OSError, EOFError) as e:
            return self._error(source, None, f"not a readable Parquet file: {e}")
        names = pf.schema_arrow.names
        try:
            extractor, tops = self.extractor.for_columns(names)
        except ExtractError as e:
            return self._error(source, None, str(e))
        id_field = extractor.id_field
        columns = None
        if not self.keep_raw and tops is not None:
            columns = sorted(set(tops) | ({id_field} & set(names) if id_field else set()))
        return pf, size, extractor, columns

    def parquet_group(self, pf, group: int, extractor, columns, source: str, before: int = 0, size: int = 0):
        """The records of one row group, rows numbered after the `before` rows of the groups
        before it. A damaged group is an error record for each of its rows (row numbers from the
        footer), so the groups after it are still read; shard workers read groups through here."""
        import pyarrow as pa

        meta = pf.metadata
        rows_total = max(meta.num_rows, 1)
        row, end = before, before + meta.row_group(group).num_rows
        self.lines_read = end - before
        try:
            for batch in pf.iter_batches(batch_size=4096, columns=columns, row_groups=[group]):
                for obj in batch.to_pylist():
                    row += 1
                    yield self._record(source, row, obj, extractor)
                self.progress.done += size * batch.num_rows // rows_total
        except (pa.ArrowException, OSError, EOFError) as e:
            reason = f"cannot read Parquet row group {group}: {_read_error(e)}"
            while row < end:
                row += 1
                yield self._error(source, row, reason)


def _read_error(e: BaseException) -> str:
    text = " ".join(str(e).split())[:300]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _raw_line(line: bytes) -> str:
    return line.rstrip(b"\r\n").decode("utf-8", "backslashreplace")


def _json_error(line: bytes, err: Exception) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as e:
        return _utf8_error(line, e)[1]
    col = getattr(err, "colno", None)
    reason = getattr(err, "msg", str(err))
    if "surrogate" in reason:  # one message in every front end (records.LONE_SURROGATE)
        from ..records import LONE_SURROGATE

        return f"invalid JSON: {LONE_SURROGATE}"
    return f"invalid JSON at column {col}: {reason}" if col else f"invalid JSON: {reason}"
