"""Settings: defaults < config file < environment variables < command-line flags.

The config file is TOML at $OMNITOK_CONFIG, else $XDG_CONFIG_HOME/omnitok/config.toml
(~/.config/omnitok/config.toml):

    prefer_offline = true            # online count APIs only with --online or when false
    [local_model_dirs]               # model id -> directory holding its tokenizer files
    "meta-llama/Llama-3.1-8B" = "/models/llama-3.1-8b"
    [cache]                          # omnitok.cache.CacheSettings fields
    directory = "/var/cache/omnitok"
    l3_url = "redis://127.0.0.1:6379/0"
    l3_secret_file = "/run/secrets/omnitok-l3"   # L3 values tagged (HMAC) with this secret

Everything read is checked here, in one place: a value of the wrong type or out of range is a
UsageError naming the file, the key and what is allowed; an unknown key or section is a warning
with the closest known name. The [cache] rules (`check_cache_value`) also serve the cache options
of the command line and of the library, through omnitok.cache.CacheSettings.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from . import notices
from .errors import UsageError

HASH_ALGORITHMS = ("blake3", "sha256")
L3_SECRET_ENV = "OMNITOK_L3_SECRET"  # the L3 secret itself (else [cache] l3_secret_file names a file)
L3_SECRET_CHARS = (16, 4096)  # a secret's length, stripped of surrounding white space
L3_SCHEMES = ("redis", "rediss", "valkey", "valkeys", "unix")
MAX_BLOOM_BITS = 2**32  # 512 MiB of filter: a bound on what a setting (or a file) can make us allocate
TOP_LEVEL = ("prefer_offline", "local_model_dirs", "cache")


@dataclass(frozen=True)
class Settings:
    prefer_offline: bool = True
    local_model_dirs: dict[str, str] = field(default_factory=dict)
    cache: dict = field(default_factory=dict)  # the [cache] table, checked (CacheSettings fields)
    source: str | None = None  # the config file read, if any


# provider -> the environment variable its count API key is read from (omnitok.remote.providers)
PROVIDER_KEYS = {
    "anthropic": "ANTHROPIC_API_KEY",
    "google": "GOOGLE_API_KEY",
    "vllm": "VLLM_API_KEY",
    "tokenize": "OMNITOK_TOKENIZE_API_KEY",
}


@dataclass(frozen=True, repr=False)
class TokenizerSettings:
    """How models are counted, as the config file's top level says it (prefer_offline,
    local_model_dirs) plus the providers' API keys (read from their environment variables:
    PROVIDER_KEYS). Checked when made, by the config file's rules: a bad value is a UsageError.
    Keys never appear in repr(). `load()`: what the file and the environment say now;
    `omnitok.Counter(model, settings=...)` counts with them."""

    prefer_offline: bool = True
    local_model_dirs: dict[str, str] = field(default_factory=dict)
    provider_keys: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        where = "tokenizer settings"
        check_prefer_offline(self.prefer_offline, where)
        object.__setattr__(self, "local_model_dirs", check_local_model_dirs(self.local_model_dirs, where))
        keys = self.provider_keys
        if not isinstance(keys, dict):
            raise UsageError(f"{where}: provider_keys must map provider names to keys, not {type(keys).__name__}")
        for name, key in keys.items():
            if name not in PROVIDER_KEYS:
                close = difflib.get_close_matches(str(name), list(PROVIDER_KEYS), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise UsageError(
                    f"{where}: unknown provider {shown(name)} in provider_keys{hint}; known: {', '.join(PROVIDER_KEYS)}"
                )
            if not isinstance(key, str) or not key.strip() or any(c in key for c in "\r\n\0"):
                raise UsageError(f"{where}: provider_keys[{name!r}] must be a non-empty one-line string")
        object.__setattr__(self, "provider_keys", dict(keys))

    @classmethod
    def load(cls) -> TokenizerSettings:
        """The settings the config file and the environment give now (defaults < file < environment)."""
        s = settings()
        keys = {name: os.environ[env] for name, env in PROVIDER_KEYS.items() if os.environ.get(env, "").strip()}
        if "google" not in keys and os.environ.get("GEMINI_API_KEY", "").strip():
            keys["google"] = os.environ["GEMINI_API_KEY"]
        return cls(s.prefer_offline, dict(s.local_model_dirs), keys)

    def environment(self) -> dict[str, str]:
        """The environment variables the providers read their keys from, as these settings set them."""
        return {PROVIDER_KEYS[name]: key for name, key in self.provider_keys.items()}

    def __hash__(self) -> int:  # hashable like CacheSettings, so either can key a pool of counters
        return hash(
            (
                self.prefer_offline,
                tuple(sorted(self.local_model_dirs.items())),
                tuple(sorted(self.provider_keys.items())),
            )
        )

    def __repr__(self) -> str:
        keys = ", ".join(f"{name!r}: '***'" for name in self.provider_keys)
        return (
            f"TokenizerSettings(prefer_offline={self.prefer_offline!r}, "
            f"local_model_dirs={self.local_model_dirs!r}, provider_keys={{{keys}}})"
        )


# --- checking values --------------------------------------------------------------------------


class Invalid(ValueError):
    """A value a rule refuses; the message says what is allowed (`must be ..., not ...`)."""


def shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(value, low: int, high: int) -> int:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise Invalid(f"must be a whole number from {low:,} to {high:,}, not {shown(value)}")
    return value


def _number(value, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo = f"{'above' if low_open else 'at least'} {low:g}"
        hi = f"{'below' if high_open else 'at most'} {high:g}"
        raise Invalid(f"must be a finite number {lo} and {hi}, not {shown(value)}")
    return value


def _none(value) -> bool:
    return isinstance(value, str) and value.strip().lower() == "none"


def _bool(value) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false (a TOML boolean, unquoted), not {shown(value)}")
    return value


def _directory(value):
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise Invalid(f"must be a directory path, or 'none' for no disk tier, not {shown(value)}")
    return value


def _ttl(value, *, whole: bool, high: float):
    if value is None or _none(value):
        return None
    try:
        return _whole(value, 1, int(high)) if whole else _number(value, 0, high)
    except Invalid:
        kind = f"a whole number of seconds from 1 to {int(high):,}" if whole else f"seconds from 0 to {high:g}"
        raise Invalid(f"must be {kind}, or 'none' for no expiry, not {shown(value)}") from None


def _prefix(value) -> str:
    if not isinstance(value, str) or not value or len(value) > 256 or any(c in value for c in "*?[]\\\0\n\r"):
        # SCAN MATCH prefix* finds what `cache clear` deletes: a glob character or an empty prefix
        # would reach keys that are not omnitok's.
        raise Invalid(f"must be a non-empty key prefix (no * ? [ ] \\, at most 256 characters), not {shown(value)}")
    return value


def _algorithm(value) -> str:
    if value not in HASH_ALGORITHMS:
        raise Invalid(f"must be one of {', '.join(HASH_ALGORITHMS)}, not {shown(value)}")
    return value


def _secret_file(value) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise Invalid(f"must be the path of a file holding the L3 secret, not {shown(value)}")
    return value


SECRET_HINT = "make one with: openssl rand -hex 32"


def check_l3_secret(value, where: str) -> str:
    """The L3 secret (surrounding white space stripped): one line of 16 to 4096 characters. The
    message never shows it."""
    low, high = L3_SECRET_CHARS
    text = value.strip() if isinstance(value, str) else ""
    printable = all(32 <= ord(c) != 127 and not 0xD800 <= ord(c) <= 0xDFFF for c in text)
    if not (low <= len(text) <= high and printable):
        raise UsageError(f"{where}: must be one line of {low} to {high:,} characters", hint=SECRET_HINT)
    return text


def read_l3_secret_file(path, where: str) -> str:
    """The L3 secret held in the file at `path` (one line of 16 to 4096 characters); a message
    names the file, never its content."""
    import stat

    path = Path(os.path.expanduser(os.fspath(path)))
    low, high = L3_SECRET_CHARS
    try:
        # O_NONBLOCK: a FIFO or device at that path is refused below instead of waited on
        with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise UsageError(f"{where}: must name a file holding the L3 secret, not {shown(str(path))}")
            data = f.read(4 * high + 1)  # a bound on what a wrong path makes us read
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise UsageError(
            f"{where}: must name a readable file holding the L3 secret, not {shown(str(path))} ({why})"
        ) from None
    try:
        return check_l3_secret(data.decode("utf-8"), where)
    except (UnicodeDecodeError, UsageError):
        raise UsageError(
            f"{where}: must name a file holding one line of {low} to {high:,} characters (the L3 secret), "
            f"not {shown(str(path))}",
            hint=SECRET_HINT,
        ) from None


def redact_url(url: str) -> str:
    """`url` fit to print (omnitok.redact, one implementation for every URL shown): password and
    secret query parameters masked, an L3 URL's user name kept."""
    from .redact import redact_url as redact

    return redact(url, keep_user=True)


