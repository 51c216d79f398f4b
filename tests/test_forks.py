"""omnitok.forks.ForkPool under misuse found by a review of its first version (commit 7ce65e5)."""

from __future__ import annotations

import os

import pytest

from omnitok import errors, pipeline
from omnitok.forks import close_pool, fork_pool


def _bad_record_at(x: int) -> int:
    if x == 700:
        raise errors.InputError("data.jsonl", 701, "bad record")
    return x


def test_an_omnitok_error_with_its_own_init_raised_in_a_worker_reaches_the_parent_as_itself():
    # InputError(source, line, message) pickles as InputError("data.jsonl:701: bad record"):
    # unpickling it in the parent raised TypeError (missing 'line' and 'message') out of recv.
    with pytest.raises(errors.InputError, match="bad record"):
        list(pipeline.ordered_map(_bad_record_at, range(2000), jobs=2, chunk=100))


def _die(x: int) -> int:
    os.kill(os.getpid(), 9)
    return x


def test_a_lost_worker_is_not_signalled_again_once_reaped(monkeypatch):
    # _lost() reaps the dead worker but leaves it in the pool: close() then sent SIGKILL to a
    # reaped pid, which the kernel may have given to an unrelated process meanwhile.
    pool = fork_pool(2)
    try:
        with pytest.raises(errors.WorkerLostError):
            pool.submit(_die, (1,)).get()
    finally:
        killed: list[int] = []
        real_kill = os.kill
        monkeypatch.setattr(os, "kill", lambda pid, sig: (killed.append(pid), real_kill(pid, sig)))
        live = set()
        for w in pool._workers:
            try:
                if os.waitpid(w.pid, os.WNOHANG) == (0, 0):
                    live.add(w.pid)
            except ChildProcessError:
                pass
        close_pool(pool)
    assert set(killed) <= live


def _totals(paths, models, monkeypatch, interleave):
    from omnitok import api
    from omnitok.io import shards

    monkeypatch.setattr(pipeline, "SHARD_WORKER_TASKS", 1)  # every shard a fresh fork
    monkeypatch.setattr(pipeline, "WORKER_KEPT_BYTES", 0)  # a small input replaces them too
    monkeypatch.setattr(shards, "shard_bytes", lambda total, jobs: 16 * 1024)
    gens = [
        api.count_stream(api.open_inputs([str(p)], api.Extractor()), api.Counter(m), jobs=2)
        for p, m in zip(paths, models, strict=True)
    ]
    if not interleave:
        return [sum(c.tokens for c in g) for g in gens]
    totals = [0, 0]
    for a, b in zip(*gens, strict=True):  # two runs consumed side by side (one thread)
        totals[0] += a.tokens
        totals[1] += b.tokens
    return totals


def test_two_counts_consumed_side_by_side_each_count_with_their_own_tokenizer(tmp_path, monkeypatch):
    # A replacement worker is forked mid-run from pipeline._SHARD_WORKER, a module global that the
    # second count_records overwrote: the first run's later shards were counted with the second
    # run's tokenizer (also with multiprocessing's Pool, by chance of timing; now every time).
    import orjson

    data = tmp_path / "a.jsonl"
    data.write_bytes(
        b"".join(orjson.dumps({"text": f"Überprüfung {i} 😀 ありがとう " * 8}) + b"\n" for i in range(400))
    )
    models = ("gpt-4o", "gpt-4")
    alone = [_totals([data], [m], monkeypatch, False)[0] for m in models]
    assert alone[0] != alone[1]
    assert _totals([data, data], models, monkeypatch, True) == alone


# A child forked a moment before Ctrl-C got it with the parent's handler inside the interpreter's
# after-fork hooks: "Exception ignored in ..." and a KeyboardInterrupt traceback beside the
# parent's "interrupted". (SIGTERM's twin is cli.app._on_sigterm's, tests/test_round3_orphans.py.)
# An after-fork hook that sends the child SIGINT stands for that moment, at both fork sites:
# ForkPool's workers and the count's reference process (pipeline._Reference, a multiprocessing
# fork). The child ignores it (forks.signals_held, stay_with_parent) and does its work.
_SIGNALLED_AT_FORK = """
import os, signal, sys
from omnitok.forks import ForkPool
os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGINT))
if sys.argv[1] == "pool":
    pool = ForkPool(1, lambda: None)
    print(pool.submit(pow, (2, 10)).get())
    pool.close()
else:
    from omnitok.pipeline import _Reference
    class Strategy:
        def defers(self):
            return True
        def count_batch(self, texts):
            return [len(t) for t in texts]
    ref = _Reference(Strategy())
    ref.fork()
    print(ref._proc.pid != os.getpid(), ref.count(["abcd", "ef", "x" * 1000]))
    ref.close()
"""


@pytest.mark.parametrize("site", ["pool", "reference"])
def test_ctrl_c_at_the_moment_of_a_fork_leaves_the_child_silent_and_working(site):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _SIGNALLED_AT_FORK, site], capture_output=True, text=True, timeout=60)
    want = "1024\n" if site == "pool" else "True [4, 2, 1000]\n"
    assert (r.returncode, r.stdout, r.stderr) == (0, want, "")


def _mask() -> list[int]:
    import signal

    return sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_a_worker_gets_its_parents_signal_mask_back_once_its_handlers_are_set():
    """SIGINT and SIGTERM are held across the fork (forks.signals_held); a worker that kept them
    blocked would never die by a SIGTERM to the group."""
    from omnitok.forks import ForkPool

    pool = ForkPool(1)
    try:
        assert pool.submit(_mask, ()).get() == _mask()
    finally:
        pool.close()
