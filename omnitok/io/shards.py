"""Shards: an input cut into pieces that worker processes read, parse, extract and count on
their own, so the parent's serial share of the work is small (DESIGN: parallel by shards, not by
texts).

A regular file is cut into byte ranges at line ends, each read by its worker with one pread; an
input that cannot seek (stdin, a pipe, a FIFO, a .gz) is read here line by line, as the serial
reader reads it, and handed over in blocks of lines. A worker gives back per record only what the
parent needs to write and summarise (line, id, tokens, per-field counts, error, the raw record
for --add-field), never the texts. Records are read by the same InputStream code in both cases
(jsonl_lines, text_lines), so every --jobs value gives the same records, lines and errors.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

SHARD_MIN = 1 << 20
SHARD_MAX = 8 << 20


@dataclass(slots=True)
class Shard:
    source: str  # the input's name in messages
    fmt: str  # jsonl | text (one record a line) | parquet
    first: bool  # holds the input's first line (where a BOM is skipped)
    path: str | None = None  # a regular file's byte range ...
    start: int = 0
    end: int = 0
    data: bytes | None = None  # ... or the bytes themselves
    group: int | None = None  # a Parquet file's row group (end - start: its size in the file)

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.end - self.start

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return os.pread(fd, self.end - self.start, self.start)
        finally:
            os.close(fd)


def shard_bytes(total: int | None, jobs: int) -> int:
    """About four shards a worker (so a slow shard does not idle the others), within bounds."""
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
    """The records of a shard, read by `reader` (a fresh copy of the run's InputStream); `plain`:
    a JSONL shard's plain records as tuples (InputStream.jsonl_lines)."""
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
