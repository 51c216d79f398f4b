"""Run the installed `omnitok` console script as a user's shell would: a real process, real
exit code, real stdout/stderr. Usage errors and tracebacks are only honest when seen this way.

A command line runs in a child forked from a zygote (tests/_zygote.py: one per test process,
started on first use, with typer and the cli modules imported), which makes it the process a
fresh `omnitok` would be (its own pid, fds 0/1/2 on pipes, environment, cwd, exit status) without
paying the interpreter's start-up and imports each time (~0.1 s of CPU, hundreds of times a
suite). It runs as a real exec instead (subprocess.run) where a fork cannot be faithful: an
environment whose start-up variables (PYTHON*, LC_*, LANG, TYPER_*) differ from the zygote's,
stdin=None (inherited), a cwd that is not a directory, `fresh=True` (tests of start-up itself:
imports, first-run files), OMNITOK_TESTS_EXEC=1 (every call, for debugging), or a zygote that
failed to start."""

from __future__ import annotations

import atexit
import marshal
import os
import re
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

OMNITOK = str(Path(sys.executable).with_name("omnitok"))
ZYGOTE = str(Path(__file__).with_name("_zygote.py"))

# Environment variables that shape an interpreter at its start (or that typer reads at import):
# where a call's differ from the zygote's, the call is exec'd.
_STARTUP = re.compile(r"PYTHON.*|LC_.*|LANG|TYPER_.*")


@dataclass
class Run:
    code: int
    out: bytes
    err: str


def omnitok(
    *args: str, stdin: bytes | None = b"", env: dict | None = None, cwd=None, timeout: float = 120, fresh: bool = False
) -> Run:
    full_env = {k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None}  # None: unset
    zygote = None
    exec_all = os.environ.get("OMNITOK_TESTS_EXEC") == "1"
    if not fresh and not exec_all and stdin is not None and (cwd is None or os.path.isdir(cwd)):
        zygote = _Zygote.get()
    if zygote is not None and zygote.serves(full_env):
        try:
            code, out, err = zygote.run([OMNITOK, *args], stdin, full_env, os.path.abspath(cwd or os.getcwd()), timeout)
        except _NotSent:  # the zygote is gone: the next call starts another
            pass
        else:
            return Run(code, out, err.decode("utf-8", "replace"))
    return exec_omnitok(*args, stdin=stdin, env=full_env, cwd=cwd, timeout=timeout)


def completed(args, r: Run) -> subprocess.CompletedProcess:
    """A Run as subprocess.run's result (returncode, stdout bytes, stderr bytes) plus .err (text)."""
    done = subprocess.CompletedProcess(["omnitok", *args], r.code, r.out, r.err.encode())
    done.err = r.err  # type: ignore[attr-defined]
    return done


