"""Shards: an input cut into pieces that workers read, parse, extract and count on their own, so
the parent's serial share of the work is small (DESIGN: parallel by shards, not by texts). One
`Shard` type serves both places that cut inputs:

- `--jobs` on this host (pipeline._count_shards): a regular file is cut into byte ranges at line
  ends, each read by its worker with one pread; an input that cannot seek (stdin, a pipe, a FIFO,
  a .gz) is read here line by line, as the serial reader reads it, and handed over in blocks of
  lines. A worker gives back per record only what the parent needs (line, id, tokens, per-field
  counts, error, the raw record for --add-field), never the texts; the parent numbers the lines.
- a cluster (omnitok.ray.count_paths): the inputs, local paths or any URI a pyarrow filesystem
  reads (or paths in a given `fs`), are listed (`list_inputs`) and planned (`plan_shards`: runs
  of Parquet row groups, byte ranges of JSONL files, a whole .gz); each shard carries its place
  (`index`, `first_row`, `lines_before` from `newlines` / `number_lines`), so that a worker
  anywhere reads it alone (`shard_records`) with the lines numbered as the whole file numbers them.

Records are read by the same InputStream code in every case (jsonl_lines, text_lines,
parquet_group), so every --jobs value and a cluster give the same records, lines and errors.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import IO, Any

from ..errors import InputError, UsageError
from .ids import read_keeping_surrogates

SHARD_MIN = 1 << 20
# The largest shard. Small shards keep both the workers' transient memory (a shard's bytes, its
# texts and parsed records) and the wait for the first and last shards small. Measured at
# --jobs 2 on 2 cores, interleaved, 8 MB -> 2 MB (pipeline.SHARD_WORKER_TASKS 4 -> 16, so the
# same text a worker): 100 MB of text 0.79 -> 0.75 s (-o /dev/null: 0.76 -> 0.72 s, stdin:
# 1.22 -> 1.09 s); 1 GB of distinct text 4.85 -> 4.42 s, peak summed RSS of the process tree
# 405 -> 371 MB (PSS 248 -> 214 MB). 1 MB was no faster than 2 MB.
SHARD_MAX = 2 << 20
CLUSTER_SHARD = 32 << 20  # text per cluster shard: large enough that a task's overhead is noise

_JSONL = {".jsonl", ".ndjson", ".json"}
_PARQUET = {".parquet", ".pq"}


@dataclass(slots=True)
class Shard:
    """A piece of one input. Where it is: a byte range [start, end) of `path` (JSONL, text), the
    bytes themselves (`data`: a block of a stream's lines), or Parquet row groups (`group` and the
    `groups - 1` after it; end - start: their size in the file). A cluster's shards also carry
    their `index` in the plan, the file's row number of their first row (`first_row`) or the line
    ends before them (`lines_before`), and an `error` where the input cannot be read at all."""

    source: str  # the input's name in messages
    fmt: str  # jsonl | text (one record a line) | parquet
    first: bool = True  # holds the input's first line (where a BOM is skipped)
    path: str | None = None  # a file's byte range (a path in `fs`, or a local path or URI) ...
    start: int = 0
    end: int = 0
    data: bytes | None = None  # ... or the bytes themselves
    group: int | None = None  # Parquet: the first row group ...
    groups: int = 1  # ... and how many, in order
    first_row: int = 0
    lines_before: int = 0
    index: int = 0
    error: str | None = None

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.end - self.start

    @property
    def gz(self) -> bool:
        return self.path is not None and self.path.lower().endswith(".gz")

    def read(self, fs=None) -> bytes:
        """The shard's bytes (a byte range: one pread; in `fs` when given, else the local file)."""
        if self.data is not None:
            return self.data
        if fs is not None:
            with fs.open_input_file(self.path) as f:
                return f.read_at(self.end - self.start, self.start)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return os.pread(fd, self.end - self.start, self.start)
        finally:
            os.close(fd)

    def to_dict(self) -> dict:
        """Plain data (JSON), for shipping to a worker; never a stream's bytes."""
        if self.data is not None:
            raise ValueError("a shard of a stream's bytes is not shipped")
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Shard:
        return cls(**data)


