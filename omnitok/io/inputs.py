"""Opening an input: a file name, or stdin ('-'), as one binary stream whose bytes are counted
for the progress bar, a `.gz` name decompressed (damaged gzip data an OSError like any other read
error), and the one-line reasons a file cannot be opened or read."""

from __future__ import annotations

import gzip
import io
import os
import sys
import zlib
from dataclasses import dataclass
from typing import IO

from ..errors import InputError

STDIN = "-"
GZIP_MAGIC = b"\x1f\x8b"


def utf8_error(data: bytes, err: UnicodeDecodeError, first_line: int = 1) -> tuple[int, str]:
    """(the line, the message) of `data`'s first byte that is not UTF-8: "invalid UTF-8 (byte
    0xff at column 2)", the one wording of every reader (lines numbered from `first_line`)."""
    line = first_line + data.count(b"\n", 0, err.start)
    col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
    return line, f"invalid UTF-8 (byte 0x{data[err.start]:02x} at column {col})"


def argument_error(text: str) -> str | None:
    """Why a text given on the command line is not UTF-8, as stdin's reader says it ("invalid
    UTF-8 (byte 0xff at column 2)"), or None. Python hands argv's bytes that are not UTF-8 over
    as lone surrogates (U+DC80-U+DCFF, its surrogateescape): counted as they stood, they were
    replaced by U+FFFD without a word, where the same bytes from a file or stdin are an error."""
    if text.isascii():
        return None
    try:
        data = os.fsencode(text)  # argv's own bytes again
    except UnicodeEncodeError:  # a lone surrogate that no byte gave (the Python API's): not this rule
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, message = utf8_error(data, e)
        return message if line == 1 else message.replace(" at column", f" at line {line}, column")
    return None


def argument_text(text: str, where: str) -> str:
    """`text`, given on the command line as `where`; an InputError (exit 1) if it is not UTF-8."""
    if (error := argument_error(text)) is not None:
        raise InputError(where, None, error)
    return text


def source_name(path: str) -> str:
    return "<stdin>" if path == STDIN else path


def is_stream(path: str) -> bool:
    """stdin, a pipe, a FIFO or a device: an input that has no size and cannot seek."""
    if path == STDIN or path.startswith(("/dev/", "/proc/")):  # /dev/stdin, /dev/fd/63: names of streams
        return True
    try:
        return not os.path.isdir(path) and not os.path.isfile(path) and os.path.exists(path)
    except OSError:
        return False


@dataclass
class Progress:
    """Bytes (or rows) consumed so far, read by the progress bar."""

    done: int = 0
    total: int | None = None
    records: int = 0


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


def open_input(path: str, progress: Progress) -> IO[bytes]:
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


def read_error(e: BaseException) -> str:
    text = " ".join(str(e).split())[:300]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
