"""A fork server ("zygote") for the tests' console runs (tests/console.py): a `python` started once
per test process that imports what every `omnitok` command line needs and reads no environment
doing so (typer, the cli modules, omnitok.api), then forks one child per command line. The child
becomes what a fresh `omnitok` process would be at that point: the given cwd, environment, umask
and fds 0/1/2, the signal dispositions this interpreter had at its own start, stdio objects built
as the interpreter builds them, `sys.argv` and `__main__` of the console script, whose code it
then runs; it ends as that process would: the console script's main ends it once the command is
done (cli/app.py's _leave: threads joined, atexit, stdio flushed, os._exit), and what main
leaves to the interpreter ends through the interpreter's own exit (SystemExit, threads joined,
atexit, stdio flushed, exit 120 if that fails). The zygote reports each child's pid, then its
wait status.

Protocol (Unix stream socket given as argv[1]): a request is sendmsg(8-byte length, fds =
[stdin, stdout, stderr, reply]) then a marshal'ed dict {argv, env, cwd, umask, rlimits}; on `reply` the
zygote sends struct "=q" pid, later "=q" wait status, then closes it. The zygote exits (killing
children still running) when the control socket reads end-of-file, i.e. when the test process
ends, however it ends."""

from __future__ import annotations

import signal
import sys

# The dispositions this interpreter started with, which are those a fresh `omnitok` started by the
# test process gets (both are exec'd by subprocess from it): restored in each child.
_START_SIGNALS = {s: signal.getsignal(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)}
_START_MASK = signal.pthread_sigmask(signal.SIG_BLOCK, [])

import marshal  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402
from contextlib import suppress  # noqa: E402

# What every command line needs and what reads no environment at import (checked by
# tests/test_console_zygote.py): never huggingface_hub, transformers, torch, ray.
PRELOAD = (
    "omnitok.cli.app", "omnitok.cli.commands", "omnitok.api", "omnitok.io.readers", "omnitok.io.output",
    "omnitok.io.writers", "omnitok.run", "omnitok.summary", "omnitok.tokens", "omnitok.tooldefs", "omnitok.config",
    "omnitok.cli._small", "omnitok.strategy_chain", "omnitok.tokenizers.registry", "omnitok.tokenizers.engines",
    "omnitok.tokenizers.tiktoken_strategy", "omnitok.tokenizers.openai_encodings", "omnitok.tokenizers.unicode_guard",
    "omnitok.assets.rank_cache", "omnitok.tokenizers.pybpe", "regex", "omnitok.cache.tiered", "omnitok.cache.disk", "omnitok.cache.settings",
    "tiktoken", "tiktoken.core", "tiktoken.model", "tiktoken.registry", "pydantic", "click",
    "concurrent.futures.thread", "sqlite3", "csv", "logging",
    # typer converts each parameter of a command it parses through a pydantic TypeAdapter: this
    # module and the pydantic internals it imports were ~80 ms of each such child's CPU.
    "typer._adapters", "pydantic.plugin._loader",
)  # fmt: skip

_WORD = struct.Struct("=q")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _serve(ctrl: socket.socket):
    """The zygote's loop; returns only in a forked child, with its request."""
    running: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, reply socket)
    while True:
        ready, _, _ = select.select([ctrl, *running], [], [])
        for fd in ready:
            if fd is ctrl:
                try:
                    head, fds, _flags, _addr = socket.recv_fds(ctrl, _WORD.size, 4)
                    if not head:
                        raise EOFError
                    head += _recv_exact(ctrl, _WORD.size - len(head))
                    request = marshal.loads(_recv_exact(ctrl, _WORD.unpack(head)[0]))
                except (EOFError, OSError):
                    for pid, _reply in running.values():
                        os.kill(pid, signal.SIGKILL)
                    os._exit(0)
                reply = socket.socket(fileno=fds[3])
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    ctrl.close()
                    for pidfd, (_pid, other) in running.items():
                        os.close(pidfd)
                        other.close()
                    reply.close()
                    request["fds"] = fds[:3]
                    return request
                for f in fds[:3]:
                    os.close(f)
                pidfd = os.pidfd_open(pid)
                running[pidfd] = (pid, reply)
                with suppress(OSError):
                    reply.sendall(_WORD.pack(pid))
            else:
                pid, reply = running.pop(fd)
                _, status = os.waitpid(pid, 0)
                os.close(fd)
                with suppress(OSError):
                    reply.sendall(_WORD.pack(status))
                reply.close()