def l3_url(value) -> str:
    """An L3 URL redis-py (or valkey) can connect with: a known scheme, a host (or a socket path for
    unix://), a port and a database number that parse. Messages show the URL with its password
    hidden."""
    from urllib.parse import parse_qs, urlsplit

    schemes = ", ".join(s + "://" for s in L3_SCHEMES)
    if not isinstance(value, str):
        raise Invalid(f"must be a {schemes} URL, not {shown(value)}")
    safe = shown(redact_url(value))
    scheme, sep, _ = value.partition("://")
    if not sep or scheme.lower() not in L3_SCHEMES:
        raise Invalid(f"must be a {schemes} URL, not {safe}")
    if len(value) > 4096 or any(c.isspace() or ord(c) < 32 for c in value):
        raise Invalid(f"must be a URL without spaces or control characters, at most 4096 long, not {safe}")
    try:
        parts = urlsplit(value)
        port = parts.port
        query = parse_qs(parts.query, strict_parsing=False)
    except ValueError as e:
        raise Invalid(f"must be a valid URL, not {safe} ({e})") from None
    if scheme.lower() == "unix":
        if not parts.path:
            raise Invalid(f"must name a socket path (unix:///run/redis.sock), not {safe}")
    else:
        if port == 0:
            raise Invalid(f"must have a port from 1 to 65535, not {safe}")
        db = parts.path.strip("/")
        if db and not (db.isdigit() and int(db) < 2**31):
            raise Invalid(f"must end in a database number (/0), not {safe}")
    for name in ("db", "socket_timeout", "socket_connect_timeout"):
        for v in query.get(name, []):
            try:
                float(v) if name != "db" else int(v)
            except ValueError:
                raise Invalid(f"must have a numeric {name} parameter, not {safe}") from None
    return value


