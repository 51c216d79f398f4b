"""Where a command's results go: stdout, or a file that appears whole or not at all.

A file output is written to a temporary file beside the target and renamed over it only when
the run finishes (`commit`); a run that stops at a bad record, is interrupted or fails leaves
an existing file byte-for-byte as it was (`discard`). Before anything is read, an output that
is also an input (the same file, through any name, link or stdin redirection) is refused, so
`omnitok count f.jsonl --add-field n -o f.jsonl` cannot empty its input.

Targets that are not regular files (/dev/null, a FIFO, a terminal) are written in place: a
rename would replace the device with a file. A path that names one of this process's open
descriptors (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N, or a link to one) is written
through that descriptor, whatever it is open on: `-o /dev/stdout >> log` appends to log (a
rename over the file the descriptor is open on replaced it, losing what it held, and a pipe has
no path to rename to). Stdout itself, redirected onto an input (`count f.jsonl >> f.jsonl`), is
refused as that input named by -o is: the run would read back what it writes.

A write, flush, fsync or close that fails (a full disk, a file-size limit, /dev/full as stdout)
is an `OutputError`: one line naming the output and the reason, exit 1; the temporary file is
removed and nothing is committed. The failure is caught at the file descriptor (below the
buffer), so it is seen however the bytes got there (a sink, pyarrow, the csv module), and later
writes are dropped so that the run can unwind without a second error.

The temporary file is `.NAME.omnitok.PID.MACHINE.RANDOM.tmp` (NAME the target's name, cut to fit
the file-name limit; PID the writing process; MACHINE 8 hex digits naming the host's pid space,
from its boot id and pid namespace; RANDOM 8 hex digits). One a killed run left (kill -9, a power
cut) is removed by the next run to the same output (`sweep_stale`), only when it is safe: a
regular file (never through a symlink) of this user, in the target's directory, of that name
pattern for that NAME, whose MACHINE is this one's and whose PID is no longer running. A file of
a live process, of another host or container, or of another user is left alone.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import os
import re
import stat
import sys
from collections.abc import Iterable
from typing import IO

from ..errors import OmnitokError, UsageError

STDIO = "-"
NAME_MAX = 255  # bytes in a file name (Linux, macOS)
_TMP_EXTRA = len(".omnitok.4294967295.01234567.01234567.tmp") + 1  # the temporary name past NAME


class OutputError(OmnitokError):
    """An output could not be written (disk full, file too large, an I/O error): exit 1."""


class _Raw(io.FileIO):
    """The output's file descriptor: an OSError from a write becomes the output's OutputError,
    recorded on it; after one, writes are dropped (the output will not be committed)."""

    def __init__(self, fd: int, owner: Output, closefd: bool = True):
        super().__init__(fd, "wb", closefd=closefd)
        self._owner = owner

    def write(self, data) -> int:
        if self._owner.failure is not None:
            return memoryview(data).nbytes
        try:
            return super().write(data)
        except BlockingIOError:
            raise
        except OSError as e:
            if e.errno == errno.EPIPE:  # the reader went away (`| head`): the CLI stops quietly
                raise
            raise self._owner.failed(e) from None


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _input_stats(inputs: Iterable[str]) -> list[tuple[str, os.stat_result]]:
    found = []
    for path in inputs:
        try:
            st = os.fstat(sys.stdin.fileno()) if path == STDIO else os.stat(path)
        except (OSError, ValueError, AttributeError):
            continue  # a missing input is reported by the reader, with its own message
        if stat.S_ISREG(st.st_mode):
            found.append(("stdin" if path == STDIO else path, st))
    return found


def _refuse_input(path: str, existing: os.stat_result, inputs: Iterable[str], option: str) -> None:
    for name, st in _input_stats(inputs):
        if _same_file(existing, st):
            raise UsageError(f"{option} {path} is also an input ({name}); write the results to another file")


def _refuse_stdout(inputs: Iterable[str]) -> None:
    """Refuse a stdout redirected onto an input (`count f.jsonl >> f.jsonl`): the run would read
    back what it writes, growing the file until the disk is full (GNU cat refuses it too)."""
    try:
        st = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return
    if stat.S_ISREG(st.st_mode):
        for name, other in _input_stats(inputs):
            if _same_file(st, other):
                raise UsageError(f"stdout is also an input ({name}); write the results to another file")


def check_output(path: str | None, inputs: Iterable[str], option: str = "-o") -> None:
    """Refuse, before anything is read, an output file that is also an input."""
    if path and path != STDIO:
        with contextlib.suppress(OSError):
            _refuse_input(path, os.stat(path), inputs, option)


@functools.cache
def _machine() -> str:
    """8 hex digits naming this host's pid space: where a temporary file's PID can be checked."""
    parts = []
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id", "rb") as f:
        parts.append(f.read().strip())
    with contextlib.suppress(OSError):
        parts.append(os.fsencode(os.readlink("/proc/self/ns/pid")))
    with contextlib.suppress(AttributeError, OSError):
        parts.append(os.fsencode(os.uname().nodename))
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:8]


def _tmp_stem(name: str) -> str:
    """`name` cut (in bytes) so that its temporary file's name fits NAME_MAX."""
    raw = os.fsencode(name)
    return name if len(raw) + _TMP_EXTRA <= NAME_MAX else os.fsdecode(raw[: NAME_MAX - _TMP_EXTRA])


