"""The cache's statistics: the fields counted per run and kept across runs (`STAT_FIELDS`), how
they are shown in every front end (`stats_view`) and read back from a tier (`parse_stats`)."""

from __future__ import annotations

import json

from .values import parse_count

STAT_FIELDS = (
    "l1_hits",
    "l2_hits",
    "l3_hits",
    "misses",
    "bloom_skips",
    "l1_errors",
    "l2_errors",
    "l3_errors",
    "malformed",
)


MAX_STAT = 10**18 - 1  # a statistics counter kept across runs


def hit_rate(hits: int, total: int) -> float:
    """Hits as a percentage of requests, to two decimals (0.0 when there were none)."""
    return round(100 * hits / total, 2) if total else 0.0


def stats_view(counts, *, l1_size=None, l2_size=None, bloom: dict | None = None, sizes: bool = True) -> dict:
    """Statistics as every front end shows them (`count --summary`, validate's summary, `cache
    stats`): the field names of the cache omnitok grew from first (l1_hits, l2_hits, l3_hits,
    misses, total_hits, total_requests, hit_rate in percent, l1_size, l2_size; the sizes left out
    with sizes=False), then omnitok's own: `malformed` (values read back and ignored),
    `tier_errors` (failures per tier) and `bloom` (lookups it skipped plus the filter's
    `bloom` description; None with neither)."""
    out = {f: int(counts.get(f, 0)) for f in ("l1_hits", "l2_hits", "l3_hits", "misses")}
    hits = out["l1_hits"] + out["l2_hits"] + out["l3_hits"]
    total = hits + out["misses"]
    out.update(total_hits=hits, total_requests=total, hit_rate=hit_rate(hits, total))
    if sizes:
        out.update(l1_size=l1_size, l2_size=l2_size)
    out["malformed"] = int(counts.get("malformed", 0))
    out["tier_errors"] = {t: int(counts.get(f"{t}_errors", 0)) for t in ("l1", "l2", "l3")}
    skips = int(counts.get("bloom_skips", 0))
    out["bloom"] = {"skips": skips, **(bloom or {})} if bloom is not None or skips else None
    return out


def parse_stats(raw) -> dict[str, int] | None:
    """Stored statistics: a JSON object of known fields with non-negative integer values."""
    if not isinstance(raw, str) or len(raw) > 4096:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    out = {}
    for key, value in data.items():
        if key in STAT_FIELDS:
            if parse_count(value, MAX_STAT) is None:
                return None
            out[key] = value
    return out
