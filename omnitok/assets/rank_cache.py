"""A fast form of an OpenAI rank file, derived once and verified on every load.

Parsing a .tiktoken file (200,000 base64 lines for o200k_base) takes ~0.13-0.2 s; unmarshalling
the same dict takes ~0.05 s. The derived file, `$OMNITOK_HOME/assets/derived/<name>.ranks`, is
one header line and the marshalled dict:

    omnitok-ranks 1 marshal<V> <sha256 of the .tiktoken file> <sha256 of the payload> <entries>

It is written once (a temporary file in the same directory, then a rename) and trusted only when
the header names the expected source file, the marshal format of this Python, and the sha256 of
the bytes that follow: only then are they unmarshalled (marshal on damaged bytes can crash the
interpreter). A file that fails any check is rebuilt from the verified .tiktoken file; a
directory that cannot be written (a read-only OMNITOK_HOME) just means no cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from .store import omnitok_home

_MAGIC = b"omnitok-ranks"
_VERSION = b"1"
_MAX_BYTES = 64 << 20  # o200k_base's is 3.4 MB: anything far larger is not one of ours


def cache_path(name: str, source_sha256: str) -> Path:
    # The marshal format in the name: Pythons of other formats sharing a home keep their own files.
    return omnitok_home() / "assets" / "derived" / f"{name}-{source_sha256[:16]}-m{marshal.version}.ranks"


def open_trusted(path: Path) -> int | None:
    """A descriptor of `path` when it is a regular file of this user's that no one else may write
    (as ssh trusts its files) and at most _MAX_BYTES, opened not through a symlink and never
    blocking on a FIFO; else None. A digest in the file then finds damage, not a forger who can
    write the directory."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    st = os.fstat(fd)
    mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_BYTES or st.st_mode & 0o022 or not mine:
        os.close(fd)
        return None
    return fd


def read_cached(path: Path, source_sha256: str) -> dict[bytes, int] | None:
    """The ranks in a derived file, or None when it is missing, unreadable or fails a check."""
    fd = open_trusted(path)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(_MAX_BYTES + 1)
        except OSError:
            return None
    head, sep, payload = data.partition(b"\n")
    fields = head.split(b" ")
    if not sep or len(fields) != 6 or fields[:3] != [_MAGIC, _VERSION, b"marshal%d" % marshal.version]:
        return None
    if fields[3] != source_sha256.encode() or not fields[5].isdigit():
        return None
    if hashlib.sha256(payload).hexdigest().encode() != fields[4]:
        return None
    try:  # the digest matched: these are the bytes this module wrote
        ranks = marshal.loads(payload)
    except (ValueError, EOFError, TypeError, MemoryError):
        return None
    if type(ranks) is not dict or len(ranks) != int(fields[5]):
        return None
    return ranks


def write_cached(path: Path, source_sha256: str, ranks: dict[bytes, int]) -> bool:
    """Write the derived file (temporary file + rename); False where it cannot be written."""
    payload = marshal.dumps(ranks)
    head = b" ".join(
        [
            _MAGIC,
            _VERSION,
            b"marshal%d" % marshal.version,
            source_sha256.encode(),
            hashlib.sha256(payload).hexdigest().encode(),
            b"%d" % len(ranks),
        ]
    )
    return write_atomic(path, head + b"\n", payload)


def write_atomic(path: Path, head: bytes, payload: bytes) -> bool:
    """`head + payload` as `path`, whole or not at all (a temporary file in the same directory,
    then a rename), readable by all, writable by this user; False where it cannot be written."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, 0o644)  # as a plain file: mkstemp's 0600 would hide it from a shared home's users
            f.write(head)
            f.write(payload)
        os.replace(tmp, path)
        return True
    except OSError:
        return False
    finally:  # failed or interrupted (Ctrl-C): no temporary file left behind
        if tmp is not None and os.path.lexists(tmp):
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def load_ranks(
    source: Path, name: str, source_sha256: str, parse: Callable[[Path], dict[bytes, int]]
) -> dict[bytes, int]:
    """The ranks of a verified rank file `source` (its sha256 `source_sha256`): from the derived
    file when it passes its checks, else parsed by `parse` and the derived file (re)written."""
    path = cache_path(name, source_sha256)
    ranks = read_cached(path, source_sha256)
    if ranks is None:
        ranks = parse(source)
        write_cached(path, source_sha256, ranks)
    return ranks
