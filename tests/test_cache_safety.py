"""Everything the cache reads back is untrusted: bloom.bin, cache.db, L2 values, Redis values and
the stored statistics. Each damaged form must give a warning and the right counts (checked against
tiktoken), never a traceback, and never memory that grows with what a file claims. And the cache
commands, run through the real console script, must say when a tier failed (exit 1)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

import omnitok
from omnitok.cache import CacheSettings, TieredCache
from omnitok.cache.disk import BLOOM_FILE, BLOOM_HEADER, DB_FILE, STATS_KEY, inspect
from omnitok.config import bloom_shape

from .console import completed
from .console import omnitok as console_omnitok
from .redis_server import RedisServer, free_port

TEXTS = [f"record {i} about caches " * (i % 5 + 1) for i in range(60)]
PASSWORD = "s3cr3t-pw-xyz"


@pytest.fixture
def redis_srv(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def reference(ref_o200k):
    return [len(ref_o200k.encode_ordinary(t)) for t in TEXTS]


@pytest.fixture
def warm_dir(tmp_path, reference):
    """An L2 directory holding every text's count (and a saved Bloom filter)."""
    d = tmp_path / "l2"
    counter = omnitok.Counter("gpt-4o", cache="on", cache_dir=str(d))
    assert [r.tokens for r in counter.count_batch(TEXTS)] == reference
    counter.close()
    assert (d / BLOOM_FILE).is_file() and (d / DB_FILE).is_file()
    return d


def count_with_cache(directory, **kw):
    counter = omnitok.Counter("gpt-4o", cache="on", cache_dir=str(directory), **kw)
    try:
        tokens = [r.tokens for r in counter.count_batch(TEXTS)]
        return tokens, counter.cache.run_stats()
    finally:
        counter.close()


# --- bloom.bin ------------------------------------------------------------------------------------