def exec_omnitok(*args: str, stdin: bytes | None, env: dict, cwd=None, timeout: float = 120) -> Run:
    """`omnitok ARGS` exec'd afresh."""
    p = subprocess.run([OMNITOK, *args], input=stdin, capture_output=True, env=env, cwd=cwd, timeout=timeout)
    return Run(p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"))


def _umask() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_RLIMITS = [getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_")]


def _rlimits() -> list:
    """This process's resource limits, which an exec'd child inherits (a test may have set one)."""
    return [(which, resource.getrlimit(which)) for which in _RLIMITS]


class _NotSent(Exception):
    """The zygote could not be given the command line (it is gone)."""


class _Zygote:
    _lock = threading.Lock()
    _current: _Zygote | None = None
    _failed_pid: int | None = None  # the process in which the zygote failed to start
    runs = 0  # command lines run through a zygote, by this process

    @classmethod
    def get(cls) -> _Zygote | None:
        with cls._lock:
            pid = os.getpid()
            if cls._current is not None and cls._current.owner == pid and cls._current.usable():
                return cls._current
            if cls._failed_pid == pid:
                return None
            if cls._current is not None and cls._current.owner == pid:
                cls._current.close()  # it died: its socket goes too
            try:
                cls._current = cls(pid)
            except (OSError, EOFError, subprocess.SubprocessError):
                cls._current, cls._failed_pid = None, pid
            return cls._current

    def __init__(self, owner: int):
        self.owner = owner
        self.env = dict(os.environ)
        self.send_lock = threading.Lock()
        ours, theirs = socket.socketpair()
        interpreter = Path(OMNITOK).read_text().splitlines()[0].removeprefix("#!").strip()
        try:
            self.proc = subprocess.Popen(
                [interpreter, ZYGOTE, str(theirs.fileno()), OMNITOK],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=self.env,
            )
        finally:
            theirs.close()
        self.ctrl = ours
        ours.settimeout(60)
        if ours.recv(1) != b"R":
            self.proc.kill()
            self.proc.wait()
            raise EOFError("the zygote did not start")
        ours.settimeout(None)
        self.alive = True
        atexit.register(self.close)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        self.alive = False
        self.ctrl.close()
        if os.getpid() != self.owner:  # a fork of the test process: not its child
            return
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def usable(self) -> bool:
        return self.alive and self.proc.poll() is None

    def serves(self, env: dict) -> bool:
        keys = {k for k in (*env, *self.env) if _STARTUP.fullmatch(k)}
        return all(env.get(k) == self.env.get(k) for k in keys)

    def run(self, argv: list[str], stdin: bytes, env: dict, cwd: str, timeout: float | None):
        request = {"argv": argv, "env": env, "cwd": cwd, "umask": _umask(), "rlimits": _rlimits()}
        payload = marshal.dumps(request)
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        reply, their_reply = socket.socketpair()
        try:
            with self.send_lock:
                socket.send_fds(
                    self.ctrl, [struct.pack("=q", len(payload))], [in_r, out_w, err_w, their_reply.fileno()]
                )
                self.ctrl.sendall(payload)
        except OSError:
            self.alive = False
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
                os.close(fd)
            reply.close()
            their_reply.close()
            raise _NotSent from None
        _Zygote.runs += 1
        for fd in (in_r, out_w, err_w):
            os.close(fd)
        their_reply.close()
        return _communicate(argv, reply, in_w, out_r, err_r, stdin, timeout)


def _communicate(argv, reply: socket.socket, in_w: int, out_r: int, err_r: int, stdin: bytes, timeout):
    """Feed stdin, read stdout/stderr to their ends and the child's pid and wait status from the
    zygote; on timeout kill the child and raise subprocess.TimeoutExpired as subprocess.run does."""
    deadline = None if timeout is None else time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    chunks = {out_r: [], err_r: []}
    view = memoryview(stdin)
    if view:
        os.set_blocking(in_w, False)
        sel.register(in_w, selectors.EVENT_WRITE)
    else:
        os.close(in_w)
        in_w = -1
    sel.register(out_r, selectors.EVENT_READ)
    sel.register(err_r, selectors.EVENT_READ)
    sel.register(reply, selectors.EVENT_READ)
    got = b""
    pid = status = None
    try:
        while sel.get_map():
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                if pid is not None and status is None:
                    os.kill(pid, signal.SIGKILL)
                    while len(got) < 16:  # the zygote reaps it: no process is left
                        more = reply.recv(16 - len(got))
                        if not more:
                            break
                        got += more
                raise subprocess.TimeoutExpired(
                    argv, timeout, output=b"".join(chunks[out_r]), stderr=b"".join(chunks[err_r])
                )
            for key, _ in sel.select(wait):
                fd = key.fd
                if fd == in_w:
                    try:
                        n = os.write(in_w, view[:65536])
                    except BrokenPipeError:
                        n = len(view)
                    view = view[n:]
                    if not view:
                        sel.unregister(in_w)
                        os.close(in_w)
                        in_w = -1
                elif fd == reply.fileno():
                    more = reply.recv(16)
                    got += more
                    if len(got) >= 8 and pid is None:
                        pid = struct.unpack("=q", got[:8])[0]
                    if len(got) >= 16:
                        status = struct.unpack("=q", got[8:16])[0]
                    if not more:
                        sel.unregister(reply)
                else:
                    data = os.read(fd, 1 << 16)
                    if data:
                        chunks[fd].append(data)
                    else:
                        sel.unregister(fd)
    finally:
        sel.close()
        for fd in (in_w, out_r, err_r):
            if fd >= 0:
                os.close(fd)
        reply.close()
    if status is None:
        raise OSError("the zygote ended during a command")
    code = os.waitstatus_to_exitcode(status)
    return code, b"".join(chunks[out_r]), b"".join(chunks[err_r])
