"""An OpenAI rank file as a hash table in a mapped file: token -> rank without building a dict.

pybpe (tokenizers/pybpe.py) counts small inputs; for them, turning 200,000 ranks into Python
objects (`marshal.loads` of rank_cache's derived file, ~0.05-0.13 s, most of it page faults for
~25 MB of new objects) is most of the work left. This form is looked up where it lies: the file
is mapped, its digest checked, and a lookup is a crc32, a probe or two and a slice compare.

`$OMNITOK_HOME/assets/derived/<name>-<sha16>.rtable`: a header of HEAD bytes (magic, version, the
sha256 of the .tiktoken file it comes from, the sha256 of the payload, the number of tokens, of
slots, and of blob bytes, space-padded, ending in a newline), then little-endian uint32 arrays
and the tokens' bytes:

    slots[size]       entry + 1 at slot crc32(token) & (size - 1), probing forward; 0 empty
    offsets[n + 1]    where entry e's bytes start and end in blob
    ranks[n]          entry e's rank; entries are in rank order
    blob              the tokens' bytes, one after another

The table is trusted as rank_cache's file is: a regular file of this user's that no one else may
write (rank_cache.open_trusted), whose header names the expected source, and whose payload has the
digest the header gives; then every array's length is checked against the file's size. A file
that fails is rebuilt (written whole: a temporary file and a rename), never read; where the home cannot be
written the caller counts with the dict it built the table from.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import sys
from array import array
from bisect import bisect_left
from pathlib import Path
from zlib import crc32

from .rank_cache import open_trusted, write_atomic
from .store import omnitok_home

_MAGIC = b"omnitok-rtable"
_VERSION = b"1"
HEAD = 256  # header bytes: the arrays start aligned
_LITTLE = sys.byteorder == "little"


def table_path(name: str, source_sha256: str) -> Path:
    return omnitok_home() / "assets" / "derived" / f"{name}-{source_sha256[:16]}.rtable"


class RankTable:
    """Ranks looked up in a table's bytes (a mapped file, or bytes built in memory)."""

    def __init__(self, data, n: int, size: int):
        view = memoryview(data)
        self._data = data  # the mapping stays open while the views live
        end = HEAD + 4 * size
        self._slots = view[HEAD:end].cast("I")
        self._offsets = view[end : end + 4 * (n + 1)].cast("I")
        end += 4 * (n + 1)
        self._ranks = view[end : end + 4 * n].cast("I")
        self._blob = view[end + 4 * n :]
        self._mask = size - 1
        self._n = n
        self._dense = n == 0 or (self._ranks[0] == 0 and self._ranks[n - 1] == n - 1)  # ranks 0..n-1: rank = entry
        self._memo: dict[bytes, int | None] = {}

    def __len__(self) -> int:
        return self._n

    @property
    def top(self) -> int:
        """The largest rank (-1 for no tokens)."""
        return self._ranks[self._n - 1] if self._n else -1

    def get(self, token: bytes) -> int | None:
        memo = self._memo
        try:
            return memo[token]
        except KeyError:
            pass
        slots, offsets, blob, mask = self._slots, self._offsets, self._blob, self._mask
        i = crc32(token) & mask
        found = None
        while e := slots[i]:
            e -= 1
            if blob[offsets[e] : offsets[e + 1]] == token:
                found = self._ranks[e]
                break
            i = (i + 1) & mask
        if len(memo) >= _MEMO:
            memo.clear()
        memo[token] = found
        return found

    def token(self, rank: int) -> bytes:
        """The bytes of the token of this rank; KeyError if no token has it."""
        ranks = self._ranks
        if self._dense:
            e = rank if 0 <= rank < self._n else -1
        else:
            e = bisect_left(ranks, rank) if rank >= 0 else -1
            e = e if e < self._n and ranks[e] == rank else -1
        if e < 0:
            raise KeyError(rank)
        return bytes(self._blob[self._offsets[e] : self._offsets[e + 1]])

    def items(self):
        """(token, rank) pairs, in rank order."""
        for e in range(self._n):
            yield bytes(self._blob[self._offsets[e] : self._offsets[e + 1]]), self._ranks[e]


_MEMO = 1 << 16  # lookups remembered (a text's words repeat); cleared when full


def build(ranks: dict[bytes, int], source_sha256: str) -> bytes:
    """The table file's bytes for `ranks`."""
    items = sorted(ranks.items(), key=lambda item: item[1])
    n = len(items)
    size = 1 << max(1, (2 * n).bit_length())  # at most a quarter full: short probes
    mask = size - 1
    slots = array("I", bytes(4 * size))
    offsets = array("I", [0])
    at = 0
    for e, (token, _) in enumerate(items):
        at += len(token)
        offsets.append(at)
        i = crc32(token) & mask
        while slots[i]:
            i = (i + 1) & mask
        slots[i] = e + 1
    ranks_ = array("I", [rank for _, rank in items])
    arrays = [slots, offsets, ranks_]
    if not _LITTLE:
        for a in arrays:
            a.byteswap()
    payload = b"".join([a.tobytes() for a in arrays] + [token for token, _ in items])
    fields = [_MAGIC, _VERSION, source_sha256.encode(), hashlib.sha256(payload).hexdigest().encode()]
    head = b" ".join([*fields, b"%d" % n, b"%d" % size, b"%d" % at])
    return head.ljust(HEAD - 1) + b"\n" + payload


def read(path: Path, source_sha256: str) -> RankTable | None:
    """The table in `path`, mapped, or None when it is missing, not trusted or fails a check."""
    fd = open_trusted(path)
    if fd is None:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if os.fstat(f.fileno()).st_size <= HEAD:
                return None
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    return _checked(data, source_sha256)


def _checked(data, source_sha256: str) -> RankTable | None:
    fields = bytes(data[: HEAD - 1]).split()
    if data[HEAD - 1 : HEAD] != b"\n" or len(fields) != 7 or fields[:2] != [_MAGIC, _VERSION] or not _LITTLE:
        return None
    if fields[2] != source_sha256.encode() or not all(f.isdigit() and len(f) < 12 for f in fields[4:]):
        return None
    n, size, blob = (int(f) for f in fields[4:])
    if size < 2 or size & (size - 1) or size <= n or len(data) != HEAD + 4 * size + 4 * (2 * n + 1) + blob:
        return None
    if hashlib.sha256(memoryview(data)[HEAD:]).hexdigest().encode() != fields[3]:
        return None
    return RankTable(data, n, size)


def load(name: str, source_sha256: str, ranks) -> RankTable | None:
    """The table of a verified rank file: mapped from its file when that passes its checks, else
    made from `ranks()` (the ranks as a dict) and its file (re)written. None where it cannot be
    written (a read-only home: the dict `ranks()` gave serves this run) or used (a big-endian
    machine: the file's arrays are little-endian)."""
    if not _LITTLE:
        return None
    path = table_path(name, source_sha256)
    table = read(path, source_sha256)
    if table is None and write_atomic(path, b"", build(ranks(), source_sha256)):
        table = read(path, source_sha256)
    return table  # None where the home cannot be written: the caller has the dict already
