"""Readers: files and stdin -> a stream of Records, in input order, in constant memory.

Formats: JSONL (one JSON value a line; blank lines are not records), a JSON document (an array of
records, or one record such as `{"messages": [...]}`; read whole, so at most JSON_DOC_MAX bytes),
Parquet (streamed by record batch), plain text (the whole input is one record, or one record a line with `lines=True`).
`.gz` inputs are decompressed by suffix. A bad record becomes a Record with `error` set; the
pipeline decides whether that stops the run.

The format is picked by one rule (`input_format="auto"`), written in io.formats; opening an
input (stdin, `.gz`, the bytes read for progress) is io.inputs. A JSON document's records are
numbered by the line each starts on (`req.json:14`), and an array element's error also names its
index (`req.json:14: [2]: ...`, 0-based as in jq's `.[2]`). A BOM before a JSONL file's first
record is skipped. Bad UTF-8 is one error, wherever it is found (`InputStream._decoded`): the line
and column of its first bad byte. An integer id past 64 bits keeps its exact value (orjson reads
it as a float; io.ids reads that line again).

Empty input is not an error: empty text is one text of 0 tokens (as tiktoken and ttok count
it); JSONL or Parquet with no records gives no records, and the run says so on stderr.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from .. import notices
from ..errors import InputError, UsageError
from ..records import LONE_SURROGATE, ExtractError, Extractor, Record, lone_surrogate, record_id, record_of
from .formats import BOM, FORMATS, JSON_DOC_MAX, detect_format, head_lines, jsonl_named_json, sniff
from .ids import exact_id, id_type, read_keeping_surrogates, reread
from .inputs import (
    GZIP_MAGIC,
    STDIN,
    GzipReader,
    Progress,
    argument_error,
    is_stream,
    open_input,
    read_error,
    source_name,
    utf8_error,
)

if TYPE_CHECKING:
    from .shards import Shard


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
            f = open_input(path, self.progress)
            with contextlib.suppress(AttributeError, OSError):
                if f.peek(2)[:2] == GZIP_MAGIC:  # type: ignore[attr-defined]
                    f = GzipReader(fileobj=f, mode="rb")  # type: ignore[assignment]
                    f = io.BufferedReader(f, buffer_size=1 << 20)  # type: ignore[arg-type]
            try:
                fmt, head = sniff(f)
            except (OSError, EOFError) as e:  # damaged gzip data, an I/O error: before the first record
                raise InputError(source_name(path), None, f"cannot read: {read_error(e)}") from None
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
                self._named_json[path] = "jsonl" if jsonl_named_json(path) else "json"
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
                f = open_input(path, self.progress)
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
        return self._error(source, lines + 1, f"cannot read past line {lines}: {read_error(e)}")

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
                n = i if len(self.texts) > 1 else None
                error = argument_error(text) if isinstance(text, str) else None
                yield self._record("--text", n, text) if error is None else self._error("--text", n, error)
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

    def _document_record(self, source: str, line: int, obj: Any, raw: bytes | None) -> Record:
        """A JSON document's record (read by the standard library, which keeps lone surrogate
        escapes): one holding such an escape is a bad record, as a JSONL line holding it is."""
        if lone_surrogate(obj):
            return self._error(source, line, f"invalid JSON: {LONE_SURROGATE}", raw=raw.decode() if raw else None)
        return self._record(source, line, obj, text=raw)

    def _error(self, source: str, line: int | None, message: str, raw: Any = None) -> Record:
        return Record(self.next_pos(), source, line, error=message, raw=raw)

    def _decoded(self, data: bytes, source: str, first_line: int = 1, line_raw: bool = False) -> str | Record:
        """`data` (an input whole, or one line numbered `first_line`) as text, or the error Record
        of its first bad UTF-8 byte (the line and column it stands at); `line_raw`: the record keeps
        the line as its raw text (what --on-error lists)."""
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            line, message = utf8_error(data, e, first_line)
            return self._error(source, line, message, raw=_raw_line(data) if line_raw else None)

    def _read(self, path: str) -> Iterator[Record]:
        source = source_name(path)
        head: list[bytes] = []
        try:
            if self._sniffed(path):
                f, head, fmt = self._open_sniffed(path)
            else:
                fmt = self.format_of(path)
                f = None if fmt == "parquet" else open_input(path, self.progress)
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
            yield from self.jsonl_lines(itertools.chain(head_lines(head), f), source)
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
            yield self._error(source, None, f"cannot read: {read_error(e)}")
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
        text = self._decoded(data, source)
        del data
        if isinstance(text, Record):
            yield text
            return
        try:
            # Checked whole first (the same rules and messages as JSONL's lines), so a document is
            # all records or one error; the objects are dropped at once: the peak is this check's.
            orjson.loads(text)
        except orjson.JSONDecodeError as e:
            # (a number too large for orjson is not an error: io.ids; a lone surrogate escape is
            # its record's, below)
            if not read_keeping_surrogates(text)[0]:
                # The whole document is refused: no line of its own (--on-error has no record to go on to).
                yield self._error(source, None, f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}")
                return
        # The stdlib decoder, element by element: where each starts (its line) and exact integers.
        decoder = json.JSONDecoder()
        i = _skip_ws(text, 0)
        if text[i] != "[":
            obj, end = decoder.raw_decode(text, i)
            raw = _one_line(text[i:end]) if self.keep_raw else None
            yield self._document_record(source, 1 + text.count("\n", 0, i), obj, raw)
            return
        i, line, seen, index = _skip_ws(text, i + 1), 1, 0, 0
        while text[i] != "]":
            obj, end = decoder.raw_decode(text, i)
            line += text.count("\n", seen, i)
            seen = i
            raw = _one_line(text[i:end]) if self.keep_raw else None
            rec = self._document_record(source, line, obj, raw)
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
                ok, obj = reread(line, e)  # a number too large for orjson (io.ids)
                if not ok:
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
                yield self._error(source, None, f"cannot read: {read_error(e)}")
                return
            text = self._decoded(data, source)
            yield text if isinstance(text, Record) else self._record(source, None, text)
            return
        first = self._pos
        try:
            yield from self.text_lines(itertools.chain(head_lines(head), f), source)
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
            text = self._decoded(raw, source, lineno, line_raw=True)
            if isinstance(text, Record):
                yield text
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
                with stream or open_input(path, self.progress) as f:
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
            reason = f"cannot read Parquet row group {group}: {read_error(e)}"
            while row < end:
                row += 1
                yield self._error(source, row, reason)


def _raw_line(line: bytes) -> str:
    return line.rstrip(b"\r\n").decode("utf-8", "backslashreplace")


def _json_error(line: bytes, err: Exception) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as e:
        return utf8_error(line, e)[1]
    col = getattr(err, "colno", None)
    reason = getattr(err, "msg", str(err))
    if "surrogate" in reason:  # one message in every front end (records.LONE_SURROGATE)
        from ..records import LONE_SURROGATE

        return f"invalid JSON: {LONE_SURROGATE}"
    return f"invalid JSON at column {col}: {reason}" if col else f"invalid JSON: {reason}"
