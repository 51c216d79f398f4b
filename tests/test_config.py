"""The config file, the environment and the cache options are checked in one place: whatever a
user writes is either accepted and in range, or a UsageError (exit 2) naming the file (or option)
and the key, on one line, never another exception and never a password."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnitok import config, notices
from omnitok.cache import CacheSettings, settings_from
from omnitok.config import CACHE_RULES, HASH_ALGORITHMS
from omnitok.errors import UsageError

from .console import completed, omnitok

PASSWORD = "PW-s3cret-xyz"
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", 50)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    """A config file named by OMNITOK_CONFIG: write(text) puts `text` in it and forgets the cached
    settings; warnings are collected in cfg.seen."""
    path = tmp_path / "config.toml"
    path.write_text("")
    monkeypatch.setenv("OMNITOK_CONFIG", str(path))
    for name in ("L3_CACHE_URL", "OMNITOK_CACHE_DIR", "OMNITOK_PREFER_OFFLINE", "OMNITOK_LOCAL_MODEL_DIRS"):
        monkeypatch.delenv(name, raising=False)
    seen: list[str] = []
    notices.reset()
    notices.set_handler(seen.append)

    class Cfg:
        def write(self, text: str):
            path.write_text(text, encoding="utf-8")
            config.settings.cache_clear()
            notices.reset()

    c = Cfg()
    c.path, c.seen = path, seen
    yield c
    notices.set_handler(None)
    notices.reset()
    config.settings.cache_clear()


# --- TOML values of every kind -------------------------------------------------------------------


def toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 2**31, 2**53 + 1, 10**9, 10**9 + 1, 2**63 - 1, -(2**63), 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 0.5, 0.999999, 1.0, 2.0, 1e9, 1e300, 3600.0, float("nan")]),
    texts,
    st.sampled_from(["none", "None", "", " ", "big", "md5", "blake3", "sha256", "redis://h:6379/0", "true"]),
    st.sampled_from(["redis://u:pw@[::1:6379/0", "redis://h:99999/0", "redis://h/x", "unix://", "valkey://h"]),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), scalars, max_size=2),
    st.just("DATETIME"),
)


def render(v) -> str:
    return "1979-05-27T07:32:00Z" if v == "DATETIME" else toml_value(v)


def in_range(key: str, v) -> bool:
    """What CacheSettings may hold for `key` once checked."""
    finite = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    whole = isinstance(v, int) and not isinstance(v, bool)
    return {
        "directory": lambda: v is None or isinstance(v, Path),
        "l3_url": lambda: v is None or (isinstance(v, str) and "://" in v),
        "l1_max_entries": lambda: whole and 1 <= v <= 10**9,
        "l1_ttl": lambda: v is None or (finite and v >= 0),
        "l2_size_mb": lambda: finite and 0 < v <= 10**9,
        "l3_ttl": lambda: v is None or (whole and v >= 1),
        "l3_prefix": lambda: isinstance(v, str) and v and "*" not in v,
        "l3_secret_file": lambda: v is None or isinstance(v, str),
        "l3_timeout": lambda: finite and 0 < v <= 3600,
        "hash_algorithm": lambda: v in HASH_ALGORITHMS,
        "bloom": lambda: isinstance(v, bool),
        "bloom_capacity": lambda: whole and 1 <= v <= 10**9,
        "bloom_error_rate": lambda: finite and 1e-12 <= v < 1,
    }[key]()


def accepted_or_named(cfg, text: str, keys) -> CacheSettings | None:
    """Load `text` as the config: the cache settings, or None after checking that the error is a
    one-line UsageError naming the file and one of `keys`."""
    cfg.write(text)
    try:
        return settings_from()
    except UsageError as e:
        message = str(e)
        assert "\n" not in message
        assert message.startswith(str(cfg.path)), message
        assert any(f"[cache] {k}:" in message for k in keys) or "not valid TOML" in message, message
        assert "Traceback" not in message
        return None


@FUZZ
@given(key=st.sampled_from(sorted(CACHE_RULES)), value=values)
def test_every_cache_key_fuzzed(cfg, key, value):
    s = accepted_or_named(cfg, f"[cache]\n{key} = {render(value)}\n", [key])
    if s is not None:
        for name in CACHE_RULES:
            assert in_range(name, getattr(s, name)), (name, getattr(s, name))


@FUZZ
@given(table=st.dictionaries(st.sampled_from(sorted(CACHE_RULES)), values, min_size=2, max_size=5))
def test_several_cache_keys_fuzzed(cfg, table):
    body = "".join(f"{k} = {render(v)}\n" for k, v in table.items())
    s = accepted_or_named(cfg, "[cache]\n" + body, list(table))
    if s is not None:
        for name in CACHE_RULES:
            assert in_range(name, getattr(s, name)), (name, getattr(s, name))


@FUZZ
@given(key=st.sampled_from(sorted(CACHE_RULES)), value=scalars)
def test_cache_settings_built_directly(key, value):
    """A library user building CacheSettings gets the same rules."""
    if key in ("directory",) and isinstance(value, str) and value.strip().lower() == "none":
        return
    try:
        s = CacheSettings(None, **{key: value}) if key != "directory" else CacheSettings(value)
    except UsageError as e:
        assert str(e).startswith(f"cache settings: {key}: must ") or "Bloom filter" in str(e), str(e)
        return
    assert in_range(key, getattr(s, key))


@FUZZ
@given(
    scheme=st.sampled_from(["redis", "rediss", "valkey", "unix", "http", "REDIS", ""]),
    user=st.sampled_from(["", "u", "default"]),
    rest=st.text(alphabet="[]:/@?#=&%.0123456789abcdefxyz ", max_size=20),
)
def test_l3_url_flag_fuzzed(cfg, scheme, user, rest):
    url = f"{scheme}://{user}:{PASSWORD}@{rest}"
    try:
        s = settings_from(l3_url=url)
    except UsageError as e:
        assert str(e).startswith("--l3-url: "), str(e)
        assert PASSWORD not in str(e) and "\n" not in str(e)
        return
    assert s.l3_url == url
    from redis.connection import parse_url

    from omnitok.cache.redis import connection_url

    parse_url(connection_url(url))  # what is accepted, redis-py can connect with


# --- keys, sections, files and variables -----------------------------------------------------


def test_unknown_keys_and_sections_are_warned_with_a_suggestion(cfg):
    cfg.write("prefer_ofline = true\n[cachee]\ndirectory = 'x'\n[cache]\nbloom_capasity = 10\nl2_size_mb = 5\n")
    s = settings_from()
    assert s.l2_size_mb == 5 and s.bloom_capacity == 5_000_000
    assert f"{cfg.path}: unknown key 'prefer_ofline' (did you mean 'prefer_offline'?); ignored" in cfg.seen
    assert f"{cfg.path}: unknown section [cachee] (did you mean 'cache'?); ignored" in cfg.seen
    assert f"{cfg.path}: unknown key 'bloom_capasity' in [cache] (did you mean 'bloom_capacity'?); ignored" in cfg.seen


@pytest.mark.parametrize(
    "text, said",
    [
        ('prefer_offline = "no"', "prefer_offline must be true or false (a TOML boolean), not 'no'"),
        ("prefer_offline = 0", "prefer_offline must be true or false"),
        ('cache = "on"', "cache must be a table ([cache]), not 'on'"),
        ('local_model_dirs = ["a"]', "local_model_dirs must be a table"),
        ("[local_model_dirs]\nx = 1", "local_model_dirs must be a table"),
        ("not toml at all", "not valid TOML"),
    ],
)
def test_top_level_values(cfg, text, said):
    cfg.write(text + "\n")
    with pytest.raises(UsageError) as e:
        config.settings()
    assert str(e.value).startswith(f"{cfg.path}: ") and said in str(e.value)


def test_prefer_offline_accepted_and_from_the_environment(cfg, monkeypatch):
    cfg.write("prefer_offline = false\n")
    assert config.settings().prefer_offline is False
    monkeypatch.setenv("OMNITOK_PREFER_OFFLINE", "yes")
    config.settings.cache_clear()
    assert config.settings().prefer_offline is True
    monkeypatch.setenv("OMNITOK_PREFER_OFFLINE", "maybe")
    config.settings.cache_clear()
    with pytest.raises(UsageError, match="^OMNITOK_PREFER_OFFLINE must be one of .* not 'maybe'$"):
        config.settings()


def test_config_path_errors(cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("OMNITOK_CONFIG", str(tmp_path / "missing.toml"))
    config.settings.cache_clear()
    with pytest.raises(UsageError, match="missing.toml: no such file$"):
        config.settings()
    monkeypatch.setenv("OMNITOK_CONFIG", str(tmp_path))
    config.settings.cache_clear()
    with pytest.raises(UsageError, match="not a file"):
        config.settings()
    monkeypatch.delenv("OMNITOK_CONFIG")  # the default path, absent: fine
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config.settings.cache_clear()
    assert config.settings().source is None


def test_environment_and_flags_are_checked_and_named(cfg, monkeypatch):
    cfg.write('[cache]\nl3_url = "redis://h:6379/0"\n')
    assert settings_from().l3_url == "redis://h:6379/0"
    assert settings_from(l3_url="valkey://h/1").l3_url == "valkey://h/1"
    monkeypatch.setenv("L3_CACHE_URL", "redis://h:0/0")
    with pytest.raises(UsageError, match="^L3_CACHE_URL: must have a port from 1 to 65535"):
        settings_from()
    with pytest.raises(UsageError, match="^--cache-dir: must be a directory path"):
        settings_from(cache_dir=" ")
    assert settings_from(cache_dir="none", l3_url="redis://h/0").directory is None


def test_ttls_accept_none_and_whole_floats(cfg):
    cfg.write('[cache]\nl1_ttl = "none"\nl3_ttl = "None"\n')
    s = settings_from()
    assert s.l1_ttl is None and s.l3_ttl is None
    cfg.write("[cache]\nl1_ttl = 0\nl3_ttl = 3600.0\n")
    s = settings_from()
    assert s.l1_ttl == 0 and s.l3_ttl == 3600 and isinstance(s.l3_ttl, int)


def test_bloom_size_is_bounded(cfg):
    cfg.write("[cache]\nbloom_capacity = 100000000\nbloom_error_rate = 1e-9\n")
    with pytest.raises(UsageError, match=r"\[cache\] bloom_capacity: a capacity of 100,000,000 .* MiB Bloom filter"):
        settings_from()


# --- the reported cases, through the console script -------------------------------------------------

REPORTED = [
    ("bloom_capacity = 0", "bloom_capacity: must be a whole number from 1 to 1,000,000,000, not 0"),
    ("bloom_error_rate = 2.0", "bloom_error_rate: must be a finite number at least 1e-12 and below 1, not 2.0"),
    ("l1_max_entries = -1", "l1_max_entries: must be a whole number from 1 to 1,000,000,000, not -1"),
    ('l2_size_mb = "big"', "l2_size_mb: must be a finite number above 0 and at most 1e+09, not 'big'"),
    ('hash_algorithm = "md5"', "hash_algorithm: must be one of blake3, sha256, not 'md5'"),
    ("l3_ttl = nan", "l3_ttl: must be a whole number of seconds"),
    ('bloom = "yes"', "bloom: must be true or false (a TOML boolean, unquoted), not 'yes'"),
    ('l3_prefix = "*"', "l3_prefix: must be a non-empty key prefix"),
]


def omnitok_cli(*args: str, env: dict, stdin: bytes = b"hello there") -> subprocess.CompletedProcess:
    base = {"OMNITOK_CONFIG": None, "L3_CACHE_URL": None}  # None: unset
    return completed(args, omnitok(*args, stdin=stdin, env={**base, **env}, timeout=300))


@pytest.mark.parametrize("line, said", REPORTED, ids=[r[0] for r in REPORTED])
def test_reported_cache_values_exit_2_naming_file_and_key(tmp_path, line, said):
    path = tmp_path / "config.toml"
    path.write_text(f"[cache]\n{line}\n")
    env = {"OMNITOK_CONFIG": str(path), "OMNITOK_CACHE_DIR": str(tmp_path / "c")}
    r = omnitok_cli("count", "-m", "gpt-4o", "--cache", "on", env=env)
    err = r.stderr.decode()
    assert r.returncode == 2 and r.stdout == b""
    assert err.startswith(f"omnitok: error: {path}: [cache] {said}") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_reported_file_and_value_cases(tmp_path):
    env = {"OMNITOK_CACHE_DIR": str(tmp_path / "c")}
    r = omnitok_cli("count", "-m", "gpt-4o", env={**env, "OMNITOK_CONFIG": str(tmp_path / "nope.toml")})
    assert (
        r.returncode == 2
        and r.stderr.decode() == f"omnitok: error: OMNITOK_CONFIG={tmp_path / 'nope.toml'}: no such file\n"
    )
    r = omnitok_cli("count", "-m", "gpt-4o", env={**env, "OMNITOK_CONFIG": str(tmp_path)})
    assert r.returncode == 2 and r.stderr.decode().count("\n") == 1 and "not a file" in r.stderr.decode()
    path = tmp_path / "config.toml"
    path.write_text('prefer_offline = "no"\n')
    r = omnitok_cli("count", "-m", "gpt-4o", env={**env, "OMNITOK_CONFIG": str(path)})
    assert r.returncode == 2
    assert (
        r.stderr.decode()
        == f"omnitok: error: {path}: prefer_offline must be true or false (a TOML boolean), not 'no'\n"
    )
    path.write_text("[cachee]\nl2_size_mb = 5\n")
    r = omnitok_cli("count", "-m", "gpt-4o", env={**env, "OMNITOK_CONFIG": str(path)})
    assert r.returncode == 0 and r.stdout.strip().isdigit()
    assert r.stderr.decode() == f"omnitok: warning: {path}: unknown section [cachee] (did you mean 'cache'?); ignored\n"
    r = omnitok_cli("count", "-m", "gpt-4o", "--cache", "on", "--l3-url", f"redis://u:{PASSWORD}@[::1:6379/0", env=env)
    assert r.returncode == 2 and PASSWORD not in r.stderr.decode()
    assert (
        r.stderr.decode()
        == "omnitok: error: --l3-url: must be a valid URL, not 'redis://u:***@[::1:6379/0' (Invalid IPv6 URL)\n"
    )
