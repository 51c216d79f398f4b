"""CachedStrategy: a strategy behind the cache. Look every item up, count only the misses, store what the
strategy itself counted (never a fallback's estimate under an exact strategy's key)."""

from __future__ import annotations

from collections.abc import Sequence

from .keys import KeyMaker


class CachedStrategy:
    in_process = True  # lookups and stores happen here, in the main process

    def __init__(self, inner, cache, options: str = ""):
        self.inner = inner
        self.cache = cache
        self.keys = KeyMaker(inner.fingerprint, options, cache.algorithm)
        for attr in ("name", "exact", "encoding", "engine", "source", "fingerprint"):
            setattr(self, attr, getattr(inner, attr))
        if hasattr(inner, "error_band"):
            self.error_band = inner.error_band
        self.last_meta: list | None = None

    def count(self, item) -> int:
        return self.count_batch([item])[0]

    def count_batch(self, items: Sequence) -> list[int]:
        keys = [self.keys.key(item) for item in items]
        found = self.cache.get_many(keys)
        missing = [i for i, v in enumerate(found) if v is None]
        self.last_meta = None
        if missing:
            counts = self.inner.count_batch([items[i] for i in missing])
            metas = getattr(self.inner, "last_meta", None)
            store = {}
            for j, i in enumerate(missing):
                found[i] = counts[j]
                if not (metas and metas[j]):
                    store[keys[i]] = counts[j]
            if metas:
                self.last_meta = [None] * len(items)
                for j, i in enumerate(missing):
                    self.last_meta[i] = metas[j]
            self.cache.set_many(store)
        return found  # type: ignore[return-value]