def bloom_shape(capacity: int, error_rate: float) -> tuple[int, int]:
    """(hash functions, bits per slice) of a Bloom filter (pybloom-live's formula)."""
    slices = int(math.ceil(math.log(1.0 / error_rate, 2)))
    bits_per_slice = int(math.ceil((capacity * abs(math.log(error_rate))) / (slices * (math.log(2) ** 2))))
    return slices, bits_per_slice


def check_bloom(capacity: int, error_rate: float) -> None:
    slices, per_slice = bloom_shape(capacity, error_rate)
    if slices * per_slice > MAX_BLOOM_BITS:
        raise Invalid(
            f"a capacity of {capacity:,} at an error rate of {error_rate:g} needs a "
            f"{slices * per_slice / 8 / 2**20:,.0f} MiB Bloom filter, more than the {MAX_BLOOM_BITS // 8 // 2**20} MiB "
            "allowed: lower bloom_capacity or raise bloom_error_rate"
        )


CACHE_RULES = {
    "directory": _directory,
    "l3_url": l3_url,
    "l1_max_entries": lambda v: _whole(v, 1, 10**9),
    "l1_ttl": lambda v: _ttl(v, whole=False, high=10 * 365 * 86400),
    "l2_size_mb": lambda v: _number(v, 0, 10**9, low_open=True),
    "l3_ttl": lambda v: _ttl(v, whole=True, high=100 * 365 * 86400),
    "l3_prefix": _prefix,
    "l3_secret_file": _secret_file,
    "l3_timeout": lambda v: _number(v, 0, 3600, low_open=True),
    "hash_algorithm": _algorithm,
    "bloom": _bool,
    "bloom_capacity": lambda v: _whole(v, 1, 10**9),
    # below 1e-12 a filter costs more hashes a lookup than it saves (and 1/rate overflows near 1e-308)
    "bloom_error_rate": lambda v: _number(v, 1e-12, 1, high_open=True),
}


