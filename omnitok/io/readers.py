"""Readers: files and stdin -> a stream of Records, in input order, in constant memory.

Formats: JSONL (one JSON value a line; blank lines are not records), Parquet (streamed by record
batch), plain text (the whole input is one record, or one record a line with `lines=True`).
`.gz` inputs are decompressed by suffix. A bad record becomes a Record with `error` set; the
pipeline decides whether that stops the run.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from ..errors import InputError, UsageError
from ..records import ExtractError, Extractor, Record

STDIN = "-"
FORMATS = ("auto", "jsonl", "parquet", "text")
_JSONL_SUFFIXES = {".jsonl", ".ndjson", ".json"}
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
    counted = io.BufferedReader(_Counted(raw, progress), buffer_size=1 << 20)
    if path != STDIN and path.lower().endswith(".gz"):
        return gzip.GzipFile(fileobj=counted, mode="rb")  # type: ignore[return-value]
    return counted


class InputStream:
    """All inputs of a run as one stream of Records, numbered in input order."""

    def __init__(
        self,
        paths: list[str],
        extractor: Extractor,
        input_format: str = "auto",
        lines: bool = False,
        keep_raw: bool = False,
    ):
        if not paths:
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
        self._stdin: IO[bytes] | None = None
        self._stdin_head: list[bytes] = []
        self._stdin_format = "text"
        if STDIN in paths and input_format == "auto":
            # Sniff now, so the output format can depend on what stdin holds.
            self._stdin = _open(STDIN, self.progress)
            first = self._stdin.readline()
            self._stdin_head = [first]
            self._stdin_format = "jsonl" if _looks_like_jsonl(first) else "text"

    def _total_bytes(self) -> int | None:
        total = 0
        for p in self.paths:
            if p == STDIN:
                return None
            try:
                total += os.path.getsize(p)
            except OSError:
                return None
        return total

    def format_of(self, path: str) -> str:
        if self.input_format != "auto":
            return self.input_format
        return self._stdin_format if path == STDIN else detect_format(path)

    @property
    def single_text(self) -> bool:
        """One whole-text input: the run yields exactly one record."""
        return len(self.paths) == 1 and not self.lines and self.format_of(self.paths[0]) == "text"

    def __iter__(self) -> Iterator[Record]:
        for path in self.paths:
            yield from self._read(path)

    def _next_pos(self) -> int:
        pos = self._pos
        self._pos += 1
        self.progress.records += 1
        return pos

    def _record(self, source: str, line: int | None, obj: Any, extractor: Extractor | None = None) -> Record:
        ex = extractor or self.extractor
        rec = Record(self._next_pos(), source, line, ex.record_id(obj))
        if self.keep_raw:
            rec.raw = obj
        try:
            rec.texts, rec.overhead, rec.fields = ex.extract(obj)
        except ExtractError as e:
            rec.error = str(e)
            rec.raw = obj
        return rec

    def _error(self, source: str, line: int | None, message: str, raw: Any = None) -> Record:
        return Record(self._next_pos(), source, line, error=message, raw=raw)

    def _read(self, path: str) -> Iterator[Record]:
        source = source_name(path)
        try:
            if path != STDIN and os.path.exists(path) and os.path.getsize(path) == 0:
                yield self._error(source, None, "file is empty (0 bytes)")
                return
            fmt = self.format_of(path)
            if fmt == "parquet":
                yield from self._read_parquet(path, source)
                return
            f = self._stdin if path == STDIN and self._stdin is not None else _open(path, self.progress)
        except InputError as e:
            yield self._error(source, None, e.reason)
            return
        head = self._stdin_head if path == STDIN else []
        try:
            if fmt == "jsonl":
                yield from self._read_jsonl(f, source, head)
            else:
                yield from self._read_text(f, source, head)
        except (OSError, EOFError) as e:  # truncated gzip, I/O errors
            yield self._error(source, None, f"cannot read: {e}")
        finally:
            if path != STDIN:
                f.close()

    def _read_jsonl(self, f: IO[bytes], source: str, head: list[bytes]) -> Iterator[Record]:
        import orjson

        loads = orjson.loads
        seen = False
        lineno = 0
        for chunk in (head, f):
            for line in chunk:
                lineno += 1
                if not line.strip():
                    continue
                seen = True
                try:
                    obj = loads(line)
                except orjson.JSONDecodeError as e:
                    yield self._error(source, lineno, _json_error(line, e), raw=_raw_line(line))
                    continue
                yield self._record(source, lineno, obj)
        if not seen:
            yield self._error(source, None, "no records (input is empty or blank)")

    def _read_text(self, f: IO[bytes], source: str, head: list[bytes]) -> Iterator[Record]:
        if not self.lines:
            data = b"".join(head) + f.read()
            if not data:
                yield self._error(source, None, "input is empty (0 bytes)")
                return
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                line, msg = _utf8_error(data, e)
                yield self._error(source, line, msg)
                return
            yield self._record(source, None, text)
            return
        lineno = 0
        for chunk in (head, f):
            for raw in chunk:
                lineno += 1
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    _, msg = _utf8_error(raw, e)
                    yield self._error(source, lineno, msg, raw=_raw_line(raw))
                    continue
                if text.endswith("\n"):
                    text = text[:-2] if text.endswith("\r\n") else text[:-1]
                yield self._record(source, lineno, text)
        if lineno == 0:
            yield self._error(source, None, "input is empty (0 bytes)")

    def _read_parquet(self, path: str, source: str) -> Iterator[Record]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            target = io.BytesIO(sys.stdin.buffer.read()) if path == STDIN else path
            pf = pq.ParquetFile(target)
        except (pa.ArrowException, OSError) as e:
            yield self._error(source, None, f"not a readable Parquet file: {e}")
            return
        names = pf.schema_arrow.names
        try:
            extractor, tops = self.extractor.for_columns(names)
        except ExtractError as e:
            yield self._error(source, None, str(e))
            return
        id_field = extractor.id_field
        columns = None
        if not self.keep_raw and tops is not None:
            columns = sorted(set(tops) | ({id_field} & set(names) if id_field else set()))
        # Progress is in file bytes; a Parquet file's share is spread over its rows.
        size = 0 if path == STDIN else os.path.getsize(path)
        rows_total = max(pf.metadata.num_rows, 1)
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=4096, columns=columns):
                for obj in batch.to_pylist():
                    row += 1
                    yield self._record(source, row, obj, extractor)
                self.progress.done += size * batch.num_rows // rows_total
        except (pa.ArrowException, OSError) as e:
            yield self._error(source, row + 1, f"cannot read Parquet row group: {e}")
            return
        if row == 0:
            yield self._error(source, None, "no rows")


def _looks_like_jsonl(first: bytes) -> bool:
    s = first.strip()
    if not s.startswith(b"{"):
        return False
    import orjson

    try:
        return isinstance(orjson.loads(s), dict)
    except orjson.JSONDecodeError:
        return False


def _raw_line(line: bytes) -> str:
    return line.rstrip(b"\r\n").decode("utf-8", "backslashreplace")


def _json_error(line: bytes, err: Exception) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as e:
        return _utf8_error(line, e)[1]
    col = getattr(err, "colno", None)
    reason = getattr(err, "msg", str(err))
    return f"invalid JSON at column {col}: {reason}" if col else f"invalid JSON: {reason}"
