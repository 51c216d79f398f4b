"""A runtime's lent Counters and Compressors share one cache per settings (omnitok.cache.shared):
its memory does not grow with the model ids callers choose, and its statistics stay exact when
objects are retired, closed, or used from several threads at once."""

from __future__ import annotations

import threading

import omnitok
from omnitok.cache import CacheSettings, TieredCache
from omnitok.runtime import Runtime


def _ids(n: int) -> list[str]:
    return [f"claude-3-5-sonnet-2024{i:04d}" for i in range(n)]  # distinct ids, one pattern


def test_every_counter_of_a_runtime_uses_one_cache_whatever_the_model_ids(tmp_path):
    rt = Runtime(threads=2)
    options = {"cache": "on", "cache_dir": str(tmp_path)}
    try:
        for model in _ids(12):
            rt.count_batch(["hello world"], model, options)
        objects = rt.counters.objects()
        assert len(objects) == 12
        # each its own view (statistics), all of one L1, one L2 connection, one Bloom filter
        assert len({id(c.cache) for c in objects}) == 12 and all(c.cache.shared for c in objects)
        for tier in ("l1", "l2", "bloom"):
            assert len({id(getattr(c.cache, tier)) for c in objects}) == 1, tier
        stats = rt.cache_stats()
        # The ids share one rule (claude-3's estimate): one key, counted once, found 11 times.
        assert (stats["misses"], stats["l1_hits"], stats["l1_size"], stats["l2_size"]) == (1, 11, 1, 1)
    finally:
        rt.close()


def test_statistics_stay_exact_when_objects_are_retired_and_when_the_runtime_closes(tmp_path):
    rt = Runtime(threads=2)
    rt.counters.max_keys = 2  # the third model evicts (closes) the least recently used counter
    options = {"cache": "on", "cache_dir": str(tmp_path)}
    models = _ids(3)
    for model in models:
        rt.count_batch(["one", "two"], model, options)
    assert len(rt.counters.objects()) == 2
    for model in models:
        rt.count_batch(["one"], model, options)  # L1 hits, the evicted model's included
    stats = rt.cache_stats()
    assert (stats["misses"], stats["l1_hits"], stats["total_requests"]) == (2, 7, 9)
    rt.close()  # the shared cache closes once: its statistics are added to L2's once
    stored = TieredCache(CacheSettings(tmp_path)).stored_stats()["l2"]
    assert (stored["misses"], stored["l1_hits"]) == (2, 7)
    rt.count_batch(["one"], models[0], options)  # a closed runtime starts again, its L2 still there
    assert rt.cache_stats()["l2_hits"] == 1
    rt.close()


def test_a_compressor_and_a_counter_with_the_same_settings_share_the_cache(tmp_path):
    rt = Runtime(threads=2)
    try:
        rt.count_batch(["hello"], "gpt-4o", {"cache": "on", "cache_dir": str(tmp_path)})
        text = "First sentence here. " * 40
        rt.compress(text, None, "gpt-4o", {"ratio": 0.5}, {"method": "bm25", "cache": "on", "cache_dir": str(tmp_path)})
        (counter,) = rt.counters.objects()
        (compressor,) = rt.compressors.objects()
        assert compressor._tiered.l1 is counter.cache.l1 and compressor._tiered.l2 is counter.cache.l2
        assert compressor._tiered is not counter.cache  # a view each: statistics apart
        assert rt.cache_stats()["l1_size"] == counter.cache.l1.size() >= 2  # the count's and the compression's, once
    finally:
        rt.close()


def test_one_shared_cache_used_by_many_threads_at_once_keeps_every_count_and_statistic(tmp_path):
    rt = Runtime(threads=8)
    options = {"cache": "on", "cache_dir": str(tmp_path)}
    texts = [f"text number {i}" for i in range(40)]
    expected = [r.tokens for r in omnitok.Counter("gpt-4o").count_batch(texts)]
    errors: list[BaseException] = []
    results: list[list[int]] = []

    def work(model: str) -> None:
        try:
            for _ in range(5):
                results.append([r.tokens for r in rt.count_batch(texts, model, options)])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(m,)) for m in ("gpt-4o", "gpt-4o-mini", "gpt-4.1") * 2]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert results == [expected] * 30
        stats = rt.cache_stats()
        assert stats["total_requests"] == 30 * 40
        assert stats["misses"] + stats["l1_hits"] + stats["l2_hits"] == 30 * 40
        assert stats["l1_size"] == 40  # one entry per (rule, text): the three ids count by one rule
    finally:
        rt.close()


