"""The `omnitok` command's entry point: main() runs a command line and turns what goes wrong into
a message and an exit code. The commonest count is read here without click (_plain_count), so
that it imports neither typer nor the other commands; every other line goes to the Typer app of
cli/commands.py, imported then (`app` here, on first use)."""

from __future__ import annotations

import contextlib
import functools
import os
import sys

from .. import errors
from ._output import info


class StdoutClosed(Exception):
    """The reader of stdout went away (`| head`); `code`: the exit code the run had already
    earned (validate's gate, judged before its rows are written), else 0."""

    def __init__(self, code: int = 0):
        super().__init__()
        self.code = code


class Interrupted(Exception):
    """Ctrl-C, or SIGTERM (`terminated`), passed through click."""

    def __init__(self, terminated: bool = False):
        super().__init__()
        self.terminated = terminated


class Terminated(KeyboardInterrupt):
    """SIGTERM (`timeout`, systemd, `docker stop`, `kill`), raised in the main thread where
    Ctrl-C's KeyboardInterrupt is: the run unwinds the same way (workers stopped, a temporary
    output removed, which the signal's default action left behind), then "omnitok: terminated",
    exit 143. `omnitok serve` leaves SIGTERM to uvicorn (a graceful shutdown)."""


_MAIN_PID: int | None = None  # the process that set _on_sigterm (main)


def _on_sigterm(signum, _frame):
    if os.getpid() != _MAIN_PID:
        # A process forked from this one, reached before it set SIGTERM back to the default
        # action (forks.stay_with_parent): a SIGTERM to the whole group (systemd, `kill --
        # -PGID`) raised Terminated inside threading's after-fork hook, and the fresh worker
        # printed "Exception ignored in: <function _after_fork ...>" and its traceback beside the
        # run's "omnitok: terminated". The default action now, as once it is set.
        import signal

        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise Terminated()


def _stopped(e: BaseException) -> int:
    """The line and exit status of a run stopped by Ctrl-C or SIGTERM."""
    if isinstance(e, Terminated) or getattr(e, "terminated", False):
        info("omnitok: terminated")
        return errors.EXIT_TERMINATED
    info("omnitok: interrupted")
    return errors.EXIT_INTERRUPTED


def completing() -> bool:
    """Whether click is asked for shell completions (the variable click's completion sets): such a
    run goes to the whole Typer app."""
    return "_OMNITOK_COMPLETE" in os.environ


def __getattr__(name: str):
    if name == "app":  # the Typer app, built when first asked for (typer is not imported before)
        from .commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# `omnitok count` command lines read here without click (see _plain_count): its flags with the
# value each sets, and the options that take a plain string, by the parameter they set (those that
# take a number or run a callback are click's). tests/test_startup_count.py checks each against
# the command's own declaration (name, kind, no callback).
_COUNT_FLAGS = {
    "--summary": ("summary", True), "-q": ("quiet", True), "--quiet": ("quiet", True),
    "--online": ("online", True), "--offline": ("online", False), "--strict": ("strict", True),
    "--no-cache": ("no_cache", True), "--lines": ("lines", True), "--explain": ("explain", True),
    "--no-special-tokens": ("no_special_tokens", True),
}  # fmt: skip
_COUNT_VALUES = {
    "-m": "model", "--model": "model", "-o": "output", "--output": "output", "--tokenizer": "tokenizer",
    "-j": "jobs", "--jobs": "jobs", "--text": "text", "--format": "fmt", "--engine": "engine",
    "--input-format": "input_format", "--encoding": "encoding", "-f": "field", "--field": "field",
    "--id-field": "id_field", "--add-field": "add_field", "--cache": "cache", "--cache-dir": "cache_dir",
    "--l3-url": "l3_url",
}  # fmt: skip
_COUNT_LISTS = ("text", "field")  # repeatable: each value appended


def _plain_count(args: list[str]):
    """The commonest command lines, `omnitok count [OPTION ...] [FILE ...]` where each option is
    one of _COUNT_FLAGS or _COUNT_VALUES, each at most once but --text and --field, as `-m X` or
    `--model=X`, a value that does not start with '-', -j's a whole number from 1 to 1024, as a
    call of the count command with every other parameter at its default; else None, and click
    reads the line. typer reads every parameter through a pydantic TypeAdapter: importing typer
    and pydantic and building the command was ~0.2 s of a one-line count's CPU (0.50 -> 0.41 s
    when this took the first lines; tests/test_startup_count.py checks both readings answer alike)."""
    if not args or args[0] != "count" or completing():
        return None
    given: dict = {}
    files: list[str] = []
    rest = iter(args[1:])
    for arg in rest:
        option, sep, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if option in _COUNT_FLAGS and not sep:
            name, value = _COUNT_FLAGS[option]
        elif option in _COUNT_VALUES:
            name, value = _COUNT_VALUES[option], value if sep else next(rest, None)
            if not value or value.startswith("-"):
                return None
            if name == "jobs":
                from ._options import jobs_value  # (the count command imports it in any case)

                try:
                    value = jobs_value(value)
                except errors.UsageError:  # click reads it again and says why
                    return None
        elif arg == "-" or not arg.startswith("-"):
            files.append(arg)
            continue
        else:
            return None
        if name in _COUNT_LISTS:
            given.setdefault(name, []).append(value)
            continue
        if name in given:
            return None
        given[name] = value
    import inspect

    from .count import count

    # Every parameter of the command has its default in its signature (typer's Annotated style).
    kwargs = {name: given.get(name, p.default) for name, p in inspect.signature(count).parameters.items()}
    kwargs["files"] = files or None
    return lambda: count(**kwargs)


