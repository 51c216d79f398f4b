"""Cache statistics under the field names of the cache omnitok grew from (issue 12 item 13):
l1_hits, l2_hits, l3_hits, misses, total_hits, total_requests, hit_rate (percent), l1_size,
l2_size, then omnitok's own (malformed, tier_errors, bloom). Checked through the real console
script: `count --summary`'s "cache" entry for one run, `cache stats --json` across runs."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from .console import omnitok
from .redis_server import RedisServer

FIELDS = ["l1_hits", "l2_hits", "l3_hits", "misses", "total_hits", "total_requests", "hit_rate", "l1_size", "l2_size"]
EXTRAS = ["malformed", "tier_errors", "bloom"]
N = 6


@pytest.fixture
def redis_srv(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.stop()


def run(*args: str, tmp: Path, env: dict | None = None) -> dict:
    """`omnitok ARGS` (the console script) with its config and cache under `tmp`; its JSON output."""
    base = {"OMNITOK_CONFIG": None, "L3_CACHE_URL": None}  # None: unset
    base.update(
        XDG_CONFIG_HOME=str(tmp / "xdg-config"),
        XDG_CACHE_HOME=str(tmp / "xdg-cache"),
        OMNITOK_HOME=str(tmp / "home"),
        OMNITOK_CACHE_DIR=str(tmp / "cache"),
    )
    r = omnitok(*args, env={**base, **(env or {})}, timeout=300)
    assert r.code == 0 and not r.err, r.err
    assert b"None" not in r.out  # a missing value is JSON null, never the string "None"
    return orjson.loads(r.out)


def corpus(path: Path, n: int) -> str:
    path.write_bytes(
        b"".join(orjson.dumps({"text": f"record {i} of the corpus " * (i % 3 + 1)}) + b"\n" for i in range(n))
    )
    return str(path)


def count(f: str, tmp: Path, *extra: str, env: dict | None = None) -> dict:
    out = run("count", "-m", "gpt-4o", "--cache", "on", "--summary", "--format", "json", *extra, f, tmp=tmp, env=env)
    return out["cache"]


def stats(tmp: Path, *extra: str, env: dict | None = None) -> dict:
    return run("cache", "stats", "--json", *extra, tmp=tmp, env=env)


def expected(l1=0, l2=0, l3=0, misses=0, l1_size=0, l2_size=None) -> dict:
    hits = l1 + l2 + l3
    total = hits + misses
    rate = round(100 * hits / total, 2) if total else 0.0
    return dict(zip(FIELDS, [l1, l2, l3, misses, hits, total, rate, l1_size, l2_size], strict=True))


def head(s: dict) -> dict:
    return {k: s[k] for k in FIELDS}


def test_counting_twice_then_stats(tmp_path):
    a = corpus(tmp_path / "a.jsonl", N)
    first = count(a, tmp_path)
    assert list(first) == FIELDS + EXTRAS  # the names, in order, and nothing else
    assert head(first) == expected(misses=N, l1_size=N, l2_size=N)
    assert first["malformed"] == 0 and first["tier_errors"] == {"l1": 0, "l2": 0, "l3": 0}
    assert first["bloom"]["skips"] == N and first["bloom"]["entries"] == N  # never seen: L2 not asked
    second = count(a, tmp_path)
    assert head(second) == expected(l2=N, l1_size=N, l2_size=N) and second["hit_rate"] == 100.0
    assert second["bloom"]["skips"] == 0

    s = stats(tmp_path)
    assert head(s) == expected(l2=N, misses=N, l2_size=N)  # l1: a new process's memory is empty
    assert (s["total_requests"], s["hit_rate"]) == (2 * N, 50.0)
    assert s["l2_dir"] == str(tmp_path / "cache") and s["counts_recorded_in"] == "l2"
    assert s["bloom"]["skips"] == N and s["tier_errors"] == {"l1": 0, "l2": 0, "l3": 0}
    assert s["l3"] is False and s["l3_size"] is None and "l3_recorded" not in s
    assert not any(k.startswith(("l2_recorded_", "l3_recorded_")) for k in s)  # l2_recorded_l2_hits: gone

    b = corpus(tmp_path / "b.jsonl", N + 1)  # a's records and one more
    third = count(b, tmp_path)
    assert head(third) == expected(l2=N, misses=1, l1_size=N + 1, l2_size=N + 1)
    assert third["hit_rate"] == round(100 * N / (N + 1), 2) == 85.71
    s = stats(tmp_path)
    assert head(s) == expected(l2=2 * N, misses=N + 1, l2_size=N + 1)
    assert s["hit_rate"] == round(100 * 2 * N / (3 * N + 1), 2) == 63.16


def test_no_disk_tier_is_null_not_the_string_none(tmp_path):
    a = corpus(tmp_path / "a.jsonl", N)
    run = count(a, tmp_path, "--cache-dir", "none")
    assert head(run) == expected(misses=N, l1_size=N, l2_size=None) and run["bloom"] is None
    s = stats(tmp_path, "--cache-dir", "none")
    assert s["l2_dir"] is None and s["l2_size"] is None and s["l2_bytes"] is None
    assert head(s) == expected(l2_size=None) and s["counts_recorded_in"] is None and s["hit_rate"] == 0.0


def test_l3_record(tmp_path, redis_srv):
    a = corpus(tmp_path / "a.jsonl", N)
    env = {"L3_CACHE_URL": redis_srv.url}
    count(a, tmp_path, env=env)
    again = count(a, tmp_path, "--cache-dir", "none", env=env)  # another host, with no disk tier: served by L3
    assert head(again) == expected(l3=N, l1_size=N, l2_size=None)

    s = stats(tmp_path, env=env)  # the first L2: its own record, and L3's for every host
    assert head(s) == expected(misses=N, l2_size=N) and s["counts_recorded_in"] == "l2"
    assert s["l3"] is True and s["l3_size"] == N
    assert list(s["l3_recorded"]) == FIELDS[:7] + EXTRAS
    assert {k: s["l3_recorded"][k] for k in FIELDS[:7]} == {
        k: v for k, v in expected(l3=N, misses=N).items() if k in FIELDS[:7]
    }
    assert s["l3_recorded"]["hit_rate"] == 50.0

    only = stats(tmp_path, "--cache-dir", "none", env=env)  # no L2: L3's record
    assert only["counts_recorded_in"] == "l3" and only["l2_dir"] is None and "l3_recorded" not in only
    assert head(only) == expected(l3=N, misses=N, l2_size=None)