def shard_bytes(total: int | None, jobs: int) -> int:
    """About four shards a worker for a small input (so a slow shard does not idle the others), more
    for a large one: within [SHARD_MIN, SHARD_MAX]."""
    if not total:
        return SHARD_MAX
    return max(SHARD_MIN, min(SHARD_MAX, total // (4 * jobs) + 1))


def file_shards(path: str, source: str, fmt: str, size: int, chunk: int) -> Iterator[Shard]:
    """Byte ranges of a regular file, each ending at a line end (or the end of the file)."""
    with open(path, "rb") as f:
        start = 0
        while start < size:
            end = start + chunk
            if end < size:
                f.seek(end - 1)
                f.readline()  # to the end of the line that holds byte end-1
                end = f.tell()
            end = min(end, size)
            yield Shard(source, fmt, start == 0, path, start, end)
            start = end


def stream_shards(lines: IO[bytes], head: list[bytes], source: str, fmt: str, chunk: int) -> Iterator[Shard]:
    """Blocks of whole lines of a stream, read here line by line as the serial reader reads them:
    an error while reading (a truncated .gz) is raised after the block of lines read before it."""
    block: list[bytes] = list(head)
    size = sum(map(len, block))
    first = True
    failure: BaseException | None = None
    try:
        for line in lines:
            block.append(line)
            size += len(line)
            if size >= chunk:
                yield Shard(source, fmt, first, data=b"".join(block))
                block, size, first = [], 0, False
    except (OSError, EOFError) as e:
        failure = e
    if block:
        yield Shard(source, fmt, first, data=b"".join(block))
    if failure is not None:
        raise failure


def read_shard(reader, shard: Shard, plain: bool = False) -> list:
    """A `--jobs` worker's records of a shard, read by `reader` (a fresh copy of the run's
    InputStream), lines numbered from the shard's start (the parent offsets them); `plain`: a JSONL
    shard's plain records as tuples (InputStream.jsonl_lines)."""
    if shard.group is not None:
        opened = reader.parquet_open(shard.path, shard.source)
        if not isinstance(opened, tuple):  # the file changed since it was planned
            return [opened]
        pf, _, extractor, columns = opened
        return list(reader.parquet_group(pf, shard.group, extractor, columns, shard.source))
    lines = io.BytesIO(shard.read())
    if shard.fmt == "jsonl":
        return list(reader.jsonl_lines(lines, shard.source, shard.first, plain))
    return list(reader.text_lines(lines, shard.source, shard.first))


# --- a cluster's shards: inputs on any filesystem, each shard read alone ---------------------------


def filesystem(path: str, fs=None) -> tuple[Any, str]:
    """(pyarrow filesystem, path in it): `fs` as given with `path` in it, else a URI's filesystem
    (s3://, gs://, hdfs://, file://), else the local one with the absolute path."""
    import pyarrow.fs as pafs

    if fs is not None:
        return fs, path
    if "://" in path:
        try:
            return pafs.FileSystem.from_uri(path)
        except (OSError, ValueError) as e:  # unreachable storage, no credentials, an unknown scheme
            raise InputError(path, None, f"cannot open: {' '.join(str(e).split())[:300]}") from None
    return pafs.LocalFileSystem(), os.path.abspath(path)


def _format_of(path: str, input_format: str, pfs=None) -> str | None:
    """jsonl, json (one JSON document: read whole, one shard), parquet; None: not an input."""
    from .formats import detect_format

    if input_format != "auto":
        return input_format
    suffix = os.path.splitext(path.lower().removesuffix(".gz"))[1]
    if suffix not in _JSONL | _PARQUET:
        return None
    fmt = detect_format(path)
    return _json_kind(pfs, path) if fmt == "json" and pfs is not None else fmt


def _json_kind(pfs, where: str) -> str:
    """A file named .json holds JSONL when its first non-blank line is a whole JSON object (as the
    local reader decides), else one JSON document."""
    import orjson

    from .inputs import GzipReader

    try:
        with pfs.open_input_stream(where) as raw:
            f = GzipReader(fileobj=raw) if where.lower().endswith(".gz") else raw
            head = f.read(1 << 20)
    except (OSError, EOFError):
        return "jsonl"  # unreadable: the shard's reading says why
    for line in head.removeprefix(b"\xef\xbb\xbf").splitlines():
        if line.strip():
            try:
                return "jsonl" if isinstance(orjson.loads(line), dict) else "json"
            except orjson.JSONDecodeError:
                ok, value = read_keeping_surrogates(line)  # a number too large, a lone surrogate (io.ids)
                return "jsonl" if ok and isinstance(value, dict) else "json"
    return "jsonl"


def list_inputs(paths: Sequence[str], input_format: str = "auto", fs=None) -> list[tuple[str, str, str, int]]:
    """(source name, where workers read it, format, size) of every input file, in order: files as
    given, directories walked (sorted; hidden and _-prefixed names skipped, and with input_format
    auto only .jsonl/.ndjson/.json/.parquet/.pq, optionally .gz). Where workers read it: a path
    in `fs` when given, else an absolute path or the URI. Missing inputs and text inputs fail here."""
    import pyarrow.fs as pafs

    if input_format not in ("auto", "jsonl", "json", "parquet"):
        raise UsageError(f"on Ray the inputs are Parquet or JSONL (or JSON documents), not {input_format!r}")
    if not paths:
        raise UsageError("give input files or directories (stdin cannot be spread over a cluster)")
    out = []
    for p in paths:
        if p == "-":
            raise UsageError("stdin cannot be spread over a Ray cluster; give files or directories")
        pfs, where = filesystem(p, fs)
        info = pfs.get_file_info(where)
        if info.type == pafs.FileType.NotFound:
            raise InputError(p, None, "no such file or directory")
        remote = fs is None and "://" in p
        if info.type == pafs.FileType.Directory:
            found = []
            for f in pfs.get_file_info(pafs.FileSelector(where, recursive=True)):
                rel = os.path.relpath(f.path, where)
                if f.type != pafs.FileType.File or any(part.startswith((".", "_")) for part in rel.split(os.sep)):
                    continue
                fmt = _format_of(f.path, input_format, pfs)
                if fmt is not None:
                    name = _source(p, where, f.path)
                    found.append((name, name if remote else f.path, fmt, f.size))
            out += sorted(found, key=lambda t: t[1])
            continue
        fmt = _format_of(where, input_format, pfs) or "text"
        if fmt == "text":
            raise UsageError(f"{p}: on Ray the inputs are Parquet or JSONL (name them so, or pass --input-format)")
        out.append((p, p if remote else where, fmt, info.size))
    if not out:
        raise UsageError(f"no Parquet or JSONL files in {', '.join(paths)}")
    return out


def _source(given: str, base: str, path: str) -> str:
    """A directory member's name in messages: as the directory was given, plus its relative path."""
    rel = os.path.relpath(path, base)
    return given.rstrip("/") + "/" + rel.replace(os.sep, "/")


def plan_shards(files, fields: tuple[str, ...] | None, id_field: str | None, chunk: int, fs=None) -> list[Shard]:
    """The shards of `list_inputs`' files, in input order, indexed. Parquet: runs of row groups of
    about `chunk` bytes (footers read here, so each shard knows its first row); a file that cannot
    be read as Parquet, or lacks the text column, is one error shard, as it is one error record
    locally. JSONL: byte ranges (a shard owns the lines that start in it), or the whole file when
    gzipped. Line numbers of byte ranges come after: `ranges_to_count`, `newlines`, `number_lines`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..records import ExtractError, Extractor

    extractor = Extractor(fields, None, id_field)
    shards: list[Shard] = []
    for source, path, fmt, size in files:
        if fmt != "parquet":
            if fmt == "json" or path.lower().endswith(".gz") or size <= chunk:
                shards.append(Shard(source, fmt, True, path, 0, size))
            else:
                shards += [Shard(source, fmt, s == 0, path, s, min(size, s + chunk)) for s in range(0, size, chunk)]
            continue
        pfs, where = filesystem(path, fs)
        try:
            with pfs.open_input_file(where) as f:
                pf = pq.ParquetFile(f)
                meta = pf.metadata
                names = pf.schema_arrow.names
        except (pa.ArrowException, OSError, EOFError) as e:
            shards.append(Shard(source, fmt, path=path, error=f"not a readable Parquet file: {e}"))
            continue
        try:
            extractor.for_columns(names)
        except ExtractError as e:
            shards.append(Shard(source, fmt, path=path, error=str(e)))
            continue
        first_group = first_row = row = acc = 0
        planned = False
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            acc += rg.total_byte_size
            row += rg.num_rows
            if acc >= chunk:
                shards.append(_groups(source, path, first_group, g + 1, first_row, acc))
                first_group, first_row, acc, planned = g + 1, row, 0, True
        if first_group < meta.num_row_groups or not planned:  # the rest, or a file of no row groups
            shards.append(_groups(source, path, first_group, meta.num_row_groups, first_row, acc))
    for i, s in enumerate(shards):
        s.index = i
    return shards


def _groups(source: str, path: str, first: int, stop: int, first_row: int, size: int) -> Shard:
    return Shard(source, "parquet", first == 0, path, 0, size, group=first, groups=stop - first, first_row=first_row)


def newlines(path: str, start: int, end: int, fs=None) -> int:
    """Line ends in [start, end) of a file (the line numbers of the shards after it)."""
    pfs, where = filesystem(path, fs)
    n, pos = 0, start
    with pfs.open_input_file(where) as f:
        while pos < end:
            block = f.read_at(min(16 << 20, end - pos), pos)
            if not block:
                break
            n += block.count(b"\n")
            pos += len(block)
    return n


def ranges_to_count(shards: Sequence[Shard]) -> list[int]:
    """The JSONL byte-range shards whose line ends the shards after them need (all but the last of
    each file): count each with `newlines` and give the counts to `number_lines`."""
    out = []
    for i, s in enumerate(shards[:-1]):
        nxt = shards[i + 1]
        if _ranged(s) and _ranged(nxt) and nxt.path == s.path:
            out.append(i)
    return out


def number_lines(shards: Sequence[Shard], counts: dict[int, int]) -> None:
    """Give every JSONL byte-range shard `lines_before`: the line ends in its file before it."""
    before = 0
    for i, s in enumerate(shards):
        if not _ranged(s):
            continue
        if s.start == 0:
            before = 0
        s.lines_before = before
        before += counts.get(i, 0)


def _ranged(s: Shard) -> bool:
    return s.fmt == "jsonl" and s.error is None and not s.gz


def owned_lines(f, start: int, end: int, size: int) -> tuple[bytes, bool]:
    """The bytes of the lines that start in [start, end), and whether the first starts at `start`."""
    if start == 0:
        p, block = 0, f.read_at(end, 0)
    else:
        block = f.read_at(end - start + 1, start - 1)  # with the byte before: does a line start at `start`?
        j = block.find(b"\n")
        if j < 0 or start + j >= end:
            return b"", True
        p, block = j, block[j + 1 :]
    if end < size and not block.endswith(b"\n"):  # the last line runs past the range: read it whole
        parts, pos = [block], end
        while pos < size:
            chunk = f.read_at(min(1 << 20, size - pos), pos)
            if not chunk:
                break
            k = chunk.find(b"\n")
            if k >= 0:
                parts.append(chunk[: k + 1])
                break
            parts.append(chunk)
            pos += len(chunk)
        block = b"".join(parts)
    return block, p == 0


def shard_records(shard: Shard, extractor, fs=None) -> Iterator:
    """The records of one planned shard, read alone (on any worker) by the local reader's own code
    (InputStream's jsonl_lines and parquet_group), numbered as the whole file numbers them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..records import ExtractError, Record
    from .inputs import GzipReader
    from .readers import InputStream

    source = shard.source
    if shard.error is not None:
        yield Record(0, source, None, error=shard.error)
        return
    reader = InputStream([shard.path], extractor, shard.fmt)
    pfs, where = filesystem(shard.path, fs)
    if shard.fmt == "parquet":
        try:
            f = pfs.open_input_file(where)
            pf = pq.ParquetFile(f)
            ex, tops = extractor.for_columns(pf.schema_arrow.names)
        except (pa.ArrowException, OSError, EOFError, ExtractError) as e:  # the file changed since the plan
            reason = str(e) if isinstance(e, ExtractError) else f"not a readable Parquet file: {e}"
            yield Record(0, source, None, error=reason)
            return
        names = set(pf.schema_arrow.names)
        columns = sorted(set(tops) | ({ex.id_field} & names if ex.id_field else set()))
        row = shard.first_row
        with f:
            for g in range(shard.group or 0, (shard.group or 0) + shard.groups):
                yield from reader.parquet_group(pf, g, ex, columns, source, row)
                row += pf.metadata.row_group(g).num_rows
        return
    if shard.fmt == "json":  # one JSON document, read whole as the local reader reads it
        with pfs.open_input_stream(where) as raw, contextlib.ExitStack() as stack:
            f = stack.enter_context(GzipReader(fileobj=raw, mode="rb")) if shard.gz else raw
            yield from reader._read_json(f, source, [])
        return
    if shard.gz:
        with pfs.open_input_stream(where) as raw, GzipReader(fileobj=raw, mode="rb") as gz:
            try:
                yield from reader.jsonl_lines(io.BufferedReader(gz, 1 << 20), source)
            except (OSError, EOFError) as e:
                yield reader.shard_error(source, reader.lines_read, e)
        return
    with pfs.open_input_file(where) as f:
        data, at_start = owned_lines(f, shard.start, shard.end, f.size())
    offset = shard.lines_before + (0 if at_start else 1)
    for rec in reader.jsonl_lines(io.BytesIO(data), source, shard.start == 0):
        rec.line += offset
        yield rec
