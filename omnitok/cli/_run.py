"""How the command line tells people about a run's bad records (omnitok.run decides what they
do): each skipped one as it happens, and the closing word; exit codes come from the run's Outcome
(omnitok.run.Outcome.exit_code), the one place they are decided."""

from __future__ import annotations

from collections.abc import Callable

from ._output import error, info, warn

HINT = "--on-error skip or --on-error record carries on past bad records"


def notify(before: Callable[[], None] | None = None) -> Callable[[str], None]:
    """An ErrorPolicy's `notify` for a terminal: `before` (e.g. closing a progress bar) runs first."""

    def tell(message: str) -> None:
        if before is not None:
            before()
        error(message)

    return tell


def report(outcome, quiet: bool = False) -> None:
    """The closing word on stderr: the stop message (with the hint where it can help), or how many
    records were bad and what became of them."""
    if outcome.stopped is not None:
        error(str(outcome.stopped), HINT if outcome.stopped.more else None)
    elif outcome.errors and not quiet:
        n, records = outcome.errors, outcome.records
        if outcome.on_error == "skip":
            warn(
                f"{n} of {records} records had errors (skipped: {outcome.done} counted + {n} errors = {records} records in)"
            )
        else:
            warn(f"{n} of {records} records had errors (written as error records)")


def list_over_limit(over: int, counted: int, limit: int, offenders, shown: int = 50) -> None:
    """--max-tokens' listing on stderr: how many records are over, the first `shown` of them."""
    error(f"{over} of {counted} records are over --max-tokens {limit}:")
    for where, rid, tokens in offenders[:shown]:
        label = f" (id {rid})" if rid is not None else ""
        info(f"  {where}{label}: {tokens} tokens")
    if over > shown:
        info(f"  ... and {over - shown} more")