def test_leases_racing_evictions_neither_lend_a_closed_counter_nor_lose_a_statistic(tmp_path):
    """Pool.lease found its slot, let the lock go, then took a permit: in between another lease's
    eviction could drop the slot (it looked idle) and close its objects, so a closed Counter was
    lent, or a new one made in a slot no longer kept; their cache statistics were lost (an
    adversarial run: 4971-5037 of 5400 lookups reported)."""
    import random

    rt = Runtime(threads=2)
    rt.counters.max_keys = 2
    options = {"cache": "on", "cache_dir": str(tmp_path)}
    models = ["gpt-4o", "gpt-4o-mini", "o3", "gpt-4", "gpt-3.5-turbo"]
    texts = [f"t {j} " * (1 + j % 5) for j in range(100)]
    closed: list[str] = []

    def work(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(150):
            model = rnd.choice(models)
            with rt.counter_lease(model, **options) as counter:
                if counter.cache is None:
                    closed.append(model)
                counter.count_batch(rnd.sample(texts, 3))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert closed == []
    assert rt.cache_stats()["total_requests"] == 6 * 150 * 3
    rt.close()
    stored = TieredCache(CacheSettings(tmp_path)).stored_stats()["l2"]
    assert stored["l1_hits"] + stored["l2_hits"] + stored["misses"] == 6 * 150 * 3


def test_a_retired_counter_writes_no_tier_on_the_requests_thread(tmp_path):
    """A view's close (an evicted or retired Counter, on whatever request asked for a new model)
    hands its statistics to the shared cache in memory: writing them to L2 there waited on L2's
    write lock (another process's `cache clear`: the whole time it was held) or on L3's timeout,
    for a request that was an L1 hit. They reach L2 once, when the runtime closes."""
    from omnitok.cache.disk import STATS_KEY

    rt = Runtime(threads=2)
    rt.counters.max_keys = 1
    options = {"cache": "on", "cache_dir": str(tmp_path)}
    rt.count_batch(["one"], "gpt-4o", options)
    rt.count_batch(["one"], "gpt-4", options)  # evicts gpt-4o's counter: its view is closed
    assert len(rt.counters.objects()) == 1
    (counter,) = rt.counters.objects()
    assert counter.cache.l2.cache.get(STATS_KEY) is None  # nothing written yet
    assert rt.cache_stats()["total_requests"] == 2  # and nothing lost
    rt.close()
    stored = TieredCache(CacheSettings(tmp_path)).stored_stats()["l2"]
    assert stored["misses"] == 2


def test_a_shared_cache_whose_l2_failed_to_open_is_opened_again_later(tmp_path, monkeypatch, warnings_seen):
    """Shared for the runtime's life, a cache whose L2 could not be opened at first use (here: its
    directory is a file for a moment) had stayed memory-only until the runtime closed."""
    from omnitok.cache import shared

    where = tmp_path / "l2"
    where.write_text("not a directory yet")
    rt = Runtime(threads=1)
    options = {"cache": "on", "cache_dir": str(where)}
    try:
        rt.count_batch(["one"], "gpt-4o", options)
        (first,) = rt.counters.objects()
        assert first.cache.l2 is None and any("unusable" in w for w in warnings_seen)
        where.unlink()
        where.mkdir()
        monkeypatch.setattr(shared, "RETRY_S", 0.0)
        rt.count_batch(["two"], "gpt-4", options)  # a new Counter: the next user of the settings
        second = next(c for c in rt.counters.objects() if c is not first)
        assert second.cache.l2 is not None and first.cache.l2 is None
        assert rt.cache_stats()["total_requests"] == 2
    finally:
        rt.close()
    # what was counted with L2 is saved there, once; the memory-only cache had nowhere to save
    assert TieredCache(CacheSettings(where)).stored_stats()["l2"]["misses"] == 1
