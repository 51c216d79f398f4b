"""One TieredCache per cache settings for everything a runtime lends (omnitok.runtime: the
Counters and Compressors of `omnitok serve` and omnitok.aio).

A runtime keeps an object per (model, options), so a client choosing model ids chooses how many
objects there are. With a cache each, every one held its own L1 (up to l1_max_entries), its own
SQLite connections and its own Bloom filter (~6 MB at the default capacity): 64 Claude ids took
a process from 26 to 495 MB, and a counter retired after a provider's failure reopened L2 and
reread the filter for the next request. Shared, the cache's memory is what its settings say,
whatever the ids; the keys already name the model and the rule (cache.keys), so one cache holds
every model's counts without mixing them. Each user gets a view (TieredCache.view): the shared
tiers with statistics of its own, so no lock is held across a tier's round trip and a slow L3
delays only the requests that wait on it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter as Tally

from .settings import CacheSettings
from .tiered import TieredCache

# A cache whose L2 could not be opened (a database locked a moment by another process's `cache
# clear`, a directory not there yet) is opened again by the next user after this many seconds;
# until then its users count with L1 (and L3). Without it, one failure lasted the runtime's life.
RETRY_S = 30.0


class SharedCaches:
    """One TieredCache per CacheSettings, opened on first use; `get` hands each user a view of it
    (TieredCache.view: the same tiers, statistics of its own, closed by its user). `stats()` is
    what the caches themselves counted (a tier that failed on opening); `close()` closes them
    (statistics and the Bloom filter saved), after which the next `get` opens afresh."""

    def __init__(self):
        self._lock = threading.Lock()
        self._caches: dict[CacheSettings, TieredCache] = {}
        self._opened: dict[CacheSettings, float] = {}
        self._replaced: list[TieredCache] = []  # opened without their L2, then again (RETRY_S)

    def get(self, settings: CacheSettings) -> TieredCache:
        with self._lock:
            cache = self._caches.get(settings)
            now = time.monotonic()
            if cache is not None and _without_l2(cache) and now - self._opened[settings] >= RETRY_S:
                self._replaced.append(cache)  # its views go on as they are; closed with the rest
                cache = None
            if cache is None:
                cache = self._caches[settings] = TieredCache(settings)
                self._opened[settings] = now
        return cache.view()

    def stats(self) -> tuple[Tally, int, int | None]:
        """What the caches themselves counted, as summed() sums it."""
        with self._lock:
            caches = [*self._caches.values(), *self._replaced]
        return summed(caches)

    def close(self) -> None:
        with self._lock:
            caches = [*self._caches.values(), *self._replaced]
            self._caches, self._opened, self._replaced = {}, {}, []
        for cache in caches:
            with contextlib.suppress(Exception):  # closing never fails a request
                cache.close()


def _without_l2(cache: TieredCache) -> bool:
    """Whether a cache asked for an L2 has none (it could not be opened)."""
    return cache.settings.directory is not None and cache.l2 is None


def summed(caches) -> tuple[Tally, int, int | None]:
    """(statistics summed over `caches`, L1 entries summed, the first L2's entries or None); a
    view's tiers are its owner's, sized there, so a view adds its statistics alone."""
    counts: Tally = Tally()
    l1 = 0
    l2 = None
    for cache in caches:
        counts.update(cache.counts())
        if cache.shared:
            continue
        l1 += cache.l1.size()
        tier = cache.l2
        if l2 is None and tier is not None:
            with contextlib.suppress(Exception):  # a failing L2 reports itself in tier_errors
                l2 = tier.size()
    return counts, l1, l2
