"""forks.release_free_memory (the pipeline's): the C heap's free pages go back to the kernel before the count's
processes are forked (a tokenizer's load leaves tens of MB freed there), so that the children's
allocations do not copy inherited pages. It frees nothing in use: every count is the same with
it and without it, and with it each fork comes after it."""

from __future__ import annotations

import random
import sys

import pytest

from omnitok import forks, pipeline
from omnitok.io import shards

from .hf_assets import TOKENIZERS

# Texts the fast engine leaves to the reference engine (code points unassigned in Unicode 14:
# U+1C8A, U+A7CD, U+10D70, U+323B0), among common ones: the workers defer them, the reference
# process counts them, after the trim.
WORDS = ["alpha", "βήτα", "日本語", "😀", "naïve", "<|begin_of_text|>", "\u1c8a", "\ua7cd", "\U00010d70", "\U000323b0"]


@pytest.fixture
def small_shards(monkeypatch):
    monkeypatch.setattr(shards, "SHARD_MIN", 512)
    monkeypatch.setattr(shards, "SHARD_MAX", 2048)
    monkeypatch.setattr(pipeline, "SHARD_WORKER_TASKS", 16)


def _corpus(path, n: int = 200) -> None:
    import orjson

    rng = random.Random(31)
    lines = [
        orjson.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 30))), "id": i})
        for i in range(n)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_it_looks_up_malloc_trim_once_and_calls_it(monkeypatch):
    monkeypatch.setattr(forks, "_MALLOC_TRIM", None)
    forks.release_free_memory()
    found = forks._MALLOC_TRIM
    if sys.platform.startswith("linux") and sys.implementation.name == "cpython":
        import platform

        if platform.libc_ver()[0] == "glibc":
            assert callable(found)
    calls = []
    if callable(found):
        monkeypatch.setattr(forks, "_MALLOC_TRIM", lambda pad: calls.append(pad) or 1)
        forks.release_free_memory()
        assert calls == [0]
    else:
        assert found is False
        forks.release_free_memory()  # a no-op where there is none


@pytest.mark.parametrize("label", ["llama3.2"])
def test_the_counts_are_the_same_with_and_without_it(cli, tmp_path, monkeypatch, small_shards, label, pools):
    """The same bytes out with the trim and without it, in shard workers with texts left to the
    reference process, and the same as in this process alone (-j 1)."""
    directory, model_id = TOKENIZERS[label]
    path = tmp_path / "c.jsonl"
    _corpus(path)
    order = []
    real_trim, real_fork, real_count = pipeline.release_free_memory, pipeline._Reference.fork, pipeline._Reference.count
    deferred = []

    def trim():
        order.append("trim")
        real_trim()

    def fork(self):
        order.append("reference")
        real_fork(self)

    def reference_count(self, texts):
        deferred.append(len(texts))
        return real_count(self, texts)

    def count(jobs: str):
        return cli("count", "-m", model_id, "--tokenizer", str(directory), "-j", jobs, str(path))

    monkeypatch.setattr(pipeline, "release_free_memory", trim)
    monkeypatch.setattr(pipeline._Reference, "fork", fork)
    monkeypatch.setattr(pipeline._Reference, "count", reference_count)
    with_trim = count("2")
    assert order[:2] == ["trim", "reference"]  # freed before the first fork
    assert deferred  # texts the workers left to the reference process
    monkeypatch.setattr(pipeline, "release_free_memory", lambda: None)
    without = count("2")
    alone = count("1")
    assert pools == [2, 2]
    assert with_trim.code == 0 and with_trim.out.count(b"\n") == 200
    assert with_trim == without == alone


def test_the_batch_pool_trims_before_it_forks(monkeypatch):
    """BatchCounter's pool (batches of a stream counted in workers) is forked after the trim too."""
    order = []
    monkeypatch.setattr(pipeline, "release_free_memory", lambda: order.append("trim"))
    monkeypatch.setattr(pipeline, "fork_pool", lambda jobs, init=None: order.append("fork") or _NoPool())

    class Strategy:
        def count_batch(self, texts):
            return [len(t) for t in texts]

    counter = pipeline.BatchCounter(Strategy().count_batch, Strategy(), jobs=2)
    assert counter._start_pool()
    assert order == ["trim", "fork"]
    counter._pool = None


class _NoPool:
    pass
