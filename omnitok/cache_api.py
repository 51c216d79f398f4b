"""The cache's library API: `Cache`, the cache of token counts as a Python object, and what the
`omnitok cache` commands call (`open_tiers`, `cache_tags`, `recorded_stats`). It is the storage of
omnitok.cache (the L1 memory / L2 disk / L3 Redis tiers, TieredCache, the keys) seen per model and
text: it resolves model ids (omnitok.counter) to the keys `omnitok count --cache on` stores under,
so it sits above the counter, not inside omnitok.cache, which sits below it.

    >>> from omnitok import Cache, CacheSettings
    >>> cache = Cache(CacheSettings(directory=None))     # memory only
    >>> key = cache.key("gpt-4o", "hello world")
    >>> cache.get(key) is None
    True
    >>> cache.set(key, 2)
    >>> cache.get(key)
    2
"""

from __future__ import annotations

from dataclasses import replace

from .cache import CacheSettings, TieredCache, settings_from
from .cache.keys import KeyMaker
from .errors import UsageError


def open_tiers(cache_dir: str | None = None, l3_url: str | None = None, tier: str = "all") -> TieredCache:
    """The tiers `tier` names (all: every configured one) of the cache the settings place (flags <
    environment < config file < defaults); asking for a tier that is not configured is a usage
    error."""
    s = settings_from(cache_dir, l3_url)
    if tier == "l2" and s.directory is None:
        raise UsageError("--tier l2: there is no disk tier (--cache-dir none)")
    if tier == "l3" and not s.l3_url:
        raise UsageError("--tier l3: no L3 is configured (--l3-url, L3_CACHE_URL or [cache] l3_url)")
    if tier in ("l1", "l3"):
        s = replace(s, directory=None)
    if tier in ("l1", "l2"):
        s = replace(s, l3_url=None)
    return TieredCache(s)


def cache_tags(model: str | None, special_tokens: bool = True, algorithm: str | None = None) -> list[str]:
    """The key tags a model's entries carry: its offline strategy's and its online one's (what
    `cache clear --model` removes)."""
    from .counter import resolve
    from .families import family, rank_files_only
    from .remote.providers import fingerprint
    from .strategy_chain import Options, cache_options, offline, provider_model

    res = resolve(model)
    # A fingerprint names the vocabulary and the rule, never the engine: an OpenAI encoding's is
    # taken from pybpe, which maps a derived table, instead of building gigatoken's (0.3 s a tag).
    engine = "pybpe" if rank_files_only(res) else "auto"
    fingerprints = [offline(res, Options(engine=engine)).fingerprint]
    provider = family(res.family).provider(res)
    if provider is not None:
        fingerprints.append(fingerprint(provider.strategy, provider_model(res)))
    algorithm = algorithm or settings_from().hash_algorithm
    return [KeyMaker(fp, cache_options(res, special_tokens), algorithm).tag for fp in fingerprints]


def recorded_stats(tiers: TieredCache) -> dict:
    """What `omnitok cache stats` shows: where L2 lives, the hit/miss counts kept across runs
    (L2's record, else L3's) in the seed's field names, sizes per tier, and L3's own record when
    L2 keeps the counts."""
    from .cache.stats import stats_view

    stored = tiers.stored_stats()
    sizes = tiers.sizes()
    recorded_in = next(iter(stored), None)  # l2 if it is in use, else l3
    directory = tiers.settings.directory
    data: dict = {"l2_dir": str(directory) if directory is not None else None}
    counts = stored.get(recorded_in, {})
    data.update(stats_view(counts, l1_size=tiers.l1.size(), l2_size=sizes["l2_size"], bloom=tiers.bloom_info()))
    data.update(counts_recorded_in=recorded_in, l2_bytes=sizes["l2_bytes"], l3=tiers.l3_in_use())
    data["l3_size"] = sizes["l3_size"]
    if recorded_in == "l2" and "l3" in stored:  # L3's own record: every host that shares it
        data["l3_recorded"] = stats_view(stored["l3"], sizes=False)
    return data


