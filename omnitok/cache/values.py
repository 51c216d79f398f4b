"""What a cached value may be: a count (`parse_count`) or a list of scores (`parse_scores`), read back
from a tier; anything else is foreign (counted as `malformed`) and a miss."""

from __future__ import annotations

import json

MAX_COUNT = 10**12  # tokens in one text: ~4 TB of it, more than any text omnitok reads


def parse_count(value, limit: int = MAX_COUNT) -> int | None:
    """A cached count: an int from 0 to `limit` (or its decimal text from L2/L3); anything else is
    foreign."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit:
        return value
    return None


parse_count.max_bytes = 20  # what L3 may send back for one count


def parse_scores(value) -> list[float] | None:
    """Cached scores: a JSON array of finite numbers (metrics store them as text)."""
    import math

    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        return None
    if (
        isinstance(data, list)
        and data
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in data)
    ):
        return [float(x) for x in data]
    return None
