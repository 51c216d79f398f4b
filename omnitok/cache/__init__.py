"""The three-tier cache (L1 memory, L2 diskcache, L3 Redis/Valkey) shared by every stage."""

from __future__ import annotations

import os
from pathlib import Path

from .tiered import CacheSettings, TieredCache

__all__ = ["CacheSettings", "TieredCache", "default_dir", "settings_from", "wrap"]

MODES = ("auto", "on", "off")


def default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "omnitok"


def settings_from(cache_dir: str | None = None, l3_url: str | None = None) -> CacheSettings:
    """Cache settings: defaults < config file [cache] < environment < flags."""
    from ..config import settings

    cfg = dict(settings().cache)
    directory = cache_dir or os.environ.get("OMNITOK_CACHE_DIR") or cfg.pop("directory", None) or default_dir()
    if str(directory).lower() == "none":  # no disk tier: L1 (+ L3)
        directory = None
    url = l3_url or os.environ.get("L3_CACHE_URL") or cfg.pop("l3_url", None)
    allowed = set(CacheSettings.__dataclass_fields__) - {"directory", "l3_url"}
    extra = {k: v for k, v in cfg.items() if k in allowed}
    return CacheSettings(Path(directory).expanduser() if directory else None, url, **extra)


def wrap(strategy, mode: str, settings: CacheSettings, options: str = ""):
    """The strategy behind the cache if its policy (or --cache on) says so; else unchanged.

    Policy from measured costs (README, "Cache"): online counts (tens of ms) are cached; local
    engines count a 2 KB text in ~15 us, less than an L2 read, so with `auto` they are not.
    """
    if mode == "off" or (mode == "auto" and getattr(strategy, "cache_policy", "none") != "all"):
        return strategy, None
    from .strategy import CachedStrategy

    cache = TieredCache(settings)
    return CachedStrategy(strategy, cache, options), cache
