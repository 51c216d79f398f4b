"""The one place the CLI talks to people: errors, warnings and progress go to stderr. Everything
written here is text for a terminal: what came from data (ids, model ids, field names, a provider's
words) goes through errors.printable, so no control or escape character reaches it raw."""

from __future__ import annotations

import contextlib
import sys

from ..errors import OmnitokError, printable


def warn(message: str) -> None:
    sys.stderr.write(f"omnitok: warning: {printable(message)}\n")


def error(message: str, hint: str | None = None) -> None:
    sys.stderr.write(f"omnitok: error: {printable(message)}\n")
    if hint:
        sys.stderr.write(f"omnitok: hint: {printable(hint)}\n")


def report(err: OmnitokError) -> int:
    error(err.message, err.hint)
    return err.exit_code


def info(message: str) -> None:
    sys.stderr.write(printable(message) + "\n")


# --- results on stdout: JSON for programs, tables for people -----------------------------------


def wants_json(asked: bool = False) -> bool:
    """JSON when asked (--json, --format json) or when stdout is not a terminal (piped, redirected):
    the one rule every command follows."""
    return asked or not sys.stdout.isatty()


def write_stdout(data: bytes) -> None:
    """Bytes on stdout as they are (a failed write, as to a full device, is one error line)."""
    from .. import api

    out = api.open_output(None)
    try:
        out.stream.write(data)
    finally:
        out.close(commit=True)


def print_line(text: str) -> None:
    """One line of plain text on stdout (a path, a version), escaped (printable)."""
    write_stdout((printable(text) + "\n").encode())


def print_json(data) -> None:
    """One JSON document on a line of stdout."""
    import orjson

    write_stdout(orjson.dumps(data, default=str) + b"\n")


def _cell(value) -> str:
    """A table cell: nested values as JSON, control characters escaped (printable)."""
    import orjson

    if value is None:
        return ""
    return printable(orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value))


def print_mapping(data: dict, title: str | None = None, asked_json: bool = False) -> None:
    """A dict as JSON (wants_json) or a two-column table; nested values shown as JSON."""
    if wants_json(asked_json):
        print_json(data)
        return
    print_rows([(key, _cell(value)) for key, value in data.items()], ("", "value"), title, header=False)


def print_rows(rows, columns, title: str | None = None, header: bool = True) -> None:
    """A rich table on stdout; cells are shown as text, never read as rich markup, and escaped."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(printable(title)) if title else None, show_header=header, title_justify="left")
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(Text(_cell(c)) for c in row))
    Console().print(table)


class ProgressBar:
    """A rich progress bar on stderr when it is a terminal; refreshed by the caller, no thread
    (the pipeline forks workers, and a fork must not copy a thread holding a lock)."""

    def __init__(self, progress, enabled: bool, label: str = "counting"):
        self.state = progress
        self._bar = None
        if not enabled or not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[records]} records"),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            auto_refresh=False,
            transient=True,
        )
        self._task = self._bar.add_task("count", total=progress.total, records=0)
        self._bar.start()

    def update(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.state.done, records=self.state.records)
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextlib.contextmanager
def stdout_to_stderr():
    """Inside, stdout (the Python object and file descriptor 1, which child processes inherit) is
    stderr: for a library that prints its own lines to stdout (Ray's worker and raylet lines, "A
    worker died ...") where stdout is for the command's results alone."""
    import os

    saved, fd, kept = sys.stdout, None, None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        fd = sys.stdout.fileno()
        kept = os.dup(fd)
        os.dup2(sys.stderr.fileno(), fd)
    except (OSError, ValueError, AttributeError):  # no descriptor (an in-process caller's buffer)
        fd = kept = None
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = saved
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
            saved.flush()  # what was written to it meanwhile goes where fd 1 points now: stderr
        if kept is not None:
            os.dup2(kept, fd)
            os.close(kept)