def _stdio(fd: int, name: str, like):
    """A stdio stream as pylifecycle.c's create_stdio makes it (encoding and errors: the zygote's
    own, which the same start-up variables gave)."""
    import io

    write = fd != 0
    buffered = not like.write_through  # the zygote's own: unbuffered (-u, PYTHONUNBUFFERED) or not
    buffering = 0 if write and not buffered else -1
    buf = io.open(fd, "wb" if write else "rb", buffering, closefd=False)  # noqa: SIM115, UP020 (as CPython does)
    raw = buf.raw if buffering else buf
    raw.name = name
    line_buffering = buffered and (raw.isatty() or fd == 2)
    text = io.TextIOWrapper(buf, like.encoding, like.errors, "\n", line_buffering, not buffered)
    text.mode = "w" if write else "r"
    return text


def _child(request: dict, script: str, code) -> None:
    """Become `omnitok ARGS` as exec'd, run it, and exit as the interpreter would."""
    import builtins
    import importlib.machinery
    import time
    import types

    for sig, handler in _START_SIGNALS.items():
        with suppress(OSError, ValueError, TypeError):
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, _START_MASK)
    os.umask(request["umask"])
    import resource

    for which, limits in request.get("rlimits", ()):
        with suppress(OSError, ValueError):
            resource.setrlimit(which, limits)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    like = (sys.stdin, sys.stdout, sys.stderr)
    for target, fd in enumerate(request["fds"]):
        os.dup2(fd, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") < 65536 else 65536)
    sys.stdin = sys.__stdin__ = _stdio(0, "<stdin>", like[0])
    sys.stdout = sys.__stdout__ = _stdio(1, "<stdout>", like[1])
    sys.stderr = sys.__stderr__ = _stdio(2, "<stderr>", like[2])
    sys.argv = list(request["argv"])
    sys.path[0] = os.path.dirname(script)
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=script, __cached__=None, __builtins__=builtins, __annotations__={},
        __loader__=importlib.machinery.SourceFileLoader("__main__", script),
    )  # fmt: skip
    sys.modules["__main__"] = main
    if "__mp_main__" in sys.modules:
        sys.modules["__mp_main__"] = main
    try:
        exec(code, main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != script:
            tb = tb.tb_next
        e.__traceback__ = tb or e.__traceback__  # from the script's frame on, as a fresh process shows it
        sys.excepthook(type(e), e, e.__traceback__)
        if isinstance(e, KeyboardInterrupt):  # CPython ends by SIGINT then (exit status -2)
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        raise SystemExit(1) from None
    raise SystemExit(0)


if __name__ == "__main__":
    _script = sys.argv[2]
    with open(_script, "rb") as f:
        _code = compile(f.read(), _script, "exec", dont_inherit=True)  # not this file's __future__
    _ctrl = socket.socket(fileno=int(sys.argv[1]))
    os.chdir("/")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C to the group is for the children
    import importlib
    import warnings

    with warnings.catch_warnings(record=True) as _shown:  # under the filters a fresh process has
        for _name in PRELOAD:
            importlib.import_module(_name)
    if _shown:  # a fresh `omnitok` would print it: no child of this zygote would
        sys.exit(f"zygote: a warning at import: {_shown[0].message}")
    if threading.active_count() != 1:
        sys.exit("zygote: threads running after the imports")
    import gc

    gc.collect()
    gc.freeze()  # the children's collections need not touch (and copy) what the zygote made
    _ctrl.sendall(b"R")  # ready
    _request = _serve(_ctrl)
    del _ctrl
    _child(_request, _script, _code)
