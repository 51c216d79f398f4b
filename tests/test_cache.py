"""The three-tier cache against a real redis-server and a real diskcache directory."""

import multiprocessing
import pickle
import time

import orjson
import pytest

import omnitok
from omnitok.cache import CacheSettings, TieredCache
from omnitok.cache.keys import KeyMaker
from omnitok.cache.memory import MemoryTier

from .redis_server import RedisServer


@pytest.fixture
def redis_srv(tmp_path):
    server = RedisServer(tmp_path)
    yield server
    server.stop()


def settings(tmp_path, **kw):
    return CacheSettings(tmp_path / "l2", **kw)


def test_keys_never_shared_across_tokenizers_or_options():
    a = KeyMaker("tiktoken:o200k_base:abc")
    assert a.key("hello") == KeyMaker("tiktoken:o200k_base:abc").key("hello")
    assert a.key("hello") != KeyMaker("tiktoken:cl100k_base:def").key("hello")
    assert KeyMaker("hf:x", "special=1").key("hello") != KeyMaker("hf:x", "special=0").key("hello")
    assert a.key("hello") != a.key("hello ")
    assert KeyMaker("f", algorithm="sha256").key("x") != KeyMaker("f", algorithm="blake3").key("x")
    assert a.key("hello").startswith(a.tag + ":") and len(a.key("hello").split(":")[1]) == 64