def check_cache_value(key: str, value, where: str):
    """`value` for the [cache] key `key`, normalised ('none' TTL -> None), or a UsageError
    `<where>: must be ..., not ...`."""
    try:
        return CACHE_RULES[key](value)
    except Invalid as e:
        raise UsageError(f"{where}: {e}") from None


def check_cache_table(table: dict, where: str) -> dict:
    """The [cache] table checked key by key (errors name `where` and the key); unknown keys are
    warned about and dropped."""
    out = {}
    for key, value in table.items():
        if key not in CACHE_RULES:
            _unknown(f"{where}: unknown key {key!r} in [cache]", key, CACHE_RULES)
            continue
        out[key] = check_cache_value(key, value, f"{where}: [cache] {key}")
    capacity, rate = out.get("bloom_capacity", 5_000_000), out.get("bloom_error_rate", 0.01)
    try:
        check_bloom(capacity, rate)
    except Invalid as e:
        key = "bloom_capacity" if "bloom_capacity" in out else "bloom_error_rate"
        raise UsageError(f"{where}: [cache] {key}: {e}") from None
    return out


def _unknown(message: str, key: str, known) -> None:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
    notices.warn_once(f"config-unknown:{message}", f"{message}{hint}; ignored")


def check_prefer_offline(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise UsageError(f"{where}: prefer_offline must be true or false (a TOML boolean), not {shown(value)}")
    return value


def check_local_model_dirs(value, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise UsageError(f"{where}: local_model_dirs must be a table mapping model ids to directory strings")
    return dict(value)


# --- the file and the environment ---------------------------------------------------------------


def config_path() -> Path:
    if env := os.environ.get("OMNITOK_CONFIG"):
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "omnitok" / "config.toml"


MAX_CONFIG_BYTES = 1 << 20


def _read_file(path: Path, named: bool) -> dict:
    """The parsed file; {} when the default file is absent. A file named by OMNITOK_CONFIG must
    exist, and whichever path is used must be a readable file."""
    where = f"OMNITOK_CONFIG={path}" if named else str(path)
    if not path.exists():
        if named:
            raise UsageError(f"{where}: no such file")
        return {}
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):  # a FIFO would hold the read forever, a device has no end
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            raise UsageError(f"{where}: {kind}, not a file; a TOML file is expected")
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:  # (a 100 MB file took 18 s and 776 MB to be read)
            raise UsageError(f"{where}: over {MAX_CONFIG_BYTES:,} bytes; a config file is at most 1 MiB")
        return tomllib.loads(data.decode("utf-8"))
    except OSError as e:
        raise UsageError(f"{where}: cannot read it ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None


TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _env_bool(name: str) -> bool | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    if value.strip().lower() in TRUE:
        return True
    if value.strip().lower() in FALSE:
        return False
    raise UsageError(f"{name} must be one of {'/'.join(TRUE)} or {'/'.join(FALSE)}, not {shown(value)}")


@functools.cache
def settings() -> Settings:
    path = config_path()
    data = _read_file(path, bool(os.environ.get("OMNITOK_CONFIG")))
    for key, value in data.items():
        if key not in TOP_LEVEL:
            kind = "section" if isinstance(value, dict) else "key"
            name = key if key.replace("_", "").replace("-", "").isalnum() else repr(key)
            shown_key = f"[{name}]" if isinstance(value, dict) else repr(key)
            _unknown(f"{path}: unknown {kind} {shown_key}", key, TOP_LEVEL)
    dirs = check_local_model_dirs(data.get("local_model_dirs", {}), str(path))
    # OMNITOK_LOCAL_MODEL_DIRS="id=dir;id2=dir2" adds to (and overrides) the file's table.
    for item in filter(None, os.environ.get("OMNITOK_LOCAL_MODEL_DIRS", "").split(";")):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"OMNITOK_LOCAL_MODEL_DIRS: expected id=dir, got {item!r}")
        dirs = {**dirs, key.strip(): value.strip()}
    prefer_offline = check_prefer_offline(data.get("prefer_offline", True), str(path))
    env = _env_bool("OMNITOK_PREFER_OFFLINE")
    if env is not None:
        prefer_offline = env
    cache = data.get("cache", {})
    if not isinstance(cache, dict):
        raise UsageError(f"{path}: cache must be a table ([cache]), not {shown(cache)}")
    cache = check_cache_table(cache, str(path))
    return Settings(prefer_offline, dict(dirs), cache, str(path) if data else None)
