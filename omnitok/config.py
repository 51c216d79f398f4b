"""Settings: defaults < config file < environment variables < command-line flags.

The config file is TOML at $OMNITOK_CONFIG, else $XDG_CONFIG_HOME/omnitok/config.toml
(~/.config/omnitok/config.toml):

    prefer_offline = true            # online count APIs only with --online or when false
    [local_model_dirs]               # model id -> directory holding its tokenizer files
    "meta-llama/Llama-3.1-8B" = "/models/llama-3.1-8b"
    [cache]                          # omnitok.cache.CacheSettings fields
    directory = "/var/cache/omnitok"
    l3_url = "redis://127.0.0.1:6379/0"
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError


@dataclass(frozen=True)
class Settings:
    prefer_offline: bool = True
    local_model_dirs: dict[str, str] = field(default_factory=dict)
    cache: dict = field(default_factory=dict)  # the [cache] table (CacheSettings fields)
    source: str | None = None  # the config file read, if any


def config_path() -> Path:
    if env := os.environ.get("OMNITOK_CONFIG"):
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "omnitok" / "config.toml"


def _read_file(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None


def _env_bool(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    return value.strip().lower() in ("1", "true", "yes", "on")


@functools.cache
def settings() -> Settings:
    path = config_path()
    data = _read_file(path)
    dirs = data.get("local_model_dirs", {})
    if not isinstance(dirs, dict) or not all(isinstance(v, str) for v in dirs.values()):
        raise UsageError(f"{path}: local_model_dirs must map model ids to directory strings")
    # OMNITOK_LOCAL_MODEL_DIRS="id=dir;id2=dir2" adds to (and overrides) the file's table.
    for item in filter(None, os.environ.get("OMNITOK_LOCAL_MODEL_DIRS", "").split(";")):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"OMNITOK_LOCAL_MODEL_DIRS: expected id=dir, got {item!r}")
        dirs = {**dirs, key.strip(): value.strip()}
    prefer_offline = data.get("prefer_offline", True)
    env = _env_bool("OMNITOK_PREFER_OFFLINE")
    if env is not None:
        prefer_offline = env
    cache = data.get("cache", {})
    if not isinstance(cache, dict):
        raise UsageError(f"{path}: [cache] must be a table")
    return Settings(bool(prefer_offline), dict(dirs), dict(cache), str(path) if data else None)
