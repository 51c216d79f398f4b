"""The reference engine (unicode_guard) in a process of its own, forked before the fast engine
loads and loading the reference there at once, for a large count over several workers.

A fast engine's load holds one core for its whole length (gigatoken's o200k: ~0.23 s, one
thread, the GIL held) while the others have nothing to do yet. The reference engine is needed
only by the rare text the fast engine may split differently (two records in the 100 MB benchmark
corpus), but when one turns up its load (tiktoken's o200k: ~0.23 s of CPU) came in the middle
of the count, from the pipeline's reference process (pipeline._Reference), taking a core from
the workers: measured on 2 cores, 100 MB, `--jobs 2`, 0.97 s with such a text and 0.80 s without.
Loaded here, it takes the core that would have waited. And a process forked before the fast
engine holds none of its pages (its RSS counts the interpreter and the reference only).

The cost: the reference's load in CPU time (not wall time: the core was idle) and its memory
for the length of the run, even when no text needs it. So it is done only where it pays: the
caller (omnitok.api.early_reference, for `omnitok count`) asks for it for inputs of at least
MIN_BYTES counted by two workers or more; everywhere else the reference loads on first need,
as before.

The fast engine starts it (ReferenceGuarded._lend, under `started()`); the Counter made keeps it
only if its strategy will use it (settle); the pipeline's _Reference then counts the texts the
workers left through it, and closes it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from ..forks import release_free_memory

MIN_BYTES = 64 * 1024 * 1024  # input size from which `omnitok count` starts the reference early

_ON = False  # set by started(): the next fast engine to load starts its reference first
_STARTED: list[EarlyReference] = []  # started within started() blocks, closed at their ends
_MINE: int | None = None  # _STARTED's length when the active started() block began (None: none)
_ENGINE = None  # in the reference's process: the reference engine


@contextlib.contextmanager
def started(enabled: bool = True) -> Iterator[None]:
    """Within this block (until a Counter made in it settles it), the first fast engine to load
    (its first instance) forks its reference's process first (start); the block's end closes
    it, used or not. One thread's business: the CLI's main thread, before its workers exist."""
    global _ON, _MINE
    before = _ON, _MINE
    _ON, _MINE = enabled, len(_STARTED)
    try:
        yield
    finally:
        for ref in _STARTED[_MINE:]:
            ref.close()
        del _STARTED[_MINE:]
        _ON, _MINE = before


def settle(strategy) -> None:
    """Called once a Counter's strategy is made (omnitok.counter): no engine loaded later starts a
    process, and one started that `strategy` does not use (EngineStrategy.early_reference: a
    strategy over other engines, Claude's estimate or a cache, uses none) is closed now rather
    than at the block's end. Outside a started() block: nothing."""
    global _ON
    if _MINE is None:
        return
    _ON = False
    get = getattr(strategy, "early_reference", None)
    used = get() if get is not None else None
    for ref in _STARTED[_MINE:]:
        if ref is not used:
            ref.close()


def start(factory: Callable[[], object]) -> EarlyReference | None:
    """For a fast engine about to load: the process of its reference (`factory()`), where a
    started() block asks for one and has none yet; else None."""
    global _ON
    if not _ON:
        return None
    _ON = False
    ref = EarlyReference(factory)
    _STARTED.append(ref)
    return ref


class EarlyReference:
    """The reference engine `factory()` builds, in a process forked now (forks.ForkPool: it dies
    with this one, a crash of it is an error here, never a hang). `count(texts)` gives the
    reference's counts of `texts`; any failure of that process (the load failed, it was killed)
    raises, and the caller counts the texts itself."""

    def __init__(self, factory: Callable[[], object]):
        import functools

        from ..forks import ForkPool

        self._pool: ForkPool | None = ForkPool(1, functools.partial(_load, factory))

    @property
    def open(self) -> bool:
        return self._pool is not None

    def count(self, texts: list[str]) -> list[int]:
        if self._pool is None:
            raise RuntimeError("the reference's process is closed")
        return self._pool.submit(_count, (texts,)).get()

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _load(factory: Callable[[], object]) -> None:
    """In the reference's process, first: load the reference."""
    global _ENGINE
    engine = factory()
    count_only = getattr(engine, "count_only", None)
    if count_only is not None:
        count_only()  # what only other uses keep: this process only counts
    # The load's freed heap (the rank file's parse) back to the kernel: this process loads nothing
    # more. tiktoken's o200k here: RSS 93 -> 66 MB with count_only.
    release_free_memory()
    _ENGINE = engine


def _count(texts: list[str]) -> list[int]:
    return _ENGINE.count_batch(texts)
