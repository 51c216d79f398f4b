"""The tiered cache: read through L1 -> L2 -> L3 with promotion on hit, write-through, a Bloom
filter in front of the slower tiers, statistics, and degradation that never breaks a run: a tier
that fails is reported once and bypassed (L3 down -> L1+L2; L2 unusable -> L1 only)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter as Tally
from dataclasses import dataclass
from pathlib import Path

from .. import notices
from .disk import BLOOM_FILE, STATS_KEY, Bloom, DiskTier, UnsafeValue
from .memory import MemoryTier

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


@dataclass(frozen=True)
class CacheSettings:
    directory: Path | None  # L2; None: no L2
    l3_url: str | None = None
    l1_max_entries: int = 100_000
    l1_ttl: float | None = 3600.0
    l2_size_mb: float = 1024
    l3_ttl: int | None = 7 * 86400
    l3_prefix: str = "omnitok:v1:"
    l3_timeout: float = 2.0
    hash_algorithm: str = "blake3"
    bloom: bool = True
    bloom_capacity: int = 5_000_000
    bloom_error_rate: float = 0.01


def parse_count(value) -> int | None:
    """A cached count: a non-negative int (or its decimal text from Redis); anything else is foreign."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


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


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class TieredCache:
    def __init__(self, settings: CacheSettings):
        self.settings = settings
        self.algorithm = settings.hash_algorithm
        self.l1 = MemoryTier(settings.l1_max_entries, settings.l1_ttl)
        self.l2: DiskTier | None = None
        self.l3 = None
        self.bloom: Bloom | None = None
        self.stats: Tally = Tally()
        if settings.directory is not None:
            try:
                self.l2 = DiskTier(settings.directory, settings.l2_size_mb)
            except (OSError, sqlite3.Error) as e:
                self._warn("l2", f"the disk cache at {settings.directory} is unusable ({e}); using memory only")
        if self.l2 is not None and settings.bloom:
            self._open_bloom()
        if settings.l3_url:
            try:
                from .redis import RedisTier

                self.l3 = RedisTier(settings.l3_url, settings.l3_prefix, settings.l3_ttl, settings.l3_timeout)
            except ImportError:
                self._warn("l3", "L3 needs redis-py (pip install 'omnitok[cache]'); carrying on with L1+L2")
            except Exception as e:  # redis.exceptions.ConnectionError, TimeoutError, bad URL
                self._warn(
                    "l3",
                    f"L3 cache {_redact(settings.l3_url)} unreachable ({type(e).__name__}); carrying on with L1+L2",
                )

    # --- set-up and failure handling ---------------------------------------------------------

    def _warn(self, tier: str, message: str) -> None:
        self.stats[f"{tier}_errors"] += 1
        notices.warn_once(f"cache-{tier}", f"cache: {message}")

    def _open_bloom(self) -> None:
        s = self.settings
        path = self.l2.directory / BLOOM_FILE
        try:
            self.bloom = Bloom(path, s.bloom_capacity, s.bloom_error_rate)
        except (OSError, ValueError) as e:
            notices.warn_once("cache-bloom", f"cache: the Bloom filter {path} is damaged ({e}); rebuilding it from L2")
            path.unlink(missing_ok=True)
            self.bloom = Bloom(path, s.bloom_capacity, s.bloom_error_rate)
        if not self.bloom.loaded_from_disk and self.l2.size():
            self.bloom.add_many(self.l2.keys())  # a filter that missed L2's keys would hide them

    def _l2_failed(self, e: Exception) -> None:
        self._warn("l2", f"the disk cache failed ({type(e).__name__}: {e}); using memory only")
        self.l2, self.bloom = None, None

    def _l3_failed(self, e: Exception) -> None:
        self._warn("l3", f"L3 cache failed mid-run ({type(e).__name__}); carrying on with L1+L2")
        self.l3 = None

    def _decode(self, tier: str, key: str, raw, decode=parse_count):
        value = decode(raw)
        if value is None:
            self.stats["malformed"] += 1
            notices.warn_once(f"cache-malformed-{tier}", f"cache: a malformed value in {tier} was ignored (key {key})")
        return value

    # --- the interface --------------------------------------------------------------------------

    def get_many(self, keys: list[str], decode=parse_count) -> list:
        """Values for keys (None for a miss). `decode` validates what L2/L3 return: counts by
        default; a malformed or foreign value is a miss and a warning."""
        found: list = list(self.l1.get_many(keys))
        hits = sum(v is not None for v in found)
        self.stats["l1_hits"] += hits
        todo = [i for i, v in enumerate(found) if v is None]
        if todo and self.bloom is not None and not self.bloom.full:
            seen = [i for i in todo if keys[i] in self.bloom]
            self.stats["bloom_skips"] += len(todo) - len(seen)
            todo = seen
        promote: dict[str, int] = {}
        if todo and self.l2 is not None:
            still = []
            try:
                values = self.l2.get_many([keys[i] for i in todo])
            except UnsafeValue:
                values = self._l2_one_by_one([keys[i] for i in todo])
            except (OSError, sqlite3.Error) as e:
                self._l2_failed(e)
                values = [None] * len(todo)
            for i, raw in zip(todo, values, strict=True):
                value = None if raw is None else self._decode("l2", keys[i], raw, decode)
                if value is None:
                    still.append(i)
                else:
                    found[i] = value
                    promote[keys[i]] = value
                    self.stats["l2_hits"] += 1
            todo = still
        l3_promote: dict[str, int] = {}
        if todo and self.l3 is not None:
            try:
                values = self.l3.get_many([keys[i] for i in todo])
            except Exception as e:  # redis errors, sockets
                self._l3_failed(e)
                values = [None] * len(todo)
            for i, raw in zip(todo, values, strict=True):
                value = None if raw is None else self._decode("l3", keys[i], raw, decode)
                if value is not None:
                    found[i] = value
                    l3_promote[keys[i]] = value
                    self.stats["l3_hits"] += 1
        self.stats["misses"] += sum(v is None for v in found)
        if promote:
            self.l1.set_many(promote)
        if l3_promote:
            self.l1.set_many(l3_promote)
            self._set_l2(l3_promote)
        return found

    def _l2_one_by_one(self, keys: list[str]) -> list:
        out = []
        for key in keys:
            try:
                out.append(self.l2.get_many([key])[0])
            except UnsafeValue as e:
                self.stats["malformed"] += 1
                notices.warn_once(
                    "cache-unsafe-l2", f"cache: {e} in L2 was ignored (key {key}); omnitok never unpickles"
                )
                out.append(None)
        return out

    def _set_l2(self, items: dict[str, int]) -> None:
        if self.l2 is None:
            return
        try:
            self.l2.set_many(items)
            if self.bloom is not None:
                self.bloom.add_many(items)
        except (OSError, sqlite3.Error) as e:
            self._l2_failed(e)

    def set_many(self, items: dict) -> None:
        if not items:
            return
        self.l1.set_many(items)
        self._set_l2(items)
        if self.l3 is not None:
            try:
                self.l3.set_many(items)
            except Exception as e:
                self._l3_failed(e)

    def clear(self, tier: str = "all", tag: str | None = None) -> dict[str, int]:
        out = {}
        if tier in ("all", "l1"):
            out["l1"] = self.l1.clear(tag)
        if tier in ("all", "l2") and self.l2 is not None:
            out["l2"] = self.l2.clear(tag)
            if tag is None and self.bloom is not None:
                (self.l2.directory / BLOOM_FILE).unlink(missing_ok=True)
                self.bloom = None
        if tier in ("all", "l3") and self.l3 is not None:
            out["l3"] = self.l3.clear(tag)
        return out

    # --- statistics ------------------------------------------------------------------------

    def run_stats(self) -> dict:
        s = {f: self.stats.get(f, 0) for f in STAT_FIELDS}
        hits = s["l1_hits"] + s["l2_hits"] + s["l3_hits"]
        total = hits + s["misses"]
        s.update(
            total_hits=hits,
            total_requests=total,
            hit_rate=round(hits / total, 4) if total else None,
            l1_size=self.l1.size(),
            l2_size=self.l2.size() if self.l2 is not None else None,
        )
        if self.bloom is not None:
            s["bloom"] = {
                "entries": self.bloom.filter.count,
                "capacity": self.bloom.capacity,
                "false_positive_rate": self.bloom.error_rate,
                "full": self.bloom.full,
            }
        return s

    def stored_stats(self) -> dict:
        """Counts kept across runs: in L2 (JSON under a reserved key) and in L3 (a hash)."""
        out = {}
        if self.l2 is not None:
            raw = self.l2.cache.get(STATS_KEY)
            try:
                out["l2"] = json.loads(raw) if isinstance(raw, str) else {}
            except json.JSONDecodeError:
                out["l2"] = {}
        if self.l3 is not None:
            try:
                out["l3"] = self.l3.stored_stats()
            except Exception as e:
                self._l3_failed(e)
        return out

    def close(self) -> None:
        run = {f: self.stats.get(f, 0) for f in STAT_FIELDS}
        if self.l2 is not None:
            try:
                with self.l2.cache.transact(retry=True):
                    raw = self.l2.cache.get(STATS_KEY)
                    total = json.loads(raw) if isinstance(raw, str) else {}
                    for k, v in run.items():
                        total[k] = total.get(k, 0) + v
                    self.l2.cache.set(STATS_KEY, json.dumps(total))
                if self.bloom is not None:
                    self.bloom.save()
                self.l2.close()
            except (OSError, sqlite3.Error, json.JSONDecodeError) as e:
                self._warn("l2", f"could not save cache statistics ({e})")
        if self.l3 is not None:
            try:
                self.l3.incr_stats(run)
                self.l3.close()
            except Exception as e:
                self._l3_failed(e)
