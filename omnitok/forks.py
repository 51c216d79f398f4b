"""Worker processes forked by omnitok that die with it, however it ends (kill -9 included): on
Linux by PR_SET_PDEATHSIG (SIGKILL) where the main thread forked them, else (another platform, or
a fork from another thread, whose exit would fire that signal early) when a pipe whose write end
only this process holds (_LIFELINE) reads end-of-file. A child checks, after asking, that its
parent is still the one that forked it (it may have died before the request took effect)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable

from . import cpu

# This process's lifeline: (its pid, the read end, the write end) of a pipe that its forked
# children watch (stay_with_parent) where PR_SET_PDEATHSIG does not serve.
_LIFELINE: tuple[int, int, int] | None = None


def parent_handle() -> tuple[int, int, int, int]:
    """What a child forked now needs to die with this process (stay_with_parent): this process's
    pid, its main thread's id, and the ends of its lifeline (made once a process)."""
    global _LIFELINE
    pid = os.getpid()
    if _LIFELINE is None or _LIFELINE[0] != pid:
        _LIFELINE = (pid, *os.pipe())  # not inherited by exec'd programs (os.pipe: close-on-exec)
    return pid, threading.main_thread().ident, _LIFELINE[1], _LIFELINE[2]


def stay_with_parent(parent: tuple[int, int, int, int]) -> None:
    """In a child just forked: end with the parent (the module's docstring). PR_SET_PDEATHSIG fires
    when the forking *thread* exits, so it is used only where that thread was the parent's main
    one (a thread's id survives the fork: the child's thread is the forking one's copy); any
    other fork (a pool's handler thread refilling the pool, a caller's own thread) watches the
    lifeline, whose write end this child closes so that only the parent holds it."""
    pid, main_thread, read_end, write_end = parent
    with contextlib.suppress(OSError):
        os.close(write_end)
    if not (threading.get_ident() == main_thread and cpu.die_with_parent(signal.SIGKILL)):
        threading.Thread(target=_watch_lifeline, args=(read_end,), name="omnitok-lifeline", daemon=True).start()
    if os.getppid() != pid:
        os._exit(1)  # the parent was gone before the request took effect


def _watch_lifeline(read_end: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(read_end, 1):
            pass
    os._exit(1)  # end-of-file: the parent is gone


def _pool_init(parent: tuple[int, int, int, int], initializer: Callable[[], None]) -> None:
    stay_with_parent(parent)
    initializer()


def fork_pool(jobs: int, initializer: Callable[[], None]):
    """A Pool of `jobs` forked workers, with this process's objects frozen out of the garbage
    collector (gc.freeze, as CPython's docs advise before a fork) until close_pool: collections
    here and in the workers then never walk what was loaded before (modules, the tokenizer, the
    run's state), and the workers do not copy the shared pages such a walk touches. Objects still
    go when their last reference does; only cycles among them wait for close_pool. make bench's
    `--jobs 2` rows measure it. An initializer with a `worker_tasks` attribute (an int) has each
    worker replaced by a fresh fork after that many tasks (Pool's maxtasksperchild)."""
    import gc

    tasks = getattr(initializer, "worker_tasks", None)
    gc.freeze()
    try:
        return multiprocessing.get_context("fork").Pool(
            jobs, initializer=_pool_init, initargs=(parent_handle(), initializer), maxtasksperchild=tasks
        )
    except BaseException:
        gc.unfreeze()
        raise


def close_pool(pool) -> None:
    """Stop a fork_pool's workers and give the frozen objects back to the collector."""
    import gc

    try:
        pool.terminate()
        pool.join()
    finally:
        gc.unfreeze()