def main(argv: list[str] | None = None) -> None:
    """Entry point: turns user errors into a message and an exit code, never a traceback. As the
    process's entry point (no `argv`) it ends the process once the command is done (_leave);
    an in-process caller gets SystemExit as raised."""
    global _MAIN_PID
    if argv is not None:
        _run(argv)
        return
    _closed_stdio()
    import signal

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # (one its starter ignored stays ignored)
        _MAIN_PID = os.getpid()
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _run(None)
    except SystemExit as e:
        _leave(e.code)
    except KeyboardInterrupt as e:  # between the command's end and _leave (while an error is reported)
        _leave(_stopped(e))


CLOSED_AT_START: set[int] = set()  # the descriptors _closed_stdio found closed (serve: its access log)


def _closed_stdio() -> None:
    """Descriptors 0, 1 and 2 that were closed when the process started (`>&-`) opened on
    /dev/null so that no file opened later takes their number (results meant for stdout, or a
    library's message to descriptor 2, written into an output or the cache), each the way that
    keeps the rule of a closed one: stdout opened read-only, so a write fails with EBADF and is
    one error line, exit 1, as on a full device; stdin opened write-only, so a read fails the
    same way; stderr opened for writing (what went there was thrown away already). Python left
    sys.stdin, sys.stdout or sys.stderr None for such a descriptor (a traceback at the first use);
    each is a text stream on its descriptor again."""
    for fd, name, flags, mode in (
        (0, "stdin", os.O_WRONLY, "r"),
        (1, "stdout", os.O_RDONLY, "w"),
        (2, "stderr", os.O_WRONLY, "w"),
    ):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
            continue  # open again already (not by us): leave it
        except OSError:
            pass
        try:
            opened = os.open(os.devnull, flags)
        except OSError:
            continue  # no /dev/null: as Python left it
        if opened != fd:
            os.dup2(opened, fd)
            os.close(opened)
        CLOSED_AT_START.add(fd)
        stream = open(fd, mode, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)  # as Python keeps its own: never closed by a replacement's collection


# Libraries that write only to the terminal's streams (help, usage, echo): an OSError raised in
# their code is a failed write of stdout (stderr's failures are not reported: it is where we would).
_TERMINAL_WRITERS = ("rich", "click", "typer")


def _stdout_failed(e: OSError) -> bool:
    """Whether the OSError just raised was a write to stdout: stdout cannot take what waits in its
    buffer (a full device, a descriptor closed at start), or the error came from a library that
    writes only there (rich lost its buffer with the error, so a flush finds nothing waiting)."""
    try:
        sys.stdout.flush()
    except OSError:
        return True
    except Exception:  # noqa: BLE001 - no stdout to speak of
        return False
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    return str(tb.tb_frame.f_globals.get("__name__", "")).split(".")[0] in _TERMINAL_WRITERS


def _stdout_error(e: OSError) -> None:
    """A failed write of stdout reported as io/output reports one: `omnitok: error: stdout: ...`."""
    from ._output import error

    error(f"stdout: {e.strerror or e}")


