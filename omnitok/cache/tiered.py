"""The tiered cache: read through L1 -> L2 -> L3 with promotion on hit, write-through, a Bloom
filter in front of the slower tiers, statistics, and degradation that never breaks a run: a tier
that fails is reported once and bypassed (L3 down -> L1+L2 until it answers again; L2 unusable ->
L1 only).

What L2 and L3 hand back is checked before use: an L2 entry whose checksum does not match (damaged
or edited), or an L3 value without a valid tag where a secret is set, is a tier error (counted in
`<tier>_errors`) and a miss, so it is counted again and stored over; a value that passes those
checks but is not a count (type, range) is `malformed`, also a miss."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections import Counter as Tally

from .. import notices
from ..config import redact_url
from ..errors import OmnitokError
from .disk import (
    BLOOM_FILE,
    DAMAGED,
    DB_FILE,
    MAX_VALUE_BYTES,
    STATS_KEY,
    Bloom,
    DamagedBloom,
    DamagedCache,
    DiskTier,
    UnsafeValue,
    is_corruption,
    remove_database,
)
from .memory import MemoryTier
from .redis import FORGED, Unreadable
from .settings import CacheSettings
from .stats import MAX_STAT, STAT_FIELDS, parse_stats, stats_view
from .values import parse_count


class CacheError(OmnitokError):
    """A cache command that could not do what was asked of a tier (down, damaged, read-only)."""


class TieredCache:
    """The tiers `settings` name, opened here; or, with `tiers` (another TieredCache, the owner),
    a view of that one's tiers (`view()`): the same L1, L2 connection, Bloom filter and L3
    client, with statistics, failures and writes of its own. A view's close() hands its
    statistics to the owner (in memory: no tier is written on the caller's thread, which may be
    serving a request) and leaves the tiers open; the owner's close() saves them all and closes
    the tiers. The tiers are safe across threads (L1 locks, diskcache's connections are per
    thread, RedisTier locks its state), so views on several threads need no lock of their own;
    one view is one thread's at a time."""

    def __init__(self, settings: CacheSettings, *, tiers: TieredCache | None = None):
        self.settings = settings
        self.algorithm = settings.hash_algorithm
        self.shared = tiers is not None  # a view: its close() leaves the tiers open
        self._owner = tiers
        self._absorbing = threading.Lock()  # an owner's: views close on several threads
        self.stats: Tally = Tally()
        self.writes: Tally = Tally()  # entries stored per tier this run
        self.rebuilt: dict[str, str] = {}  # tier -> what `clear` rebuilt
        if tiers is not None:
            self.l1, self.l2, self.l3, self.bloom = tiers.l1, tiers.l2, tiers.l3, tiers.bloom
            self.failed: dict[str, str] = dict(tiers.failed)  # tier -> why it is not in use
            self.damaged: DamagedCache | None = tiers.damaged
            return
        self.l1 = MemoryTier(settings.l1_max_entries, settings.l1_ttl)
        self.l2: DiskTier | None = None
        self.l3 = None
        self.bloom: Bloom | None = None
        self.failed = {}  # tier -> why it is not in use (its first failure)
        self.damaged = None  # L2's database is damaged: `clear` rebuilds it
        if settings.directory is not None:
            self._open_l2()
        if settings.l3_url:
            self._open_l3()

    def view(self) -> TieredCache:
        """A view of this cache's tiers (see the class), for one more user of them."""
        return TieredCache(self.settings, tiers=self)

    # --- set-up and failure handling ---------------------------------------------------------

    def _open_l2(self) -> None:
        s = self.settings
        try:
            self.l2 = DiskTier(s.directory, s.l2_size_mb)
        except DamagedCache as e:
            self._l2_damaged(e)
        except (OSError, sqlite3.Error) as e:
            if is_corruption(e):
                self._l2_damaged(DamagedCache(s.directory / DB_FILE, "damaged", f"is damaged ({e})"))
            else:
                self._warn("l2", f"the disk cache at {s.directory} is unusable ({_why(e)})", "using memory only")
        if self.l2 is not None and s.bloom:
            try:
                self._open_bloom()
            except (OSError, sqlite3.Error) as e:
                self._l2_failed(e)

    def _l2_damaged(self, e: DamagedCache) -> None:
        self.l2, self.bloom = None, None
        if e.kind == "damaged":
            self.damaged = e
            then = "`omnitok cache clear --tier l2` rebuilds it"
        else:
            then = "omnitok leaves it alone: choose another --cache-dir"
        self._warn("l2", str(e), f"using memory only ({then})")

    def _open_l3(self) -> None:
        s = self.settings
        try:
            from .redis import RedisTier

            tier = RedisTier(s.l3_url, s.l3_prefix, s.l3_ttl, s.l3_timeout, secret=s.l3_secret, ping=False)
        except ImportError:
            self._warn("l3", "L3 needs redis-py (pip install 'omnitok[cache]')", "carrying on with L1+L2")
            return
        except Exception as e:  # a URL redis-py refuses
            self._warn("l3", f"L3 cache {redact_url(s.l3_url)} unusable ({_why(e)})", "carrying on with L1+L2")
            return
        import redis

        try:
            tier.client.ping()  # fail now, not on the first batch
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
            # down for now (AuthenticationError is a ConnectionError too: a password being rotated):
            # reconnected in the background with backoff, as after a failure mid-run
            tier.down()
            self.l3 = tier
            self._warn(
                "l3", f"L3 cache {redact_url(s.l3_url)} unreachable ({_why(e)})", "carrying on with L1+L2, reconnecting"
            )
            return
        except Exception as e:  # the server answered, but not as Redis does
            tier.close()
            self._warn("l3", f"L3 cache {redact_url(s.l3_url)} unusable ({_why(e)})", "carrying on with L1+L2")
            return
        self.l3 = tier

    def _warn(self, tier: str, reason: str, then: str) -> None:
        """Report a tier's failure once (`reason; then`); `failures()` keeps the first reason."""
        self.stats[f"{tier}_errors"] += 1
        self.failed.setdefault(tier, reason)
        notices.warn_once(f"cache-{tier}", f"cache: {reason}; {then}")

    def _open_bloom(self) -> None:
        s = self.settings
        path = self.l2.directory / BLOOM_FILE
        try:
            self.bloom = Bloom(path, s.bloom_capacity, s.bloom_error_rate)
        except (OSError, DamagedBloom) as e:
            notices.warn_once("cache-bloom", f"cache: the Bloom filter {path} is damaged ({e}); rebuilding it from L2")
            try:
                path.unlink(missing_ok=True)
                self.bloom = Bloom(path, s.bloom_capacity, s.bloom_error_rate)
            except (OSError, DamagedBloom):
                self.bloom = None  # cannot replace it: go without the filter
                return
        if not self.bloom.loaded_from_disk and self.l2.size():
            self.bloom.add_many(self.l2.keys())  # a filter that missed L2's keys would hide them

    def _l2_failed(self, e: Exception) -> None:
        if is_corruption(e) and self.l2 is not None:
            self._l2_damaged(DamagedCache(self.l2.directory / DB_FILE, "damaged", f"is damaged ({e})"))
            return
        self._warn("l2", f"the disk cache at {self.settings.directory} failed ({_why(e)})", "using memory only")
        self.l2, self.bloom = None, None

    def _l3_failed(self, e: Exception) -> None:
        """L3 failed: bypassed until it answers again (RedisTier.usable: reconnected in the
        background, with backoff)."""
        url = redact_url(self.settings.l3_url)
        self._warn("l3", f"L3 cache {url} failed mid-run ({_why(e)})", "carrying on with L1+L2, reconnecting")
        if self.l3 is not None:
            self.l3.down()

    def _l3_ready(self):
        """The L3 tier if it is configured and up now, else None."""
        if self.l3 is None or not self.l3.usable():
            return None
        return self.l3

    def l3_in_use(self) -> bool:
        """Whether L3 is configured and answering (as far as this process last saw)."""
        return self._l3_ready() is not None

    def _refused(self, tier: str, key: str) -> None:
        """A value that failed its integrity check: a tier error, never served (counted again)."""
        self.stats[f"{tier}_errors"] += 1
        why = {
            "l2": "an entry in l2 failed its checksum (damaged or edited)",
            "l3": "a value in l3 has no valid tag (written without the secret, edited, or moved from another key)",
        }[tier]
        notices.warn_once(f"cache-refused-{tier}", f"cache: {why}; ignored and counted again (key {key})")

    def _decode(self, tier: str, key: str, raw, decode=parse_count):
        try:
            value = None if isinstance(raw, Unreadable) else decode(raw)
        except (ValueError, TypeError, RecursionError):  # json.loads and friends on foreign data
            value = None
        if value is None:
            self.stats["malformed"] += 1
            notices.warn_once(f"cache-malformed-{tier}", f"cache: a malformed value in {tier} was ignored (key {key})")
        return value

    def failures(self, tiers=("l2", "l3")) -> dict[str, str]:
        """Why each of `tiers` that was asked for (configured) is not in use, if it is not."""
        return {t: self.failed[t] for t in tiers if t in self.failed}

    # --- the interface --------------------------------------------------------------------------

    def get_many(self, keys: list[str], decode=parse_count) -> list:
        """Values for keys (None for a miss). `decode` validates what L2/L3 return: counts by
        default; a malformed or foreign value is a miss and a warning. A value longer than
        `decode.max_bytes` (MAX_VALUE_BYTES if it has none) is never read from L3."""
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
            try:
                values = self.l2.get_many([keys[i] for i in todo])
            except UnsafeValue:
                values = self._l2_one_by_one([keys[i] for i in todo])
            except (OSError, sqlite3.Error) as e:
                self._l2_failed(e)
                values = [None] * len(todo)
            todo = self._answers("l2", DAMAGED, todo, keys, values, decode, found, promote)
        l3_promote: dict[str, int] = {}
        l3 = self._l3_ready() if todo else None
        if l3 is not None:
            try:
                values = l3.get_many([keys[i] for i in todo], getattr(decode, "max_bytes", MAX_VALUE_BYTES))
            except Exception as e:  # redis errors, sockets
                self._l3_failed(e)
                values = [None] * len(todo)
            self._answers("l3", FORGED, todo, keys, values, decode, found, l3_promote)
        self.stats["misses"] += sum(v is None for v in found)
        if promote:
            self.l1.set_many(promote)
        if l3_promote:
            self.l1.set_many(l3_promote)
            self._set_l2(l3_promote)
        return found

    def _answers(self, tier: str, refused, todo: list[int], keys: list[str], values, decode, found, promote) -> list:
        """A slower tier's answers for the keys at `todo`: a value the tier refused (`refused`:
        damaged in L2, forged in L3) or one that does not decode is a miss; a hit goes into `found`
        and `promote` and is counted. The positions still missed."""
        still = []
        for i, raw in zip(todo, values, strict=True):
            if raw is refused:
                self._refused(tier, keys[i])
                raw = None
            value = None if raw is None else self._decode(tier, keys[i], raw, decode)
            if value is None:
                still.append(i)
            else:
                found[i] = value
                promote[keys[i]] = value
                self.stats[f"{tier}_hits"] += 1
        return still

    def _l2_one_by_one(self, keys: list[str]) -> list:
        out = []
        for key in keys:
            try:
                out.append(self.l2.get_many([key])[0])
            except UnsafeValue as e:
                self.stats["malformed"] += 1
                notices.warn_once("cache-unsafe-l2", f"cache: {e} in L2 was ignored (key {key})")
                out.append(None)
        return out

    def _set_l2(self, items: dict[str, int]) -> None:
        if self.l2 is None:
            return
        try:
            self.l2.set_many(items)
            self.writes["l2"] += len(items)
            if self.bloom is not None:
                self.bloom.add_many(items)
        except (OSError, sqlite3.Error) as e:
            self._l2_failed(e)

    def set_many(self, items: dict) -> None:
        if not items:
            return
        self.l1.set_many(items)
        self.writes["l1"] += len(items)
        self._set_l2(items)
        l3 = self._l3_ready()
        if l3 is not None:
            try:
                self.writes["l3"] += l3.set_many(items, MAX_VALUE_BYTES)
            except Exception as e:
                self._l3_failed(e)

    def clear(self, tier: str = "all", tag: str | None = None) -> dict[str, int]:
        """Entries removed per tier. A tier that could not be cleared is left out and its reason
        is in `failures()`; a damaged L2 database is removed and made afresh when all of L2 is
        cleared (`rebuilt` says so)."""
        out = {}
        if tier in ("all", "l1"):
            out["l1"] = self.l1.clear(tag)
        if tier in ("all", "l2") and self.settings.directory is not None:
            if self.l2 is not None:
                try:
                    out["l2"] = self.l2.clear(tag)
                    if tag is None:
                        (self.l2.directory / BLOOM_FILE).unlink(missing_ok=True)
                        self.bloom = None
                except (OSError, sqlite3.Error) as e:
                    self._l2_failed(e)
            if self.l2 is None and self.damaged is not None and tag is None:
                out["l2"] = self._rebuild_l2()
        if tier in ("all", "l3") and self._l3_ready() is not None:
            try:
                out["l3"] = self.l3.clear(tag)
            except Exception as e:
                self._l3_failed(e)
        return out

    def _rebuild_l2(self) -> int:
        damaged, directory = self.damaged, self.settings.directory
        try:
            remove_database(directory)
            self.l2 = DiskTier(directory, self.settings.l2_size_mb)
        except (OSError, sqlite3.Error) as e:
            self.failed["l2"] = f"{damaged}; removing it failed ({_why(e)})"
            return 0
        self.damaged = None
        self.failed.pop("l2", None)
        self.rebuilt["l2"] = f"{damaged}: removed it and made a new one"
        notices.warn_once("cache-l2-rebuilt", f"cache: {self.rebuilt['l2']}")
        return 0

    def integrity(self) -> str | None:
        """SQLite's quick check of L2's database ('ok', or the problems, also recorded as L2's
        failure); None without L2. Reads the whole file."""
        if self.l2 is None:
            return None
        try:
            result = self.l2.integrity()
        except (OSError, sqlite3.Error) as e:
            self._l2_failed(e)
            return self.failed.get("l2", str(e))
        if result != "ok":
            self.damaged = DamagedCache(self.l2.directory / DB_FILE, "damaged", f"is damaged ({result})")
            self.failed.setdefault("l2", str(self.damaged))
        return result

    # --- statistics ------------------------------------------------------------------------

    def sizes(self) -> dict:
        """Entries and bytes in L2, keys in L3 (None for a tier not in use)."""
        out = {"l2_size": None, "l2_bytes": None, "l3_size": None}
        if self.l2 is not None:
            try:
                out.update(l2_size=self.l2.size(), l2_bytes=self.l2.volume_bytes())
            except (OSError, sqlite3.Error) as e:
                self._l2_failed(e)
        if self._l3_ready() is not None:
            try:
                out["l3_size"] = self.l3.size()
            except Exception as e:  # redis errors, sockets
                self._l3_failed(e)
        return out

    def counts(self) -> Tally:
        """A copy of this run's statistics (one C-level dict copy: whole, even while another
        thread counts with this cache)."""
        return Tally(self.stats)

    def run_stats(self) -> dict:
        """This run's statistics (`stats_view`): hits per tier, misses, totals, hit rate in
        percent, L1's and L2's sizes, then omnitok's own counts (malformed, tier_errors, bloom)."""
        l2_size = None
        if self.l2 is not None:
            try:
                l2_size = self.l2.size()
            except (OSError, sqlite3.Error) as e:
                self._l2_failed(e)
        return stats_view(self.stats, l1_size=self.l1.size(), l2_size=l2_size, bloom=self.bloom_info())

    def bloom_info(self) -> dict | None:
        """The Bloom filter in use (entries, capacity, false-positive rate, full), or None."""
        if self.bloom is None:
            return None
        return {
            "entries": self.bloom.filter.count,
            "capacity": self.bloom.capacity,
            "false_positive_rate": self.bloom.error_rate,
            "full": self.bloom.full,
        }

    def _l2_stats(self) -> dict[str, int]:
        """The statistics kept in L2; a damaged entry is reported once and read as empty."""
        raw = self.l2.stats_raw()
        if raw is None:
            return {}
        parsed = parse_stats(raw)
        if parsed is None:
            self.stats["malformed"] += 1
            notices.warn_once("cache-stats-l2", "cache: the statistics stored in L2 are damaged; starting them afresh")
            return {}
        return parsed

    def stored_stats(self) -> dict:
        """Counts kept across runs: in L2 (JSON under a reserved key) and in L3 (a hash)."""
        out = {}
        if self.l2 is not None:
            try:
                out["l2"] = self._l2_stats()
            except (OSError, sqlite3.Error) as e:
                self._l2_failed(e)
        if self._l3_ready() is not None:
            try:
                raw = self.l3.stored_stats(STAT_FIELDS)
                counts = {f: parse_count(v, MAX_STAT) for f, v in zip(STAT_FIELDS, raw, strict=True) if v is not None}
                if any(v is None for v in counts.values()):
                    notices.warn_once("cache-stats-l3", "cache: some statistics stored in L3 are damaged; ignored")
                out["l3"] = {f: v for f, v in counts.items() if v is not None}
            except ValueError as e:
                notices.warn_once("cache-stats-l3", f"cache: the statistics stored in L3 are damaged ({e}); ignored")
                out["l3"] = {}
            except Exception as e:
                self._l3_failed(e)
        return out

    def close(self) -> None:
        """A view: hand this run's statistics to the owner. Else add them to those kept in L2 and
        L3, save the Bloom filter and close the tiers."""
        if self.shared:
            owner, self._owner = self._owner, None
            if owner is not None:  # (once: a view closed again hands nothing twice)
                with owner._absorbing:
                    owner.stats.update(self.stats)
                    owner.writes.update(self.writes)
                self.stats, self.writes = Tally(), Tally()
            return
        run = {f: self.stats.get(f, 0) for f in STAT_FIELDS}
        if self.l2 is not None:
            try:
                with self.l2.cache.transact(retry=True):
                    total = self._l2_stats()
                    for k, v in run.items():
                        total[k] = total.get(k, 0) + v
                    self.l2.cache.set(STATS_KEY, json.dumps(total))
                if self.bloom is not None:
                    self.bloom.save()
                self.l2.close()
            except (OSError, sqlite3.Error) as e:
                self._warn("l2", f"could not save cache statistics to {self.settings.directory} ({_why(e)})", "skipped")
        if self.l3 is not None:
            try:
                if self.l3.up and not self.l3.incr_stats(run):
                    notices.warn_once(
                        "cache-stats-l3-reset", "cache: the statistics stored in L3 were damaged; started afresh"
                    )
            except Exception as e:
                self._l3_failed(e)
            with contextlib.suppress(Exception):  # closing sockets that may already be gone
                self.l3.close()


def _why(e: BaseException) -> str:
    """An exception as `Type: message`, one line, any URL in it with its password hidden."""
    text = " ".join(str(e).split())
    if "://" in text:
        text = " ".join(redact_url(w) if "://" in w else w for w in text.split())
    text = text[:300]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
