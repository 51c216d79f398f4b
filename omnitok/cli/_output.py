"""The one place the CLI talks to people: errors, warnings and progress go to stderr."""

from __future__ import annotations

import sys

from ..errors import OmnitokError


def warn(message: str) -> None:
    sys.stderr.write(f"omnitok: warning: {message}\n")


def error(message: str, hint: str | None = None) -> None:
    sys.stderr.write(f"omnitok: error: {message}\n")
    if hint:
        sys.stderr.write(f"omnitok: hint: {hint}\n")


def report(err: OmnitokError) -> int:
    error(err.message, err.hint)
    return err.exit_code


def info(message: str) -> None:
    sys.stderr.write(message + "\n")


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