def test_l1_bound_and_ttl(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    l1 = MemoryTier(max_entries=3, ttl=10)
    l1.set_many({"a": 1, "b": 2, "c": 3})
    l1.get_many(["a"])  # a is now most recent
    l1.set_many({"d": 4})
    assert l1.get_many(["a", "b", "c", "d"]) == [1, None, 3, 4]
    now[0] += 11
    assert l1.get_many(["a", "c", "d"]) == [None, None, None] and l1.size() == 0


def test_hits_per_tier_and_promotion(tmp_path, redis_srv):
    cache = TieredCache(settings(tmp_path, l3_url=redis_srv.url))
    cache.set_many({"t:k1": 5})
    redis_srv.client().set("omnitok:v1:t:k2", "7")  # only in L3 (another host wrote it)
    cache.bloom = None  # L3-only keys are not in this host's filter
    assert cache.get_many(["t:k1", "t:k2", "t:k3"]) == [5, 7, None]
    s = cache.run_stats()
    assert (s["l1_hits"], s["l2_hits"], s["l3_hits"], s["misses"]) == (1, 0, 1, 1)
    assert cache.l2.get_many(["t:k2"]) == [7] and cache.l1.get_many(["t:k2"]) == [7]  # promoted
    cache.close()
    again = TieredCache(settings(tmp_path, l3_url=redis_srv.url))  # a new process: L1 empty
    assert again.get_many(["t:k1", "t:k2"]) == [5, 7]
    s = again.run_stats()
    assert (s["l1_hits"], s["l2_hits"], s["l3_hits"]) == (0, 2, 0)
    assert again.get_many(["t:k1"]) == [5] and again.run_stats()["l1_hits"] == 1
    again.close()


def test_l3_ttl(tmp_path, redis_srv):
    cache = TieredCache(settings(tmp_path, l3_url=redis_srv.url, l3_ttl=1))
    cache.set_many({"t:ttl": 3})
    assert 0 < redis_srv.client().ttl("omnitok:v1:t:ttl") <= 1
    cache.close()


def test_l2_eviction_at_size_limit(tmp_path):
    cache = TieredCache(settings(tmp_path, l2_size_mb=1, bloom=False))
    big = "x" * 4000
    for start in range(0, 3000, 100):
        cache.l2.set_many({f"t:{i}": big + str(i) for i in range(start, start + 100)})
    assert cache.l2.volume_bytes() < 2_000_000  # 12 MB written into a 1 MB cache
    assert 0 < cache.l2.size() < 1000
    assert cache.l2.get_many(["t:2999"]) == [big + "2999"]  # the newest survive
    cache.close()


def test_redis_killed_mid_run_counts_stay_right(tmp_path, redis_srv, warnings_seen, ref_o200k):
    texts = [f"text number {i} " * (i % 7 + 1) for i in range(60)]
    counter = omnitok.Counter("gpt-4o", cache="on", cache_dir=str(tmp_path / "l2"), l3_url=redis_srv.url)
    first = [r.tokens for r in counter.count_batch(texts[:30])]
    redis_srv.stop()
    rest = [r.tokens for r in counter.count_batch(texts[30:])] + [r.tokens for r in counter.count_batch(texts[:30])]
    counter.close()
    assert first + rest == [len(ref_o200k.encode_ordinary(t)) for t in texts + texts[:30]]
    l3 = [w for w in warnings_seen if "L3" in w]
    assert len(l3) == 1 and "carrying on with L1+L2" in l3[0]


def test_l3_unreachable_at_start(tmp_path, warnings_seen):
    from .redis_server import free_port

    cache = TieredCache(settings(tmp_path, l3_url=f"redis://127.0.0.1:{free_port()}/0", l3_timeout=0.5))
    # kept, down: reconnected in the background once it answers (tests/security/test_shared_state.py)
    assert not cache.l3_in_use() and cache.l2 is not None
    assert cache.get_many(["t:k"]) == [None] and cache.run_stats()["tier_errors"]["l3"] == 1
    assert len(warnings_seen) == 1 and "unreachable" in warnings_seen[0]
    cache.close()


def test_tampered_redis_value_is_a_miss(tmp_path, redis_srv, warnings_seen):
    cache = TieredCache(settings(tmp_path, l3_url=redis_srv.url, bloom=False))
    redis_srv.client().set("omnitok:v1:t:bad", b"\x80not-a-number")
    redis_srv.client().set("omnitok:v1:t:neg", "-5")
    assert cache.get_many(["t:bad", "t:neg"]) == [None, None]
    assert cache.run_stats()["malformed"] == 2 and any("malformed value in l3" in w for w in warnings_seen)
    cache.close()


class Boom:
    """Unpickling this would create a file: proof that nothing was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_l2_value_is_never_unpickled(tmp_path, warnings_seen):
    import diskcache

    canary = tmp_path / "canary"
    cache = TieredCache(settings(tmp_path, bloom=False))
    cache.close()
    raw = diskcache.Cache(str(tmp_path / "l2"))  # the default Disk pickles objects
    raw.set("t:evil", Boom(str(canary)))
    raw.set("t:list", [1, 2])
    raw.close()
    assert pickle.dumps(Boom(str(canary)))  # the payload is real
    cache = TieredCache(settings(tmp_path, bloom=False))
    assert cache.get_many(["t:evil", "t:list"]) == [None, None]
    assert not canary.exists()
    assert any("never unpickles" in w for w in warnings_seen)
    cache.close()


def test_unusable_l2_means_memory_only(tmp_path, warnings_seen, ref_o200k):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    counter = omnitok.Counter("gpt-4o", cache="on", cache_dir=str(blocker / "sub"))
    n = len(ref_o200k.encode_ordinary("a b c"))
    assert [r.tokens for r in counter.count_batch(["a b c"])] == [n]
    assert [r.tokens for r in counter.count_batch(["a b c"])] == [n]
    assert counter.cache.l2 is None and any("using memory only" in w for w in warnings_seen)
    assert counter.cache.run_stats()["l1_hits"] == 1
    counter.close()


def _writer(directory: str, start: int, n: int) -> None:
    cache = TieredCache(CacheSettings(__import__("pathlib").Path(directory)))
    for i in range(start, start + n, 50):
        cache.set_many({f"t:{j}": j for j in range(i, i + 50)})
    cache.close()


def test_several_processes_write_l2(tmp_path):
    directory = str(tmp_path / "l2")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(directory, k * 1000, 1000)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = TieredCache(CacheSettings(tmp_path / "l2"))
    keys = [f"t:{j}" for j in range(3000)]
    assert cache.get_many(keys) == list(range(3000))  # every write survived, the Bloom filter merged
    cache.close()


def test_bloom_saves_round_trips(tmp_path):
    cache = TieredCache(settings(tmp_path))
    calls = []
    real = cache.l2.get_many
    cache.l2.get_many = lambda keys: calls.append(len(keys)) or real(keys)
    cache.set_many({f"t:{i}": i for i in range(100)})
    cache.l1.clear()
    assert cache.get_many([f"t:{i}" for i in range(200)]) == list(range(100)) + [None] * 100
    s = cache.run_stats()
    assert calls == [100]  # the 100 never-seen keys never reached L2 (allowing for the 1% false positives)
    assert s["bloom"]["skips"] == 100 - (calls[0] - 100) and s["bloom"]["false_positive_rate"] == 0.01
    cache.close()
    again = TieredCache(settings(tmp_path))  # the filter was persisted with L2
    assert again.bloom.loaded_from_disk and "t:5" in again.bloom
    again.close()
    off = TieredCache(settings(tmp_path, bloom=False))
    calls_off = []
    real_off = off.l2.get_many
    off.l2.get_many = lambda keys: calls_off.append(len(keys)) or real_off(keys)
    off.get_many([f"t:{i}" for i in range(100, 200)])
    assert calls_off == [100]
    off.close()


# --- the CLI -----------------------------------------------------------------------------------


def corpus(tmp_path, n=40):
    p = tmp_path / "c.jsonl"
    p.write_bytes(b"".join(orjson.dumps({"text": f"record {i} " * (i % 5 + 1)}) + b"\n" for i in range(n)))
    return str(p)


def test_warm_then_count_hits_l2_and_stats_persist(cli, tmp_path):
    f = corpus(tmp_path)
    d = str(tmp_path / "cli-cache")
    r = cli("cache", "warm", "-m", "gpt-4o", "--cache-dir", d, f)
    assert r.code == 0 and orjson.loads(r.out) == {"records": 40, "errors": 0, "stored": 40, "already_cached": 0}
    r = cli("count", "-m", "gpt-4o", "--cache", "on", "--cache-dir", d, "--summary", "--format", "json", f)
    s = orjson.loads(r.out)["cache"]
    assert (s["l2_hits"], s["misses"], s["hit_rate"]) == (40, 0, 100.0)
    r = cli("cache", "stats", "--json", "--cache-dir", d)
    st = orjson.loads(r.out)
    assert (st["l2_size"], st["l2_hits"], st["misses"], st["hit_rate"]) == (40, 40, 40, 50.0)
    assert st["counts_recorded_in"] == "l2" and st["l2_dir"] == d


def test_no_cache_and_auto_policy_for_local(cli, tmp_path):
    f = corpus(tmp_path)
    d = tmp_path / "auto-cache"
    r = cli("count", "-m", "gpt-4o", "--cache-dir", str(d), "--summary", "--format", "json", f)
    assert "cache" not in orjson.loads(r.out)  # auto: a local engine is cheaper than a lookup
    r = cli(
        "count",
        "-m",
        "gpt-4o",
        "--cache",
        "on",
        "--no-cache",
        "--cache-dir",
        str(d),
        "--summary",
        "--format",
        "json",
        f,
    )
    assert "cache" not in orjson.loads(r.out)


def test_clear_per_model_and_all(cli, tmp_path):
    f = corpus(tmp_path, 10)
    d = str(tmp_path / "clear-cache")
    cli("cache", "warm", "-m", "gpt-4o", "--cache-dir", d, f)
    # gpt-4's entries written by gigatoken; `clear -m` takes the model's tags from pybpe (a
    # fingerprint names the vocabulary and the rule, not the engine): the same keys
    r = cli("count", "-m", "gpt-4", "--engine", "gigatoken", "--cache", "on", "--cache-dir", d, f)
    assert r.code == 0 and {row["engine"] for row in r.jsonl()} == {"gigatoken"}
    r = cli("cache", "clear", "--cache-dir", d, "-m", "gpt-4")
    assert r.code == 2 and "without --yes" in r.err
    r = cli("cache", "clear", "--cache-dir", d, "-m", "gpt-4", "--yes")
    assert orjson.loads(r.out)["cleared"]["l2"] == 10
    assert orjson.loads(cli("cache", "stats", "--json", "--cache-dir", d).out)["l2_size"] == 10
    r = cli("cache", "clear", "--cache-dir", d, "--yes")
    assert orjson.loads(r.out)["cleared"]["l2"] == 10
    assert orjson.loads(cli("cache", "stats", "--json", "--cache-dir", d).out)["l2_size"] == 0


def test_verify_finds_a_wrong_entry(cli, tmp_path):
    f = corpus(tmp_path, 10)
    d = str(tmp_path / "verify-cache")
    cli("cache", "warm", "-m", "gpt-4o", "--cache-dir", d, f)
    r = cli("cache", "verify", "-m", "gpt-4o", "--cache-dir", d, f)
    assert r.code == 0 and orjson.loads(r.out)["mismatched"] == 0 and orjson.loads(r.out)["cached"] == 10
    import diskcache

    from omnitok.cache.disk import seal

    raw = diskcache.Cache(d)
    key = next(k for k in raw.iterkeys() if isinstance(k, str) and not k.startswith("__"))
    raw.set(key, 999_999)  # without its checksum: never read as a count (tests/security/test_shared_state.py)
    r = cli("cache", "verify", "-m", "gpt-4o", "--cache-dir", d, f)
    # damage found, and said: a count reads it as a miss, but verify is there to find it
    assert r.code == 1 and orjson.loads(r.out) | {"examples": []} == {
        "checked": 10, "cached": 9, "mismatched": 0, "damaged": 1, "examples": [], "l2_integrity": "ok",
    }  # fmt: skip
    assert "an entry in l2 failed its checksum" in r.err
    raw.set(key, seal(key, 999_999))  # a wrong count stored as omnitok stores it (an older tokenizer's, say)
    raw.close()
    r = cli("cache", "verify", "-m", "gpt-4o", "--cache-dir", d, f)
    assert r.code == 1 and orjson.loads(r.out)["mismatched"] == 1


def test_path_hides_password(cli, tmp_path):
    r = cli("cache", "path", "--cache-dir", str(tmp_path / "p"), "--l3-url", "redis://user:s3cret@127.0.0.1:6379/0")
    assert r.text.splitlines() == [str(tmp_path / "p"), "redis://user:***@127.0.0.1:6379/0"]