def tmp_name(name: str) -> str:
    """The temporary file of a run writing the output called `name` (the module's docstring)."""
    return f".{_tmp_stem(name)}.omnitok.{os.getpid()}.{_machine()}.{os.urandom(4).hex()}.tmp"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # another user's process (EPERM), or no pid at all: running, to be safe
    return True


def sweep_stale(directory: str, name: str) -> list[str]:
    """Remove the temporary files of dead runs that wrote the output `name` in `directory`, where
    safe (the module's docstring); returns the names removed. Best effort: errors are ignored."""
    pattern = re.compile(
        rf"\.{re.escape(_tmp_stem(name))}\.omnitok\.([1-9][0-9]{{0,9}})\.([0-9a-f]{{8}})\.[0-9a-f]{{8}}\.tmp"
    )
    removed: list[str] = []
    if not hasattr(os, "getuid") or os.unlink not in os.supports_dir_fd:
        return removed  # (not POSIX)
    machine, uid = _machine(), os.getuid()
    try:
        dirfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return removed
    try:
        with os.scandir(dirfd) as entries:
            found = [e.name for e in entries if pattern.fullmatch(e.name)]
        for entry in found:
            match = pattern.fullmatch(entry)
            if match.group(2) != machine or _running(int(match.group(1))):
                continue
            try:
                st = os.stat(entry, dir_fd=dirfd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_uid == uid:
                    # Unlinks the name itself: a symlink put there since is removed, never followed.
                    os.unlink(entry, dir_fd=dirfd)
                    removed.append(entry)
            except OSError:
                continue
    except OSError:
        pass
    finally:
        os.close(dirfd)
    return removed


_FD_PATH = re.compile(r"/(?:dev/fd|proc/(self|thread-self|\d+)/fd)/(\d+)")


def _descriptor(path: str) -> int | None:
    """The descriptor of this process that `path` names (/dev/stdout is a link to
    /proc/self/fd/1), following its links; None for any other path."""
    p = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        m = _FD_PATH.fullmatch(p)
        if m is not None and m.group(1) in (None, "self", "thread-self", str(os.getpid())):
            return int(m.group(2))
        try:
            link = os.readlink(p)
        except OSError:  # not a link (or not there): a path like any other
            return None
        p = os.path.normpath(os.path.join(os.path.dirname(p), link))
    return None


class Output:
    """A binary output stream; `close(commit)` publishes or drops what was written."""

    def __init__(self, path: str | None, inputs: Iterable[str] = (), option: str = "-o"):
        self.path = None if not path or path == STDIO else path
        self._tmp: str | None = None
        self._target: str | None = None
        self._closed = False
        self.failure: OutputError | None = None
        if self.path is None:
            _refuse_stdout(inputs)
            self.stream: IO[bytes] = self._stdout()
            return
        fd = _descriptor(self.path)
        if fd is not None:
            self.stream = self._dup(fd, inputs, option)
            return
        target = os.path.realpath(self.path)
        try:
            existing = os.stat(target)
        except FileNotFoundError:
            existing = None
        except OSError as e:
            raise UsageError(f"cannot write {self.path}: {e.strerror}") from None
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise UsageError(f"cannot write {self.path}: it is a directory")
        if existing is not None:
            _refuse_input(self.path, existing, inputs, option)
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            self.stream = self._open(target, os.O_WRONLY)  # a device or FIFO: written in place
            return
        directory, name = os.path.split(target)
        sweep_stale(directory, name)
        self._tmp = os.path.join(directory, tmp_name(name))
        self._target = target
        # 0o666 less the umask, as a plain open() would give; an existing file keeps its mode.
        self.stream = self._open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        if existing is not None:
            with contextlib.suppress(OSError):
                os.chmod(self._tmp, stat.S_IMODE(existing.st_mode))

    @property
    def name(self) -> str:
        return self.path or "stdout"

    def failed(self, e: OSError) -> OutputError:
        """Record (the first) failure to write this output; the error to raise."""
        if self.failure is None:
            self.failure = OutputError(f"{self.name}: {e.strerror or e}")
        return self.failure

    def _stdout(self) -> IO[bytes]:
        """stdout's descriptor under a buffer of our own, so a failed write is seen as above;
        sys.stdout itself where it has no descriptor (an in-process caller's buffer)."""
        try:
            sys.stdout.flush()
            fd = sys.stdout.fileno()
        except (OSError, ValueError, AttributeError):
            return sys.stdout.buffer
        return io.BufferedWriter(_Raw(fd, self, closefd=False))

    def _dup(self, fd: int, inputs: Iterable[str], option: str) -> IO[bytes]:
        """A descriptor of this process named by -o (_descriptor), written as it is open
        (appending where it appends); refused where it is open on an input."""
        try:
            existing = os.fstat(fd)
            mine = os.dup(fd)
        except OSError as e:
            raise UsageError(f"cannot write {self.path}: {e.strerror}") from None
        try:
            _refuse_input(self.path, existing, inputs, option)
        except BaseException:
            os.close(mine)
            raise
        return io.BufferedWriter(_Raw(mine, self))  # (os.dup's descriptor is not inherited)

    def _open(self, path: str, flags: int, mode: int = 0o666) -> IO[bytes]:
        try:
            fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), mode)
        except OSError as e:
            raise UsageError(f"cannot write {self.path}: {e.strerror}") from None
        return io.BufferedWriter(_Raw(fd, self))

    def close(self, commit: bool) -> None:
        """Flush and publish (commit) or drop what was written. Safe to call twice. Raises
        OutputError if any write, the flush, fsync or close failed: then nothing is published."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stream.flush()
            if commit and self._tmp is not None and self.failure is None:
                os.fsync(self.stream.fileno())
        except BrokenPipeError:
            pass  # stdout's reader went away: the CLI stops quietly
        except (ValueError, OutputError):
            pass  # already closed by its writer, or the failure is recorded
        except OSError as e:
            self.failed(e)
        if self.path is not None or self.stream is not sys.stdout.buffer:
            try:
                self.stream.close()  # for stdout, our buffer only (its descriptor stays open)
            except (BrokenPipeError, ValueError, OutputError):
                pass
            except OSError as e:
                self.failed(e)
        if self._tmp is not None:
            if commit and self.failure is None:
                try:
                    os.replace(self._tmp, self._target)
                    return
                except OSError as e:
                    self.failed(e)
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
        if self.failure is not None:
            raise self.failure

    def __enter__(self) -> Output:
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.close(commit=kind is None)


def open_output(output: str | None, inputs: Iterable[str] = ()) -> Output:
    """The output for `-o` (None or '-' is stdout), refused when it is one of `inputs`."""
    return Output(output, inputs)
