"""Shard workers replaced by fresh forks after a number of shards (pipeline.SHARD_WORKER_TASKS):
the engine's word cache grows with every distinct word a process meets and is given back only
when the process ends, so a long count keeps its workers young. A differential test: the same
bytes out as one process, with every worker replaced after each shard."""

from __future__ import annotations

import random

import pytest

from omnitok import pipeline
from omnitok.io import shards
from tests.test_shards import corpus


@pytest.fixture
def small_shards(monkeypatch):
    monkeypatch.setattr(shards, "SHARD_MIN", 512)
    monkeypatch.setattr(shards, "SHARD_MAX", 2048)


@pytest.fixture
def shard_pids(tmp_path, monkeypatch):
    """A file each shard's worker appends its pid to (pipeline._count_shard, wrapped)."""
    import os

    pids = tmp_path / "pids"
    real = pipeline._count_shard

    def noting(shard):
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real(shard)

    noting.__module__, noting.__qualname__ = real.__module__, real.__qualname__  # sent to workers by name
    monkeypatch.setattr(pipeline, "_count_shard", noting)
    return pids


def test_workers_replaced_after_each_shard_write_the_same_bytes(cli, tmp_path, monkeypatch, small_shards, shard_pids):
    pids = shard_pids
    monkeypatch.setattr(pipeline, "SHARD_WORKER_TASKS", 1)
    monkeypatch.setattr(pipeline, "WORKER_KEPT_BYTES", 0)  # a small input replaces them too
    rng = random.Random(11)
    paths = []
    for k in range(2):
        p = tmp_path / f"part{k}.jsonl"
        p.write_bytes(corpus(rng, 200))
        paths.append(str(p))
    one = cli("count", "--on-error", "record", "-j", "1", *paths)
    assert not pids.exists()  # one job: no workers
    two = cli("count", "--on-error", "record", "-j", "2", *paths)
    assert (two.code, two.out, two.err) == (one.code, one.out, one.err)
    assert one.out.count(b"\n") > 300
    seen = pids.read_text().split()
    assert len(seen) > 10 and len(set(seen)) == len(seen)  # every shard in a fresh worker


def test_one_job_over_a_large_input_counts_in_a_worker_with_the_same_bytes(
    cli, tmp_path, monkeypatch, small_shards, pools
):
    # --jobs 1 over LONE_WORKER_BYTES or more: one forked worker (replaced as shard workers
    # are), so the engine's cache does not grow with the input in the main process.
    monkeypatch.setattr(pipeline, "SHARD_WORKER_TASKS", 2)
    monkeypatch.setattr(pipeline, "WORKER_KEPT_BYTES", 0)  # a small input replaces them too
    p = tmp_path / "c.jsonl"
    p.write_bytes(corpus(random.Random(12), 300))
    here = cli("count", "--on-error", "record", "-j", "1", str(p))
    summary_here = cli("count", "--on-error", "record", "-j", "1", "--summary", str(p))
    assert pools == []  # smaller than LONE_WORKER_BYTES: this process
    monkeypatch.setattr(pipeline, "LONE_WORKER_BYTES", 1000)
    lone = cli("count", "--on-error", "record", "-j", "1", str(p))
    summary_lone = cli("count", "--on-error", "record", "-j", "1", "--summary", str(p))
    assert pools == [1, 1]
    assert (lone.code, lone.out, lone.err) == (here.code, here.out, here.err)
    assert (summary_lone.code, summary_lone.out) == (summary_here.code, summary_here.out)
    assert here.out.count(b"\n") > 200


def test_workers_are_kept_to_the_end_over_an_input_of_at_most_worker_kept_bytes_a_job(
    cli, tmp_path, monkeypatch, small_shards, shard_pids
):
    """pipeline.WORKER_KEPT_BYTES: an input of at most that many bytes a job is counted by the
    same workers to its end (a fresh fork starts with a cold engine cache); a larger one, or a
    stream of unknown size, replaces them every SHARD_WORKER_TASKS shards. The same bytes out."""
    assert pipeline._worker_tasks(2 * pipeline.WORKER_KEPT_BYTES, 2) is None
    assert pipeline._worker_tasks(2 * pipeline.WORKER_KEPT_BYTES + 1, 2) == pipeline.SHARD_WORKER_TASKS
    assert pipeline._worker_tasks(None, 2) == pipeline.SHARD_WORKER_TASKS
    pids = shard_pids
    monkeypatch.setattr(pipeline, "SHARD_WORKER_TASKS", 1)
    p = tmp_path / "c.jsonl"
    p.write_bytes(corpus(random.Random(13), 300))
    one = cli("count", "--on-error", "record", "-j", "1", str(p))
    size = p.stat().st_size
    for kept, replaced in ((size // 2, False), (size // 2 - 1, True)):
        monkeypatch.setattr(pipeline, "WORKER_KEPT_BYTES", kept)
        pids.unlink(missing_ok=True)
        two = cli("count", "--on-error", "record", "-j", "2", str(p))
        assert (two.code, two.out, two.err) == (one.code, one.out, one.err)
        seen = pids.read_text().split()
        assert len(seen) > 10
        if replaced:
            assert len(set(seen)) == len(seen)  # every shard in a fresh worker
        else:
            assert len(set(seen)) <= 2  # the pool's two workers, to the end
