"""A forked worker that dies with a task (the OOM killer, kill -9) stops the run with one error,
instead of a wait forever: multiprocessing's Pool replaced such a worker and dropped its task, and
its shared queue's lock could die held with it (omnitok.forks.ForkPool)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import orjson
import psutil
import pytest

from omnitok import errors, pipeline
from omnitok.forks import close_pool, fork_pool

from .console import OMNITOK


def _kill_at(x: int) -> int:
    if x == 1500:
        os.kill(os.getpid(), signal.SIGKILL)
    return 2 * x


def _fail_at(x: int) -> int:
    if x == 700:
        raise ValueError("bad item 700")
    return x


def test_a_worker_killed_with_its_task_is_an_error_and_no_worker_is_left():
    before = {c.pid for c in psutil.Process().children()}
    with pytest.raises(errors.WorkerLostError, match=r"died in the middle of its task \(killed by SIGKILL\)"):
        list(pipeline.ordered_map(_kill_at, range(5000), jobs=2, chunk=256))
    assert {c.pid for c in psutil.Process().children()} == before


def test_an_exception_in_a_worker_is_raised_in_the_parent_and_results_keep_their_order():
    with pytest.raises(ValueError, match="bad item 700"):
        list(pipeline.ordered_map(_fail_at, range(2000), jobs=2, chunk=100))
    assert list(pipeline.ordered_map(_fail_at, range(600), jobs=2, chunk=50)) == list(range(600))


def _init() -> None:
    pass


def test_workers_are_replaced_after_their_tasks_and_answer_in_order():
    pool = fork_pool(2, _init, worker_tasks=2)
    try:
        tasks = [pool.submit(os.getpid, ()) for _ in range(10)]
        pids = [t.get() for t in tasks]
    finally:
        close_pool(pool)
    assert len(set(pids)) >= 5  # a fresh fork every 2 tasks
    assert all(pids.count(p) <= 2 for p in pids)


def test_count_stops_with_one_error_when_its_workers_are_killed(tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"".join(orjson.dumps({"text": f"record {i} " * 30}) + b"\n" for i in range(250_000)))
    out = tmp_path / "out.jsonl"
    p = subprocess.Popen([OMNITOK, "count", "-j", "2", str(big), "-o", str(out)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        kids: list[psutil.Process] = []
        while time.monotonic() < deadline and len(kids) < 2 and p.poll() is None:
            kids = psutil.Process(p.pid).children()
            time.sleep(0.01)
        assert len(kids) >= 2, "no workers started"
        for k in kids:  # the shard workers (and the reference process, if any): one held a task
            k.kill()
        _, err = p.communicate(timeout=60)  # before: a wait forever
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == errors.EXIT_ERROR
    assert err.decode() == (
        "omnitok: error: a worker process died in the middle of its task (killed by SIGKILL); the run stopped\n"
        "omnitok: hint: a worker killed by SIGKILL is often the kernel's out-of-memory killer (see dmesg): "
        "try a smaller --jobs\n"
    )
    assert sorted(os.listdir(tmp_path)) == ["big.jsonl"]  # no output, no temporary file