def _stdout_to_devnull() -> None:
    """What stdout still holds goes nowhere: its descriptor on /dev/null (the reader went away, or
    a write failed and was reported), so the flush at exit neither fails nor writes again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _leave(code) -> None:
    """End the process as the interpreter ends it, less the teardown of its modules: non-daemon
    threads joined (threading._shutdown, which also ends concurrent.futures' pools), the atexit
    functions run (forked workers, Ray, logging, temporary directories), stdout and stderr
    flushed, then os._exit with the same status. A stdout that cannot take what was left in its
    buffer is one error line and exit 1, as a failed write anywhere else. Tearing down the
    modules only frees memory the kernel is about to take back: ~25 ms of a command's CPU
    (`omnitok validate` 0.26 -> 0.24 s), more where the process was forked from a loaded one.
    An exit status that is not a small int (a message to print), or a flush of stderr that
    fails, is left to the interpreter, which reports it as before. After a Ctrl-C (status 130)
    or SIGTERM (143) threads are not waited for: the user asked to stop, and the work they were
    doing (a provider's answer, say) would be thrown away; a Ctrl-C or SIGTERM while they are
    waited for is one. Another during the clean-up that follows (atexit) ends the process at once."""
    status = 0 if code is None else code
    if type(status) is not int or not 0 <= status <= 255:
        raise SystemExit(code)
    import atexit
    import threading

    stopped = (errors.EXIT_INTERRUPTED, errors.EXIT_TERMINATED)
    if status not in stopped:  # after a Ctrl-C or SIGTERM, no waiting on threads' unfinished work
        try:
            threading._shutdown()  # noqa: SLF001 - what Py_FinalizeEx calls first; a second call does nothing
        except KeyboardInterrupt as e:  # a Ctrl-C (SIGTERM) while waiting on them: as during the command
            status = _stopped(e)
    if status in stopped:  # the clean-up below is quick; another Ctrl-C or SIGTERM ends it now
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_, s=status: os._exit(s))
    atexit._run_exitfuncs()  # noqa: SLF001 - then these; they are cleared once run
    try:
        sys.stdout.flush()
    except OSError as e:  # what was left in stdout's buffer (help, a usage message) not written
        _stdout_error(e)
        status = status or 1
    except Exception:  # noqa: BLE001 - (no stdout: None) the interpreter's exit deals with it
        raise SystemExit(status) from None
    try:
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - as for stdout
        raise SystemExit(status) from None
    os._exit(status)


def _run(argv: list[str] | None) -> None:
    from .. import notices
    from ._output import warn

    notices.reset()  # one warning per cause, per run, as "omnitok: warning: ..." on stderr
    notices.set_handler(warn)
    try:
        plain = _plain_count(sys.argv[1:] if argv is None else argv)
        if plain is None:
            from .commands import main as run_click

            result = run_click(sys.argv[1:] if argv is None else argv)
        else:
            result = plain()
    except errors.OmnitokError as e:
        from ._output import report

        sys.exit(report(e))
    except (KeyboardInterrupt, Interrupted) as e:
        sys.exit(_stopped(e))
    except (BrokenPipeError, StdoutClosed) as e:
        # The reader went away (`| head`): stop quietly, as other Unix tools do, with what the run
        # already earned (StdoutClosed.code), else 0.
        _stdout_to_devnull()
        sys.exit(e.code if isinstance(e, StdoutClosed) else 0)
    except OSError as e:
        if not _stdout_failed(e):
            raise
        # A write to stdout that failed where our output layer does not write (click's help,
        # rich): the one error line a failed write gives anywhere else (io.output), exit 1.
        _stdout_error(e)
        _stdout_to_devnull()
        sys.exit(1)
    except Exception as e:
        code = _click_exit(e)
        if code is None:
            raise
        sys.exit(code)
    # The work is done and its output written: a Ctrl-C now (while worker pools and files are
    # closed at exit) must not turn a finished run into a signal death with no message. (Only as
    # the process's entry point: an in-process caller keeps its own Ctrl-C.)
    if argv is None:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(result if isinstance(result, int) else 0)


@functools.cache
def _click_kinds() -> dict[str, tuple[type, ...]]:
    """click's exception classes, from click itself and from the copy typer ships (typer >= 0.2x
    vendors click as `typer._click`, so `click.exceptions.UsageError` no longer matches what
    typer raises): each kind is the tuple of every class found."""
    import importlib

    kinds: dict[str, list[type]] = {"no_args": [], "usage": [], "click": [], "exit": [], "abort": []}
    names = {"no_args": "NoArgsIsHelpError", "usage": "UsageError", "click": "ClickException"}
    names.update(exit="Exit", abort="Abort")
    for module in ("typer._click.exceptions", "click.exceptions", "typer.exceptions"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        for kind, attr in names.items():
            cls = getattr(mod, attr, None)
            if isinstance(cls, type) and cls not in kinds[kind]:
                kinds[kind].append(cls)
    return {kind: tuple(found) for kind, found in kinds.items()}


def _click_exit(e: Exception) -> int | None:
    """Report a click/typer exception the omnitok way and give its exit code; None if it is not one.

    A usage error is one line on stderr and exit 2; a group called without a command shows its
    help and exits 2 (as click does); Exit keeps its code; Abort is an interruption.
    """
    from ._output import error

    kinds = _click_kinds()
    if isinstance(e, kinds["exit"]):
        return getattr(e, "exit_code", 0)
    if isinstance(e, kinds["abort"]):
        info("omnitok: interrupted")
        return errors.EXIT_INTERRUPTED
    if isinstance(e, kinds["no_args"]):
        text = e.format_message().strip("\n")  # typer's rich help is printed already, on stdout
        for line in text.splitlines():
            info(line)
        return errors.EXIT_USAGE
    if isinstance(e, kinds["usage"]):
        ctx = getattr(e, "ctx", None)
        command = ctx.command_path if ctx is not None else "omnitok"
        message = " ".join(e.format_message().split())
        error(f"{message} (see '{command} --help')")
        return errors.EXIT_USAGE
    if isinstance(e, kinds["click"]):
        error(" ".join(e.format_message().split()))
        return getattr(e, "exit_code", errors.EXIT_ERROR)
    return None
