"""The run driver every record-reading command shares: what `--on-error` does with a bad record,
the closing word on bad records, and the README's exit-code order. Commands feed it their bad
records and outcomes; none decides these on its own.

Exit codes, when several apply the first wins: 1 (stopped at a bad record or file), 5 (--strict:
not exact; raised as NotExactError), 6 (a quality gate failed), 4 (bad records skipped or
recorded), 3 (over --max-tokens), else 0.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import errors
from ._output import error, warn

ON_ERROR = ("stop", "skip", "record")
HINT = "--on-error skip or --on-error record carries on past bad records"


class BadRecords:
    """One run's `--on-error` policy and its bad records."""

    def __init__(self, mode: str, quiet: bool = False, before_print: Callable[[], None] | None = None):
        if mode not in ON_ERROR:
            raise errors.UsageError(f"--on-error must be stop, skip or record, not {mode!r}")
        self.mode = mode
        self.quiet = quiet
        self.count = 0
        self.stopped: tuple[str, bool] | None = None  # (message, whether more input follows it)
        self.before_print = before_print  # e.g. close a progress bar before writing to stderr

    def bad(self, where: str, reason: str, recorded: bool = False, more: bool = True) -> bool:
        """Note a bad record; True if the run goes on past it. `recorded`: the output holds an
        error row for it (else, under `record`, its reason goes to stderr too). `more`: whether
        input follows it (else the stop message gives no --on-error hint: it could not help)."""
        self.count += 1
        message = f"{where}: {reason}"
        if self.mode == "stop":
            self.stopped = (message, more)
            return False
        if self.mode == "skip" or not recorded:
            self._print(message)
        return True

    def keeps_rows(self) -> bool:
        """Whether bad records get an error row in the output (`record`)."""
        return self.mode == "record"

    def _print(self, message: str, hint: str | None = None) -> None:
        if self.before_print is not None:
            self.before_print()
        error(message, hint)

    def report(self, records: int, counted: int) -> None:
        """The closing word on stderr: the stop message (with the hint where it can help), or how
        many records were bad and what became of them."""
        if self.stopped is not None:
            message, more = self.stopped
            self._print(message, HINT if more else None)
        elif self.count and not self.quiet:
            if self.mode == "skip":
                warn(
                    f"{self.count} of {records} records had errors (skipped: "
                    f"{counted} counted + {self.count} errors = {records} records in)"
                )
            else:
                warn(f"{self.count} of {records} records had errors (written as error records)")


def exit_code(bad: BadRecords, gate_failed: bool = False, over_limit: bool = False) -> int:
    """The exit code of a finished run, in the documented order (module docstring)."""
    if bad.stopped is not None:
        return errors.EXIT_ERROR
    if gate_failed:
        return errors.EXIT_GATE_FAILED
    if bad.count:
        return errors.EXIT_BAD_RECORDS
    if over_limit:
        return errors.EXIT_OVER_LIMIT
    return errors.EXIT_OK