def _bloom_cases(valid: bytes) -> dict[str, bytes]:
    header = BLOOM_HEADER.size
    slices, per_slice = bloom_shape(5_000_000, 0.01)
    return {
        "zero-length": b"",
        "short header": valid[:17],
        "truncated bits": valid[: header + (len(valid) - header) // 2],
        "one byte too long": valid + b"\0",
        "random bytes": os.urandom(4096),
        "random header, right size": os.urandom(header) + valid[header:],
        # the file: 41 bytes whose header claims 2**40 bits (as slices, then as bits per slice)
        "2**40 slices": struct.pack("<dQQQQ", 0.01, 2**40, 1, 5_000_000, 0) + b"x",
        "2**40 bits per slice": struct.pack("<dQQQQ", 0.01, slices, 2**40, 5_000_000, 0) + b"x",
        "count over capacity": struct.pack("<dQQQQ", 0.01, slices, per_slice, 5_000_000, 2**63) + valid[header:],
        "nan error rate": struct.pack("<dQQQQ", float("nan"), slices, per_slice, 5_000_000, 0) + valid[header:],
    }


CASES = list(_bloom_cases(b"\0" * 100))


@pytest.mark.parametrize("case", CASES)
def test_damaged_bloom_is_a_warning_and_a_rebuild(case, warm_dir, reference, warnings_seen):
    path = warm_dir / BLOOM_FILE
    path.write_bytes(_bloom_cases(path.read_bytes())[case])
    tokens, stats = count_with_cache(warm_dir)
    assert tokens == reference
    assert stats["l2_hits"] == len(TEXTS) and stats["misses"] == 0  # rebuilt from L2: nothing hidden
    assert any("Bloom filter" in w and "damaged" in w and "rebuilding" in w for w in warnings_seen), warnings_seen
    again = TieredCache(CacheSettings(warm_dir))  # the file written back is a sound one
    assert again.bloom.loaded_from_disk and again.bloom.filter.count == len(TEXTS)
    again.close()


def test_bloom_from_other_settings_is_rebuilt_quietly(warm_dir, reference, warnings_seen):
    cache = TieredCache(CacheSettings(warm_dir, bloom_capacity=1000, bloom_error_rate=0.05))
    assert not cache.bloom.loaded_from_disk and cache.bloom.filter.count == len(TEXTS)
    cache.close()
    assert warnings_seen == []


def test_bloom_header_lie_runs_in_bounded_memory(warm_dir, reference):
    """The issue's 41-byte bloom.bin, opened by `omnitok count --cache on` and `cache stats` in a
    child process held to 2 GB of address space: a regression fails here instead of taking the
    machine down, and the child's peak memory must stay small."""
    (warm_dir / BLOOM_FILE).write_bytes(struct.pack("<dQQQQ", 0.01, 2**40, 1, 5_000_000, 0) + b"x")
    corpus = warm_dir.parent / "c.jsonl"
    corpus.write_bytes(b"".join(orjson.dumps({"text": t}) + b"\n" for t in TEXTS))
    script = textwrap.dedent(
        """
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))
        from omnitok.cli.app import main
        try:
            main(sys.argv[1:])
        except SystemExit as e:
            code = e.code
        # VmHWM, not ru_maxrss: Linux carries the forking parent's peak (pytest's, with torch
        # loaded by earlier tests) into a child's ru_maxrss across exec.
        status = open("/proc/self/status").read()
        peak = int(status.split("VmHWM:", 1)[1].split()[0]) // 1024
        sys.stderr.write(f"\\npeak_mb={peak}\\n")
        sys.exit(code)
        """
    )
    env = {**os.environ, "OMNITOK_CACHE_DIR": str(warm_dir)}
    args = ["count", "-m", "gpt-4o", "--cache", "on", "--format", "jsonl", str(corpus)]
    r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, env=env, timeout=300)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert [row["tokens"] for row in map(orjson.loads, r.stdout.splitlines())] == reference
    assert "Bloom filter" in err and "Traceback" not in err
    assert int(err.rsplit("peak_mb=", 1)[1]) < 600, err  # a filter of 2**40 bits would be 128 GiB
    (warm_dir / BLOOM_FILE).write_bytes(struct.pack("<dQQQQ", 0.01, 2**40, 1, 5_000_000, 0) + b"x")
    r = subprocess.run([sys.executable, "-c", script, "cache", "stats", "--json"], capture_output=True, env=env)
    assert r.returncode == 0 and orjson.loads(r.stdout)["l2_size"] == len(TEXTS), r.stderr.decode()


# --- cache.db -------------------------------------------------------------------------------------


def _db_random(d: Path) -> None:
    (d / DB_FILE).write_bytes(os.urandom(8192))


