"""Where and how the cache keeps counts: `CacheSettings` (every value checked when made, by the
config file's [cache] rules) and `settings_from`, the settings that the defaults, the config file,
the environment and the flags give, in that order."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

from ..config import redact_url
from ..errors import UsageError


@dataclass(frozen=True)
class CacheSettings:
    """Where and how to cache. Every field is checked when the object is made (the rules are the
    config file's [cache] rules, omnitok.config.CACHE_RULES): a bad value is a UsageError, whatever
    front end built it."""

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
    # L3 values are tagged with an HMAC under this secret (never shown: repr masks it); given, or
    # read from l3_secret_file (OMNITOK_L3_SECRET, then [cache] l3_secret_file, for `load()`)
    l3_secret_file: str | None = None
    l3_secret: str | None = None

    @classmethod
    def load(cls, cache_dir: str | None = None, l3_url: str | None = None) -> CacheSettings:
        """The settings the config file's [cache], the environment and these flags give now
        (defaults < file < environment < flags; cache_dir 'none': no disk tier)."""
        return settings_from(cache_dir, l3_url)

    def __repr__(self) -> str:  # the L3 URL's password and the secret hidden, as everywhere
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "l3_url" and value:
                value = redact_url(value)
            if f.name == "l3_secret" and value is not None:
                parts.append(f"{f.name}='***'")
                continue
            parts.append(f"{f.name}={value!r}")
        return f"CacheSettings({', '.join(parts)})"

    def __post_init__(self):
        from ..config import Invalid, check_bloom, check_cache_value, check_l3_secret, read_l3_secret_file

        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("directory", "l3_url", "l3_secret_file", "l3_secret"):
                continue
            if f.name == "l3_secret":
                value = check_l3_secret(value, "cache settings: l3_secret")
            else:
                value = check_cache_value(f.name, value, f"cache settings: {f.name}")
            if f.name == "directory":
                value = Path(value)
            object.__setattr__(self, f.name, value)
        if self.l3_secret is None and self.l3_secret_file is not None:
            secret = read_l3_secret_file(self.l3_secret_file, "cache settings: l3_secret_file")
            object.__setattr__(self, "l3_secret", secret)
        try:
            check_bloom(self.bloom_capacity, self.bloom_error_rate)
        except Invalid as e:
            raise UsageError(f"cache settings: {e}") from None


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
