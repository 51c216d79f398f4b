"""Numbers from outside (command-line options, library arguments): finite and in range.

One rule for every command and the library behind it, so that `--min-rouge-l nan` cannot turn a
quality gate off (every comparison with NaN is false) and `--budget 1e23` cannot reach an engine
that holds 64-bit integers.
"""

from __future__ import annotations

import math

from .errors import UsageError

INT64_MAX = 2**63 - 1


def _bounds(low, high, low_open: bool) -> str:
    if low is not None and high is not None:
        return f"{'above' if low_open else 'from'} {low!r} {'and at most' if low_open else 'to'} {high!r}"
    if low is not None:
        return f"{'above' if low_open else 'at least'} {low!r}"
    return f"at most {high!r}"


def checked(name: str, value, low=None, high=None, *, low_open: bool = False, integer: bool = False):
    """`value` unchanged if it is a finite number within the bounds (None passes), else a UsageError
    naming `name`, the value and what is allowed. Integers are also held to 64 bits."""
    if value is None:
        return None
    if integer:
        ok = isinstance(value, int) and not isinstance(value, bool)
        high = INT64_MAX if high is None else min(high, INT64_MAX)
        kind = "a whole number"
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        kind = "a finite number"
    if ok:
        ok = (low is None or (value > low if low_open else value >= low)) and (high is None or value <= high)
    if not ok:
        allowed = f"{kind} {_bounds(low, high, low_open)}" if (low is not None or high is not None) else kind
        raise UsageError(f"{name} must be {allowed}, not {value!r}")
    return value
