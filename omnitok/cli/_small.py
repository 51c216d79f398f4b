"""Small inputs of `omnitok count` (issue 26 item 2): is the whole input at most SMALL bytes?

For a count that small, start-up is the run: gigatoken's tokenizer and tiktoken's CoreBPE each
take 0.2-0.5 s of CPU to build for o200k_base. So where the user named no engine, a small input of
a model counted offline with an OpenAI encoding (OpenAI's models, Claude's estimate) is encoded by
`pybpe` (tokenizers/pybpe.py: tiktoken's merge in Python over the
ranks of omnitok's derived rank file, the same ids; characters above U+00FF go to tiktoken), and
the rows say `engine: pybpe`.

stdin from a pipe has no size: up to SMALL + 1 bytes are read first, and sys.stdin is replaced by
a stream that gives those bytes back before the rest (same descriptor, for the output checks)."""

from __future__ import annotations

import io
import os
import stat
import sys

SMALL = 64 * 1024  # bytes


class _Prefixed(io.RawIOBase):
    """The bytes read ahead, then the rest of the original binary stdin."""

    def __init__(self, head: bytes, rest, fd: int):
        self._head, self._rest, self._fd = memoryview(head), rest, fd

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return False

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._rest.readinto(buffer)


def _stdin_is_small(limit: int) -> bool:
    stdin = sys.stdin
    try:
        fd = stdin.fileno()
        st = os.fstat(fd)
        buffer = stdin.buffer
    except (AttributeError, OSError, ValueError):
        return False
    if stat.S_ISREG(st.st_mode):  # `< file`: its size, from where the descriptor stands
        try:
            at = os.lseek(fd, 0, os.SEEK_CUR)
            return st.st_size - at <= limit and not os.pread(fd, 4, at).startswith(PACKED)
        except OSError:
            return False
    if stdin.isatty():  # typed by hand: not read ahead
        return False
    chunks, n, failed = [], 0, False
    while n <= limit:
        try:
            chunk = buffer.read1(limit + 1 - n)
        except OSError:  # the run's own read meets it again and reports it (after what was read)
            failed = True
            break
        if not chunk:
            break
        chunks.append(chunk)
        n += len(chunk)
    head = b"".join(chunks)
    reader = io.BufferedReader(_Prefixed(head, buffer, fd))
    sys.stdin = io.TextIOWrapper(reader, encoding=stdin.encoding, errors=stdin.errors)
    return not failed and n <= limit and not head.startswith(PACKED)


PACKED = (b"\x1f\x8b", b"PAR1")  # gzip, Parquet: a small file may hold far more text


def _packed(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4).startswith(PACKED)
    except OSError:
        return True  # the run reports it


def is_small(files: list[str] | None, texts: list[str] | None) -> bool:
    """Whether the count's whole input (texts, files, stdin) is at most SMALL bytes: plain files
    by their size (not .gz: their text may be larger), stdin read ahead. Reads nothing when a file
    already rules it out."""
    total = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts or [])
    if texts and not files:
        return total <= SMALL
    stdin = False
    for path in files or ["-"]:
        if path == "-":
            stdin = True
            continue
        if "://" in path or path.lower().endswith(".gz"):
            return False
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return False  # the run reports it
        if not stat.S_ISREG(st.st_mode) or _packed(path):
            return False
        total += st.st_size
        if total > SMALL:
            return False
    return not stdin or _stdin_is_small(SMALL - total)


def small_input_engine(
    model: str | None, encoding: str | None, files: list[str] | None, texts: list[str] | None
) -> str:
    """The engine a command asks for where none was named (`--engine auto`, no --tokenizer):
    pybpe for an input of at most SMALL bytes of a model whose offline count runs on an OpenAI
    encoding (OpenAI's own; Claude's estimate, o200k scaled), which needs no engine built, with
    tiktoken's ids; else auto. An unknown model is left to the command. (decode builds no fast
    engine whatever the input: tokens._decode_engine.)"""
    from .. import api, errors

    try:
        if not api.rank_files_only(api.resolve(model, encoding, None)):
            return "auto"
    except errors.OmnitokError:
        return "auto"
    return "pybpe" if is_small(files, texts) else "auto"