def _db_truncated(d: Path) -> None:
    data = (d / DB_FILE).read_bytes()
    (d / DB_FILE).write_bytes(data[: len(data) // 2])


def _db_garbage_inside(d: Path) -> None:
    data = bytearray((d / DB_FILE).read_bytes())
    data[100:4000] = os.urandom(3900)  # the schema page, past the file header
    (d / DB_FILE).write_bytes(bytes(data))


def _db_wrong_tables(d: Path) -> None:
    (d / DB_FILE).unlink()
    con = sqlite3.connect(d / DB_FILE)
    con.execute("CREATE TABLE Cache (a, b)")
    con.execute("CREATE TABLE Settings (key, value)")
    con.commit()
    con.close()


def _db_tampered_settings(d: Path) -> None:
    con = sqlite3.connect(d / DB_FILE)
    con.execute("UPDATE Settings SET value = 'lots' WHERE key = 'count'")
    con.execute("UPDATE Settings SET value = 1099511627776 WHERE key = 'sqlite_mmap_size'")
    con.execute("INSERT INTO Settings VALUES ('sqlite_temp_store_directory', '/elsewhere')")
    con.commit()
    con.close()


def _db_foreign(d: Path) -> None:
    (d / DB_FILE).unlink(missing_ok=True)
    con = sqlite3.connect(d / DB_FILE)
    con.execute("CREATE TABLE notes (body TEXT)")
    con.execute("INSERT INTO notes VALUES ('mine')")
    con.commit()
    con.close()


DB_CASES = {
    "random bytes": (_db_random, "not a SQLite database"),
    "truncated": (_db_truncated, "damaged"),
    "garbage inside": (_db_garbage_inside, "damaged"),
    "wrong tables": (_db_wrong_tables, "broken Cache table"),
    "tampered settings": (_db_tampered_settings, "broken count"),
    "another program's database": (_db_foreign, "not an omnitok cache"),
}


@pytest.mark.parametrize("case", list(DB_CASES))
def test_damaged_database_means_memory_only_with_right_counts(case, warm_dir, reference, warnings_seen):
    damage, said = DB_CASES[case]
    damage(warm_dir)
    tokens, stats = count_with_cache(warm_dir)
    assert tokens == reference
    assert stats["l2_hits"] == 0 and stats["misses"] == len(TEXTS)
    assert any(said in w and "using memory only" in w for w in warnings_seen), warnings_seen


def _settings_only(d: Path, rows: list[tuple[str, object]]) -> None:
    """cache.db as diskcache leaves it between making its Settings table and its Cache table."""
    d.mkdir(exist_ok=True)
    con = sqlite3.connect(d / DB_FILE)
    con.execute("CREATE TABLE Settings ( key TEXT NOT NULL UNIQUE, value)")
    con.executemany("INSERT INTO Settings VALUES (?, ?)", rows)
    con.commit()
    con.close()


def test_a_cache_another_process_is_creating_is_used_not_refused(tmp_path, reference, warnings_seen):
    """Several processes opening a new cache directory at once: diskcache makes Settings, fills it
    and only then makes Cache, outside one transaction, so one process could find Settings alone.
    It was taken for another program's database (memory only, every write lost: a flaky test of
    three writers showed it); it is a cache being made, which diskcache completes."""
    d = tmp_path / "l2"
    _settings_only(d, [("count", 0), ("size", 0), ("statistics", 0)])
    inspect(d)  # not refused
    tokens, stats = count_with_cache(d)
    assert tokens == reference and not warnings_seen
    tokens, stats = count_with_cache(d)
    assert tokens == reference and stats["l2_hits"] == len(TEXTS)
    # the same table with a setting diskcache never writes is still refused
    d2 = tmp_path / "other"
    _settings_only(d2, [("count", 0), ("owner", "someone")])
    with pytest.raises(Exception, match="unknown setting 'owner'"):
        inspect(d2)


def test_foreign_database_is_never_written(warm_dir, warnings_seen):
    _db_foreign(warm_dir)
    before = (warm_dir / DB_FILE).read_bytes()
    count_with_cache(warm_dir)
    TieredCache(CacheSettings(warm_dir)).clear("l2")
    assert (warm_dir / DB_FILE).read_bytes() == before


def test_value_file_outside_the_cache_is_never_read_or_removed(warm_dir, reference, warnings_seen, tmp_path):
    """A tampered row whose value file is an absolute path (here a canary; /dev/zero would never
    end) is refused on read and left alone when the cache is cleared."""
    canary = tmp_path / "outside.txt"
    canary.write_text("12")
    con = sqlite3.connect(warm_dir / DB_FILE)
    con.execute("UPDATE Cache SET mode = 3, filename = ?, value = NULL WHERE key != ?", (str(canary), STATS_KEY))
    con.execute("UPDATE Cache SET mode = 2, filename = '../../outside.txt' WHERE rowid = 1")
    con.commit()
    con.close()
    (warm_dir / BLOOM_FILE).unlink()
    tokens, stats = count_with_cache(warm_dir)  # storing the recounts replaces the rows' files
    assert tokens == reference and stats["l2_hits"] == 0 and stats["malformed"] == len(TEXTS)
    assert any("outside the cache directory" in w for w in warnings_seen), warnings_seen
    assert canary.read_text() == "12"
    con = sqlite3.connect(warm_dir / DB_FILE)
    con.execute("UPDATE Cache SET mode = 3, filename = ?, value = NULL WHERE key != ?", (str(canary), STATS_KEY))
    con.commit()
    con.close()
    cache = TieredCache(CacheSettings(warm_dir))
    assert cache.clear("l2")["l2"] == len(TEXTS)
    cache.close()
    assert canary.read_text() == "12"


def test_pickled_key_does_not_break_the_bloom_rebuild(warm_dir, reference, warnings_seen):
    import diskcache

    raw = diskcache.Cache(str(warm_dir))  # the default Disk pickles a tuple key
    raw.set(("a", "tuple"), 1)
    raw.close()
    (warm_dir / BLOOM_FILE).unlink()
    tokens, stats = count_with_cache(warm_dir)
    assert tokens == reference and stats["l2_hits"] == len(TEXTS)


# --- values of the wrong type ---------------------------------------------------------------------

WRONG_VALUES = [3.5, -5, "abc", b"\x80\x81", "²", "9" * 30, ""]  # "12" would be a (wrong) count, not foreign


def test_l2_values_of_wrong_types_are_misses(warm_dir, reference, warnings_seen):
    import diskcache

    counter = omnitok.Counter("gpt-4o", cache="on", cache_dir=str(warm_dir))
    keys = [counter.strategy.keys.key(t) for t in TEXTS]
    counter.close()
    raw = diskcache.Cache(str(warm_dir))
    for key, value in zip(keys, WRONG_VALUES, strict=False):
        raw.set(key, value)
    raw.close()
    tokens, stats = count_with_cache(warm_dir)
    assert tokens == reference
    # written without omnitok's checksum (disk.seal): tier errors, as any edited entry
    assert stats["tier_errors"]["l2"] == len(WRONG_VALUES) and stats["l2_hits"] == len(TEXTS) - len(WRONG_VALUES)
    assert any("an entry in l2 failed its checksum" in w for w in warnings_seen)
    tokens, stats = count_with_cache(warm_dir)  # the recounted values were stored over them
    assert tokens == reference and stats["l2_hits"] == len(TEXTS) and stats["tier_errors"]["l2"] == 0


def test_redis_values_of_wrong_types_and_huge_ones(tmp_path, redis_srv, reference, warnings_seen):
    counter = omnitok.Counter("gpt-4o", cache="on", cache_dir="none", l3_url=redis_srv.url)
    keys = ["omnitok:v1:" + counter.strategy.keys.key(t) for t in TEXTS]
    counter.close()
    client = redis_srv.client()
    client.hset(keys[0], "a", "1")  # another type
    client.rpush(keys[1], "1")
    client.set(keys[2], b"7" * (20 * 2**20))  # 20 MB of digits: never sent to us
    client.set(keys[3], "9" * 40)  # too long for a count
    client.set(keys[4], "-3")
    client.set(keys[5], " 12")
    client.set(keys[6], "1e3")
    client.set(keys[7], b"\xff\xfe")
    tokens, stats = count_with_cache("none", l3_url=redis_srv.url)
    assert tokens == reference
    assert stats["malformed"] == 8 and stats["l3_hits"] == 0
    assert any("malformed value in l3" in w for w in warnings_seen)
    # the recounted values were stored over them (SET replaces a key of any type)
    tokens, stats = count_with_cache("none", l3_url=redis_srv.url)
    assert tokens == reference and stats["l3_hits"] == len(TEXTS) and stats["malformed"] == 0


def test_redis_reads_without_scripting(tmp_path, redis_srv, reference, warnings_seen):
    counter = omnitok.Counter("gpt-4o", cache="on", cache_dir="none", l3_url=redis_srv.url)
    counter.count_batch(TEXTS)
    key = "omnitok:v1:" + counter.strategy.keys.key(TEXTS[0])
    redis_srv.client().set(key, b"5" * 100)
    counter.cache.l1.clear()
    counter.cache.l3.scripting = False  # as where EVAL is not allowed: GETRANGE per key
    assert [r.tokens for r in counter.count_batch(TEXTS)] == reference
    assert counter.cache.run_stats()["malformed"] == 1
    counter.close()


# --- stored statistics ----------------------------------------------------------------------------

STATS_CASES = ["not json", "[1, 2]", '{"misses": "many"}', '{"misses": -4}', '{"misses": 1e400}', "[" * 100_000]


@pytest.mark.parametrize("value", STATS_CASES, ids=range(len(STATS_CASES)))
def test_damaged_l2_statistics_start_afresh(value, warm_dir, warnings_seen):
    import diskcache

    raw = diskcache.Cache(str(warm_dir))
    raw.set(STATS_KEY, value)
    raw.close()
    cache = TieredCache(CacheSettings(warm_dir))
    assert cache.stored_stats()["l2"] == {}
    cache.get_many(["t:none"])
    cache.close()
    assert any("statistics stored in L2 are damaged" in w for w in warnings_seen)
    again = TieredCache(CacheSettings(warm_dir))
    assert again.stored_stats()["l2"]["misses"] == 1  # rewritten whole
    again.close()


def test_pickled_l2_statistics_are_never_unpickled(warm_dir, tmp_path):
    import diskcache

    from .test_cache import Boom

    canary = tmp_path / "canary"
    raw = diskcache.Cache(str(warm_dir))
    raw.set(STATS_KEY, Boom(str(canary)))
    raw.close()
    cache = TieredCache(CacheSettings(warm_dir))
    assert cache.stored_stats()["l2"] == {}
    assert cache.clear("l2")["l2"] == len(TEXTS)
    cache.close()
    assert not canary.exists()


def test_damaged_l3_statistics(tmp_path, redis_srv, warnings_seen):
    client = redis_srv.client()
    client.set("omnitok:v1:stats", "not a hash")
    cache = TieredCache(CacheSettings(None, l3_url=redis_srv.url))
    assert cache.stored_stats()["l3"] == {} and cache.l3 is not None
    cache.get_many(["t:x"])
    cache.close()
    assert client.hget("omnitok:v1:stats", "misses") == b"1"  # started afresh
    client.hset("omnitok:v1:stats", mapping={"misses": "lots", "l1_hits": "3"})
    cache = TieredCache(CacheSettings(None, l3_url=redis_srv.url))
    assert cache.stored_stats()["l3"] == {"l1_hits": 3}
    cache.get_many(["t:x"])
    cache.close()  # HINCRBY on "lots" fails: the hash is started afresh, not the run
    assert client.hget("omnitok:v1:stats", "misses") == b"1"
    assert any("L3" in w and "damaged" in w for w in warnings_seen)


# --- the commands, through the console script ---------------------------------------------------


def omnitok_cli(*args: str, env: dict | None = None, tmp: Path, stdin: bytes = b"hi") -> subprocess.CompletedProcess:
    base = {"OMNITOK_CONFIG": None, "L3_CACHE_URL": None}  # None: unset
    base.update(XDG_CONFIG_HOME=str(tmp / "xdg"), OMNITOK_CACHE_DIR=str(tmp / "default-cache"))
    r = completed(args, console_omnitok(*args, stdin=stdin, env={**base, **(env or {})}, timeout=300))
    assert "Traceback" not in r.err, r.err
    return r


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_bytes(b"".join(orjson.dumps({"text": t}) + b"\n" for t in TEXTS[:10]))
    return str(p)


def test_clear_l3_with_redis_down_fails(tmp_path):
    url = f"redis://user:{PASSWORD}@127.0.0.1:{free_port()}/0"
    r = omnitok_cli("cache", "clear", "--tier", "l3", "--yes", "--l3-url", url, tmp=tmp_path)
    assert r.returncode == 1
    assert "omnitok: error: cache clear: l3 not cleared: L3 cache redis://user:***@127.0.0.1:" in r.err
    assert "unreachable (ConnectionError" in r.err
    assert PASSWORD not in r.err and PASSWORD.encode() not in r.stdout
    assert orjson.loads(r.stdout)["cleared"] == {}
    r = omnitok_cli("cache", "clear", "--tier", "l3", "--yes", tmp=tmp_path)  # none configured
    assert r.returncode == 2 and "--tier l3: no L3 is configured" in r.err


def test_stats_and_warm_with_redis_down_fail(tmp_path, corpus):
    url = f"redis://127.0.0.1:{free_port()}/0"
    r = omnitok_cli("cache", "stats", "--json", "--l3-url", url, tmp=tmp_path)
    assert r.returncode == 1 and "cache stats: l3 unreadable: L3 cache" in r.err
    assert "l3" in orjson.loads(r.stdout)["failed"]
    r = omnitok_cli("cache", "warm", "-m", "gpt-4o", "--l3-url", url, corpus, tmp=tmp_path)
    assert r.returncode == 1 and "cache warm: l3 not warmed: L3 cache" in r.err and r.stdout == b""


@pytest.mark.parametrize("damage", [_db_random, _db_truncated, _db_wrong_tables], ids=lambda f: f.__name__)
def test_commands_on_a_damaged_database(damage, tmp_path, corpus):
    d = tmp_path / "l2"
    r = omnitok_cli("cache", "warm", "-m", "gpt-4o", "--cache-dir", str(d), corpus, tmp=tmp_path)
    assert r.returncode == 0 and orjson.loads(r.stdout)["stored"] == 10
    damage(d)
    r = omnitok_cli("cache", "verify", "-m", "gpt-4o", "--cache-dir", str(d), corpus, tmp=tmp_path)
    assert r.returncode == 1 and "omnitok: error: cache verify: l2 not verified: " in r.err
    assert str(d / DB_FILE) in r.err
    r = omnitok_cli("cache", "stats", "--json", "--cache-dir", str(d), tmp=tmp_path)
    assert r.returncode == 1 and "cache stats: l2 unreadable: " in r.err
    r = omnitok_cli("cache", "clear", "-m", "gpt-4o", "--yes", "--cache-dir", str(d), tmp=tmp_path)
    assert r.returncode == 1 and "cache clear: l2 not cleared: " in r.err  # per model: cannot, says so
    r = omnitok_cli("cache", "clear", "--yes", "--cache-dir", str(d), tmp=tmp_path)
    assert r.returncode == 0, r.err
    out = orjson.loads(r.stdout)
    assert out["cleared"]["l2"] == 0 and "removed it and made a new one" in out["rebuilt"]["l2"]
    inspect(d)  # a sound, empty cache now
    r = omnitok_cli("cache", "verify", "-m", "gpt-4o", "--cache-dir", str(d), corpus, tmp=tmp_path)
    assert r.returncode == 0 and orjson.loads(r.stdout)["l2_integrity"] == "ok"
    r = omnitok_cli("cache", "warm", "-m", "gpt-4o", "--cache-dir", str(d), corpus, tmp=tmp_path)
    assert r.returncode == 0 and orjson.loads(r.stdout)["stored"] == 10


def test_verify_finds_damage_quick_check_sees(tmp_path, corpus):
    """A database that opens and answers lookups but has a damaged index: quick_check finds it."""
    d = tmp_path / "l2"
    omnitok_cli("cache", "warm", "-m", "gpt-4o", "--cache-dir", str(d), corpus, tmp=tmp_path)
    con = sqlite3.connect(d / DB_FILE)
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'Cache_expire_time'").fetchone()[0]
    page = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    with open(d / DB_FILE, "r+b") as f:  # wreck the header of the expire-time index's root page
        f.seek((root - 1) * page)
        f.write(b"\x00" + os.urandom(11))
    r = omnitok_cli("cache", "verify", "-m", "gpt-4o", "--cache-dir", str(d), corpus, tmp=tmp_path)
    assert r.returncode == 1 and "cache verify: l2 not verified: " in r.err and "damaged" in r.err


def test_clear_leaves_another_programs_database_alone(tmp_path):
    d = tmp_path / "l2"
    d.mkdir()
    _db_foreign(d)
    before = (d / DB_FILE).read_bytes()
    r = omnitok_cli("cache", "clear", "--yes", "--cache-dir", str(d), tmp=tmp_path)
    assert r.returncode == 1 and "l2 not cleared" in r.err and "is not an omnitok cache" in r.err
    assert (d / DB_FILE).read_bytes() == before


def _unwritable_dir() -> str | None:
    """An existing directory where even root cannot create a file (sysfs, procfs)."""
    for candidate in ("/sys/kernel", "/proc/self"):
        if os.path.isdir(candidate):
            try:
                with open(os.path.join(candidate, "omnitok-probe"), "w"):
                    pass
            except OSError:
                return candidate
            os.unlink(os.path.join(candidate, "omnitok-probe"))
    return None


def test_warm_on_a_read_only_disk_cache_fails(tmp_path, corpus):
    readonly = _unwritable_dir()
    if readonly is None:
        pytest.skip("no directory here that refuses writes to root")
    r = omnitok_cli("cache", "warm", "-m", "gpt-4o", "--cache-dir", readonly, corpus, tmp=tmp_path)
    assert r.returncode == 1 and r.stdout == b""
    assert f"omnitok: error: cache warm: l2 not warmed: the disk cache at {readonly} is unusable" in r.err
    blocker = tmp_path / "a-file"
    blocker.write_text("x")  # a cache dir below a file: cannot be made
    r = omnitok_cli("cache", "warm", "-m", "gpt-4o", "--cache-dir", str(blocker / "sub"), corpus, tmp=tmp_path)
    assert r.returncode == 1 and "l2 not warmed" in r.err


def test_warm_with_nowhere_to_keep_counts_is_a_usage_error(tmp_path, corpus):
    r = omnitok_cli("cache", "warm", "-m", "gpt-4o", "--cache-dir", "none", corpus, tmp=tmp_path)
    assert r.returncode == 2 and "nothing to warm" in r.err


def test_malformed_l3_url_is_a_usage_error_with_the_password_hidden(tmp_path):
    bad = f"redis://u:{PASSWORD}@[::1:6379/0"
    for args in (
        ("count", "-m", "gpt-4o", "--cache", "on", "--l3-url", bad),
        ("cache", "stats", "--l3-url", bad),
        ("cache", "path", "--l3-url", bad),
    ):
        r = omnitok_cli(*args, tmp=tmp_path)
        assert r.returncode == 2, r.err
        assert (
            r.err
            == "omnitok: error: --l3-url: must be a valid URL, not 'redis://u:***@[::1:6379/0' (Invalid IPv6 URL)\n"
        )
    r = omnitok_cli("cache", "path", env={"L3_CACHE_URL": f"http://u:{PASSWORD}@h/0"}, tmp=tmp_path)
    assert r.returncode == 2 and r.err.startswith("omnitok: error: L3_CACHE_URL: must be a redis://")
    assert PASSWORD not in r.err


def test_redact_url():
    from omnitok import config
    from omnitok.cache import redact_url

    assert redact_url is config.redact_url  # one implementation, re-exported
    cases = {
        "redis://user:pw@127.0.0.1:6379/0": "redis://user:***@127.0.0.1:6379/0",
        "redis://u:pw@[::1:6379/0": "redis://u:***@[::1:6379/0",
        "rediss://:pw@h:6380": "rediss://:***@h:6380",
        "redis://u:pa/ss@host/0": "redis://u:***@host/0",
        "redis://u:p@ss@host/0": "redis://u:***@host/0",
        "unix://u:pw@/run/redis.sock?db=0&password=pw": "unix://u:***@/run/redis.sock?db=0&password=***",
        "redis://host:6379/0": "redis://host:6379/0",
        "redis://user@host/0": "redis://***@host/0",  # userinfo without a password may be a token
        "https://TOKENTOKEN@h/x?api_key=k&key=k2": "https://***@h/x?api_key=***&key=***",
    }
    for url, shown in cases.items():
        assert redact_url(url) == shown
    assert "pw" not in json.dumps([redact_url(u) for u in cases])


def test_copying_a_cache_keeps_working(warm_dir, reference, tmp_path):
    """A sound cache copied elsewhere (as a backup restore would) passes inspection."""
    copy = tmp_path / "copy"
    shutil.copytree(warm_dir, copy)
    tokens, stats = count_with_cache(copy)
    assert tokens == reference and stats["l2_hits"] == len(TEXTS)
