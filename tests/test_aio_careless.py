"""omnitok.aio as an application uses it, against what an adversarial pass found: a forked
child, a loop of short counts, a batch that is one string."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

import omnitok
from omnitok import aio

FORKED = """
import asyncio, os, signal, sys
from omnitok import aio
signal.alarm(60)
texts = ["hello world", "x" * 5000]
before = [r.tokens for r in asyncio.run(aio.acount_batch(texts, model="gpt-4o"))]
pid = os.fork()
if pid == 0:
    signal.alarm(30)  # (an alarm is not inherited: the hang this test is about ends here)
    # the parent's pool threads do not exist here: the executor it left never ran a call
    got = [r.tokens for r in asyncio.run(aio.acount_batch(texts, model="gpt-4o"))]
    one = asyncio.run(aio.acount("y" * 5000, model="gpt-4o")).tokens
    os._exit(0 if got == before and one > 0 else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), before)
"""


def test_a_forked_child_counts_through_the_thread_pool_as_its_parent_did():
    r = subprocess.run([sys.executable, "-c", FORKED], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("0 [2, "), (r.stdout, r.stderr[-2000:])


def test_a_loop_of_short_inline_counts_lets_other_tasks_run():
    """An inline acount never suspended: 20,000 of them in a loop held the event loop 2.4 s."""

    async def main():
        ticks = 0
        done = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await aio.acount("warm up", model="gpt-4o")  # the Counter loads in the pool
        for i in range(200):
            r = await aio.acount(f"short text {i}", model="gpt-4o")
            assert r.tokens == omnitok.count(f"short text {i}", model="gpt-4o").tokens
        seen = ticks
        done.set()
        await task
        return seen

    assert asyncio.run(main()) >= 200  # the ticker ran between the counts


@pytest.mark.parametrize("items", ["abc", b"abc", {"a": "x"}])
def test_acount_batch_refuses_one_text_as_count_batch_does(items):
    """acount_batch("abc") counted each character ([1, 1, 1]); count_batch refuses it."""
    with pytest.raises(TypeError, match="count_batch takes a list of texts or message lists, not one"):
        asyncio.run(aio.acount_batch(items, model="gpt-4o"))
    with pytest.raises(TypeError, match="count_batch takes a list of texts or message lists, not one"):
        omnitok.Counter("gpt-4o").count_batch(items)


def test_a_call_racing_close_runs_on_a_fresh_pool():
    """aio.close() between a call taking the pool and submitting to it made that call fail with
    "cannot schedule new futures after shutdown" (18 calls of an adversarial run), though the
    runtime is documented to start again at its next use."""
    from omnitok.runtime import Runtime

    rt = Runtime(threads=1)
    stale = rt.executor()
    rt.close()  # shuts `stale` down
    fresh = rt.executor
    handed = iter([stale])
    rt.executor = lambda: next(handed, None) or fresh()
    try:
        assert asyncio.run(rt.run_sync(lambda: 7)) == 7
    finally:
        rt.close()


INLINE_REFERENCE = """
from omnitok.runtime import Runtime
from omnitok.tokenizers.unicode_guard import needs_reference

text = "\\U000323b0 x"
assert needs_reference(text)
rt = Runtime(threads=1)
rt.count_batch(["warm up"], "gpt-4o", {})
(counter,) = rt.counters.objects()
assert rt.count_inline("hello", "gpt-4o") is not None
assert rt.count_inline(text, "gpt-4o") is None and counter.strategy._engine._reference is None
expected = rt.count_batch([text], "gpt-4o", {})[0]  # in the pool: the reference loads there
assert rt.count_inline(text, "gpt-4o") == expected
rt.close()
print("ok")
"""


def test_an_inline_count_never_loads_the_reference_engine_on_the_loop():
    """A short text the fast engine may split differently (a code point newer than its tables)
    went down the inline path, which loaded o200k's reference engine on the event loop's thread
    (~0.2 s held). It now goes to the pool until the reference is loaded, then inline again. (A
    fresh process: engines are shared within one, and another test may have loaded it.)"""
    r = subprocess.run([sys.executable, "-c", INLINE_REFERENCE], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr[-2000:]
