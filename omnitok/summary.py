"""Run statistics: records, errors, token totals and percentiles, limit offenders.

Percentiles are exact (nearest rank) from a histogram of counts, so memory is bounded by the
number of distinct counts, not the number of records.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

MAX_LISTED = 1000  # offenders and errors kept for listing; the totals count all
# What a row says about how it was counted (strategy_chain.meta_of), in the rows' order.
_META_KEYS = ("model", "encoding", "strategy", "engine", "exact", "error_band")


@dataclass
class Summary:
    records: int = 0
    counted: int = 0
    errors: int = 0
    total_tokens: int = 0
    max_tokens_limit: int | None = None
    over_limit: int = 0
    offenders: list[tuple[str, object, int]] = field(default_factory=list)  # (where, id, tokens)
    error_list: list[str] = field(default_factory=list)
    _hist: collections.Counter = field(default_factory=collections.Counter)
    # Records counted other than as planned (fallbacks): a tuple of _META_KEYS' values -> n.
    _how: collections.Counter = field(default_factory=collections.Counter)

    def add(self, tokens: int, record=None, meta: dict | None = None) -> None:
        """One counted record (its `where` and `id` are read only if it is over the limit); `meta`
        when it was not counted the way the run planned (a fallback)."""
        self.records += 1
        self.counted += 1
        if meta is not None:
            self._how[tuple(meta.get(k) for k in _META_KEYS)] += 1
        self.total_tokens += tokens
        self._hist[tokens] += 1
        if self.max_tokens_limit is not None and tokens > self.max_tokens_limit:
            self._over(*((record.where, record.id) if record is not None else ("", None)), tokens)

    def add_run(self, run) -> None:
        """A run of plain results (records.CountedRun): as add() on each, in bulk."""
        tokens = run.tokens
        self.records += len(tokens)
        self.counted += len(tokens)
        self.total_tokens += sum(tokens)
        self._hist.update(tokens)
        limit = self.max_tokens_limit
        if limit is not None and max(tokens, default=0) > limit:
            for line, rid, n in zip(run.lines, run.ids, tokens, strict=True):
                if n > limit:
                    self._over(f"{run.source}:{line}" if line is not None else run.source, rid, n)

    def _over(self, where: str, rid, tokens: int) -> None:
        """One record over --max-tokens: counted, and listed while the list has room."""
        self.over_limit += 1
        if len(self.offenders) < MAX_LISTED:
            self.offenders.append((where, rid, tokens))

    def add_error(self, message: str) -> None:
        self.records += 1
        self.errors += 1
        if len(self.error_list) < MAX_LISTED:
            self.error_list.append(message)

    def percentile(self, p: float) -> int | None:
        if not self.counted:
            return None
        rank = max(1, math.ceil(p / 100 * self.counted))
        seen = 0
        for value in sorted(self._hist):
            seen += self._hist[value]
            if seen >= rank:
                return value
        return None

    def meta(self, planned: dict) -> dict:
        """model / encoding / strategy / engine / exact / error_band of the rows themselves:
        `planned` (the strategy the run set out with) only when no row was counted. A run that fell
        back for some rows says so: exact only if every row was, the widest error band,
        `strategy: "mixed"` and `strategies` with the records each strategy counted when there were
        several, and likewise `engine: "mixed"` and `engines` when several engines counted."""
        how = collections.Counter(self._how)
        as_planned = self.counted - sum(how.values())
        if as_planned:
            how[tuple(planned.get(k) for k in _META_KEYS)] += as_planned
        if not how:
            return dict(planned)
        kinds = [dict(zip(_META_KEYS, key, strict=True)) for key in how]
        out = dict(kinds[0]) if len(kinds) == 1 else dict(planned)
        out["exact"] = all(k["exact"] for k in kinds)
        bands = [k["error_band"] for k in kinds if k.get("error_band") is not None]
        out.pop("error_band", None)
        if bands:
            out["error_band"] = max(bands)
        if len(kinds) > 1:
            out["strategy"] = "mixed"
            out["strategies"] = _tally(how, "strategy")
            engines = {k["engine"] for k in kinds}
            if len(engines) == 1:
                out["engine"] = engines.pop()
            else:
                out["engine"] = "mixed"
                out["engines"] = _tally(how, "engine")
        return out

    def to_dict(self) -> dict:
        hist = self._hist
        return {
            "records": self.records,
            "counted": self.counted,
            "errors": self.errors,
            "total_tokens": self.total_tokens,
            "min": min(hist) if hist else None,
            "mean": round(self.total_tokens / self.counted, 3) if self.counted else None,
            "p50": self.percentile(50),
            "p95": self.percentile(95),
            "max": max(hist) if hist else None,
            **(
                {"max_tokens": self.max_tokens_limit, "over_limit": self.over_limit}
                if self.max_tokens_limit is not None
                else {}
            ),
        }


def _tally(how: collections.Counter, key: str) -> dict:
    """Records by one field of the ways they were counted (`strategy`, `engine`), most first; a
    plugin strategy that names no engine is listed as "null" (a JSON key is a string)."""
    i = _META_KEYS.index(key)
    by_name: collections.Counter = collections.Counter()
    for kind, n in how.items():
        by_name["null" if kind[i] is None else kind[i]] += n
    return dict(by_name.most_common())
