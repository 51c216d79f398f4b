"""The three-tier cache (L1 memory, L2 diskcache, L3 Redis/Valkey) shared by every stage."""

from __future__ import annotations

from ..config import redact_url
from .settings import CacheSettings, default_dir, settings_from
from .tiered import CacheError, TieredCache

__all__ = [
    "CacheError",
    "CacheSettings",
    "TieredCache",
    "default_dir",
    "open_cache",
    "redact_url",
    "settings_from",
    "wrap",
]

MODES = ("auto", "on", "off")


def wrap(strategy, mode: str, settings: CacheSettings, options: str = "", caches=None):
    """The strategy behind the cache if its policy (or --cache on) says so; else unchanged. The
    cache is `caches`' for these settings when given (a shared.SharedCaches), else a new one.

    Policy from measured costs (README, "Cache"): online counts (tens of ms) are cached; local
    engines count a 2 KB text in ~15 us, less than an L2 read, so with `auto` they are not.
    """
    if mode == "off" or (mode == "auto" and getattr(strategy, "cache_policy", "none") != "all"):
        return strategy, None
    from .cached_strategy import CachedStrategy

    cache = open_cache(settings, caches)
    return CachedStrategy(strategy, cache, options), cache


def open_cache(settings: CacheSettings, caches=None) -> TieredCache:
    """A view of `caches`' cache for these settings (a shared.SharedCaches: a runtime's), else a
    cache of its own: how a Counter (wrap) and a Compressor take theirs."""
    return caches.get(settings) if caches is not None else TieredCache(settings)