class Cache:
    """Token counts kept per model and text: `key(model, text)`, `get(key)`, `set(key, count)`,
    `stats()`. Built over the L1/L2/L3 tiers (`tiers`, a TieredCache) with `settings` (a
    CacheSettings; None: what the config file and environment say). A key is the one `omnitok
    count --cache on` stores a count under, so both share entries. A tier that fails is reported
    once and bypassed, never fatal."""

    def __init__(self, settings: CacheSettings | None = None):
        self.settings = settings if settings is not None else settings_from()
        if not isinstance(self.settings, CacheSettings):
            raise TypeError(f"settings must be a CacheSettings, not {type(self.settings).__name__}")
        self.tiers = TieredCache(self.settings)
        self._keys: dict[tuple, KeyMaker] = {}

    def key(
        self,
        model: str | None,
        text: str,
        *,
        encoding: str | None = None,
        tokenizer: str | None = None,
        special_tokens: bool = True,
        online: bool | None = None,
    ) -> str:
        """The key a count of `text` by `model` is kept under (`<tag>:<hash>`): a hash over the
        strategy that counts it (its fingerprint), the options that change the count and the text."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, not {type(text).__name__}")
        spec = (model, encoding, tokenizer, special_tokens, online)
        keys = self._keys.get(spec)
        if keys is None:
            from .counter import Counter
            from .strategy_chain import cache_options

            counter = Counter(
                model, encoding=encoding, tokenizer=tokenizer, special_tokens=special_tokens, online=online, cache="off"
            )
            options = cache_options(counter.resolution, special_tokens)
            keys = self._keys[spec] = KeyMaker(counter.strategy.fingerprint, options, self.settings.hash_algorithm)
        return keys.key(text)

    def get(self, key: str) -> int | None:
        """The count kept under `key` (L1, then L2, then L3; a hit is promoted), else None."""
        return self.tiers.get_many([key])[0]

    def set(self, key: str, count: int) -> None:
        """Keep `count` under `key` in every tier in use."""
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"a count must be a whole number >= 0, not {count!r}")
        self.tiers.set_many({key: count})

    def get_many(self, keys: list[str]) -> list[int | None]:
        return self.tiers.get_many(list(keys))

    def set_many(self, items: dict[str, int]) -> None:
        for count in items.values():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ValueError(f"a count must be a whole number >= 0, not {count!r}")
        self.tiers.set_many(dict(items))

    def stats(self) -> dict:
        """This object's statistics: l1_hits, l2_hits, l3_hits, misses, total_hits,
        total_requests, hit_rate (percent), l1_size, l2_size (the seed's names, as `count
        --summary` shows them), then omnitok's own (malformed, tier_errors, bloom)."""
        return self.tiers.run_stats()

    def clear(self, model: str | None = None, tier: str = "all") -> dict[str, int]:
        """Remove entries (all, or a model's) from `tier` (l1, l2, l3 or all); entries removed
        per tier."""
        if tier not in ("l1", "l2", "l3", "all"):
            raise UsageError(f"tier must be l1, l2, l3 or all, not {tier!r}")
        tags = [None]
        if model is not None:
            algorithm = self.settings.hash_algorithm
            tags = list(dict.fromkeys(cache_tags(model, True, algorithm) + cache_tags(model, False, algorithm)))
        removed: dict[str, int] = {}
        for tag in tags:
            for t, n in self.tiers.clear(tier, tag).items():
                removed[t] = removed.get(t, 0) + n
        return removed

    def failures(self) -> dict[str, str]:
        """Why each configured slower tier (l2, l3) is not in use, if it is not."""
        return self.tiers.failures()

    def close(self) -> None:
        """Save the statistics and the Bloom filter; release connections."""
        self.tiers.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"Cache({self.settings!r})"
