"""The three-tier cache (L1 memory, L2 diskcache, L3 Redis/Valkey) shared by every stage."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import redact_url
from .tiered import CacheError, CacheSettings, TieredCache

__all__ = ["CacheError", "CacheSettings", "TieredCache", "default_dir", "redact_url", "settings_from", "wrap"]

MODES = ("auto", "on", "off")


def default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "omnitok"


def _pick(key: str, flag: str, flag_value, env: str, cfg: dict):
    """The first of flag, environment variable and config value that is set, checked by the
    [cache] rule for `key`; an error names where the bad value came from."""
    from ..config import check_cache_value

    if flag_value:
        return check_cache_value(key, flag_value, flag)
    if os.environ.get(env):
        return check_cache_value(key, os.environ[env], env)
    return cfg.get(key)  # checked with the file


def settings_from(cache_dir: str | None = None, l3_url: str | None = None) -> CacheSettings:
    """Cache settings: defaults < config file [cache] < environment < flags (each value checked:
    a bad one is a UsageError naming the file and key, the variable or the option). The L3 secret
    is OMNITOK_L3_SECRET's value, else the content of [cache] l3_secret_file."""
    from ..config import L3_SECRET_ENV, check_l3_secret, read_l3_secret_file, settings

    cfg = {k: v for k, v in settings().cache.items() if k not in ("directory", "l3_url")}
    file_cfg = settings().cache
    directory = _pick("directory", "--cache-dir", cache_dir, "OMNITOK_CACHE_DIR", file_cfg) or default_dir()
    if str(directory).strip().lower() == "none":  # no disk tier: L1 (+ L3)
        directory = None
    url = _pick("l3_url", "--l3-url", l3_url, "L3_CACHE_URL", file_cfg)
    secret = None
    if os.environ.get(L3_SECRET_ENV):  # the environment over the file's l3_secret_file
        secret = check_l3_secret(os.environ[L3_SECRET_ENV], L3_SECRET_ENV)
        cfg.pop("l3_secret_file", None)
    elif cfg.get("l3_secret_file"):
        where = f"{settings().source or 'config'}: [cache] l3_secret_file"
        secret = read_l3_secret_file(cfg["l3_secret_file"], where)
    return CacheSettings(Path(directory).expanduser() if directory else None, url, **cfg, l3_secret=secret)


def wrap(strategy, mode: str, settings: CacheSettings, options: str = ""):
    """The strategy behind the cache if its policy (or --cache on) says so; else unchanged.

    Policy from measured costs (README, "Cache"): online counts (tens of ms) are cached; local
    engines count a 2 KB text in ~15 us, less than an L2 read, so with `auto` they are not.
    """
    if mode == "off" or (mode == "auto" and getattr(strategy, "cache_policy", "none") != "all"):
        return strategy, None
    from .cached_strategy import CachedStrategy

    cache = TieredCache(settings)
    return CachedStrategy(strategy, cache, options), cache
