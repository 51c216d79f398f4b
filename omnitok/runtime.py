"""The machinery under omnitok.aio and `omnitok serve`: a thread pool that runs the synchronous
library, and Counter and Compressor objects lent per (model, options) to one call at a time.

A Runtime owns all of it; nothing here is process-wide but the default runtime (`default()`,
which omnitok.aio's functions use) and the bounds on provider calls (omnitok.remote.budget). Each
app of `omnitok serve` has a Runtime of its own (omnitok.serve.service), so two apps in one
process neither share nor close each other's pools.

Counter and Compressor objects are kept per (model, options) and lent to one call at a time: a
tokenizer loads once per runtime, and no two threads share an object's per-call state (a
fallback's `last_meta`). A counter whose online strategy fell back offline is retired after the
call, so the next call tries the provider again instead of staying offline for the life of the
process. Their caches are views of the runtime's, one per cache settings (omnitok.cache.shared),
so the memory a cache takes does not grow with the model ids callers choose.

One exception to "in the thread pool", where the hop to a thread costs more than the work:
`count_inline` counts a text of at most INLINE_MAX_CHARS characters on the calling thread when a
Counter for its (model, options) is already loaded and idle, counts locally (no cache tiers, no
provider: nothing that waits on I/O) and is free at once. That bounds how long an event loop is
held: benchmarks/serve_bench.py prints the longest such count over inputs chosen to be slow (the
README quotes it under the REST API's throughput).

Each `request` runs its call as one request with its own budget of provider calls when bounds are
set (omnitok.remote.budget), in a copy of the caller's context, so context variables reach the
library code as in a direct call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import threading
import weakref
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["INLINE_MAX_CHARS", "Pool", "Runtime", "check_rows", "default", "key"]

# Longest text count_inline counts on the calling thread (see the module's docstring).
INLINE_MAX_CHARS = 2048


def default_threads() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


# --- objects lent per (model, options) -----------------------------------------------------------


class _Slot:
    """One key's objects: `all` made, `idle` of them free, `free` permits left (of the pool's
    `size`: a caller holds one while it uses or makes an object), `waiting` callers waiting for
    one on `cond` (the pool's lock)."""

    __slots__ = ("all", "cond", "free", "idle", "waiting")

    def __init__(self, size: int, lock: threading.Lock):
        self.free = size
        self.waiting = 0
        self.cond = threading.Condition(lock)
        self.idle: list = []
        self.all: list = []


def _strategy_degraded(obj) -> bool:
    s = getattr(obj, "strategy", None)
    s = getattr(s, "inner", s)  # behind the cache
    return bool(getattr(s, "degraded", False))


class Pool:
    """Objects made by `factory(key)`, at most `size` per key, each lent to one caller at a time
    (callers beyond `size` wait); at most `max_keys` keys are kept, the least recently used idle
    ones closed first. `retired` keeps the cache statistics of closed objects."""

    def __init__(self, factory: Callable[[tuple], Any], size: int = 4, max_keys: int = 64):
        self.factory = factory
        self.size = size
        self.max_keys = max_keys
        self._slots: OrderedDict[tuple, _Slot] = OrderedDict()
        self._lock = threading.Lock()
        self.retired: Tally = Tally()

    def _evictable(self, key: tuple) -> list:
        """Under the lock: the objects of the least recently used slots past max_keys that nobody
        holds or waits for (never `key`'s), their slots dropped; the caller closes them."""
        evict: list = []
        if len(self._slots) > self.max_keys:
            for k, s in list(self._slots.items()):
                if len(self._slots) <= self.max_keys:
                    break
                if k != key and s.free == self.size and not s.waiting and len(s.idle) == len(s.all):
                    evict += s.all
                    del self._slots[k]
        return evict

    @contextlib.contextmanager
    def lease(self, key: tuple) -> Iterator[Any]:
        # The slot is found (or made) and its permit taken under one hold of the lock: in between,
        # another lease's eviction could drop it (it looked idle) and close its objects, lending
        # a closed object or making one in a slot no longer kept (its cache statistics lost).
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot(self.size, self._lock)
            self._slots.move_to_end(key)
            while not slot.free:
                slot.waiting += 1
                try:
                    slot.cond.wait()
                finally:
                    slot.waiting -= 1
            slot.free -= 1
            obj = slot.idle.pop() if slot.idle else None
            evict = self._evictable(key)
        try:
            for old in evict:
                self._close(old)
            if obj is None:
                obj = self.factory(key)  # may raise (unknown model, ...): nothing is kept
                with self._lock:
                    slot.all.append(obj)
            try:
                yield obj
            finally:
                if not _strategy_degraded(obj):  # a call's error (bad input) leaves it usable
                    with self._lock:
                        slot.idle.append(obj)
                else:  # fell back offline: a fresh object (online first) next time
                    with self._lock:
                        if obj in slot.all:
                            slot.all.remove(obj)
                    self._close(obj)
        finally:
            self._give_back(slot)

    def _give_back(self, slot: _Slot, obj: Any = None) -> None:
        """Return a permit (and `obj`, when given, to the idle ones)."""
        with self._lock:
            if obj is not None:
                slot.idle.append(obj)
            slot.free += 1
            if slot.waiting:
                slot.cond.notify()

    def objects(self) -> list:
        with self._lock:
            return [obj for slot in self._slots.values() for obj in slot.all]

    def try_inline(self, key: tuple, fn: Callable[[Any], Any], usable: Callable[[Any], bool]):
        """`fn(obj)` with an idle object for `key`, on the calling thread, when one is idle now
        and `usable(obj)`; else None at once (never waits, never makes an object)."""
        slot = self._slots.get(key)
        if slot is None or not slot.idle:
            return None
        with self._lock:
            if not slot.free or not slot.idle or self._slots.get(key) is not slot:  # (evicted meanwhile)
                return None
            slot.free -= 1
            obj = slot.idle.pop()
            if key in self._slots:
                self._slots.move_to_end(key)
        try:
            return fn(obj) if usable(obj) else None
        finally:
            self._give_back(slot, obj)  # usable objects are local: a call never degrades them

    def stats(self) -> tuple[Tally, int, int | None]:
        """(cache counts of the objects kept and retired, L1 entries summed, L2 entries or None)."""
        from .cache.shared import summed

        with self._lock:
            retired = Tally(self.retired)
        counts, l1, l2 = summed(c for obj in self.objects() if (c := _cache_of(obj)) is not None)
        counts.update(retired)
        return counts, l1, l2

    def _close(self, obj) -> None:
        cache = _cache_of(obj)
        if cache is not None and not cache.shared:  # a view's close hands its counts to its owner
            counts = cache.counts()
            with self._lock:
                self.retired.update(counts)
        with contextlib.suppress(Exception):  # closing never fails a request
            obj.close()

    def close(self) -> None:
        with self._lock:
            objs = [obj for slot in self._slots.values() for obj in slot.all]
            self._slots.clear()
        for obj in objs:
            self._close(obj)


def _cache_of(obj):
    """The TieredCache an object uses, if any (a Counter's or a Compressor's)."""
    return getattr(obj, "cache", None) or getattr(obj, "_tiered", None)


def key(model: str | None, options: dict) -> tuple:
    """A Pool's key for (model, options)."""
    return (model, tuple(sorted(options.items())))


def _make_counter(caches, k: tuple):
    from .api import Counter

    model, options = k
    return Counter(model, caches=caches, **dict(options))


def _make_compressor(caches, k: tuple):
    from .compression import Compressor

    model, options = k
    return Compressor(model, caches=caches, **dict(options))


def _counts_locally(counter) -> bool:
    """No cache tiers (an L2 file, an L3 server) and no online strategy (in_process marks the
    strategies that wait on I/O): the count is pure CPU."""
    return counter.cache is None and not getattr(counter.strategy, "in_process", False)


def _at_once(counter, text: str) -> bool:
    """Whether `counter` counts `text` now with nothing to wait for: it counts locally
    (_counts_locally) and loads nothing for this text (a strategy's counts_at_once: a reference
    engine not loaded yet for a text that needs one)."""
    if not _counts_locally(counter):
        return False
    at_once = getattr(counter.strategy, "counts_at_once", None)
    return at_once is None or at_once(text)


def check_rows(items) -> None:
    """A TypeError for rows that are no list of records: one text, one record (a mapping, whose
    keys would be taken for rows) or no iterable at all."""
    from collections.abc import Mapping

    if isinstance(items, (str, bytes, bytearray, Mapping)) or not isinstance(items, Iterable):
        what = "a mapping (one record: wrap it in a list)" if isinstance(items, Mapping) else type(items).__name__
        raise TypeError(f"rows must be a list of records (texts or objects), not {what}")


# --- the runtime ---------------------------------------------------------------------------------


class Runtime:
    """A thread pool of `threads` threads (default: min(32, cores + 4), started at first use) and
    the Counters (up to `counters` per key) and Compressors (`compressors` per key) it lends.
    close() closes them and stops the pool; the runtime starts again at its next use."""

    def __init__(self, threads: int | None = None, *, counters: int = 4, compressors: int = 2):
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads = threads or default_threads()
        from .tokenizers.unicode_guard import release_long_texts

        release_long_texts()  # its callers wait on an event loop: long texts counted without the GIL
        self._sizes = counters, compressors
        self._fresh()
        _RUNTIMES.add(self)

    def _fresh(self) -> None:
        """No thread pool yet, no object lent, no cache open: at the start, and in a process
        forked from one that used this runtime (_forked), where the parent's pool threads do not
        exist (an executor that believes they do never runs what it is given: a forked child's
        call hung), objects may be half-way through another thread's call, locks held, and
        cache connections are the parent's."""
        from .cache.shared import SharedCaches

        # One cache per settings for every object lent (cache.shared: memory not set by model ids)
        self.caches = SharedCaches()
        self.counters = Pool(functools.partial(_make_counter, self.caches), size=self._sizes[0])
        self.compressors = Pool(functools.partial(_make_compressor, self.caches), size=self._sizes[1])
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # --- the thread pool ---

    def executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="omnitok-aio")
            return self._executor

    async def run_sync(self, fn: Callable, /, *args, **kwargs):
        """`fn(*args, **kwargs)` in the thread pool, awaited, in a copy of the caller's context
        (run_in_executor alone would run it in the pool thread's own)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        try:
            future = loop.run_in_executor(self.executor(), call)
        except RuntimeError:  # close() shut the pool down since we took it: the next one starts anew
            future = loop.run_in_executor(self.executor(), call)
        return await future

    async def request(self, fn: Callable, /, *args, **kwargs):
        """run_sync as one request: under a fresh budget of provider calls when bounds are set
        (omnitok.remote.budget)."""
        from .remote import budget

        return await self.run_sync(budget.fresh, fn, *args, **kwargs)

    # --- lent objects (synchronous: for use inside a pool thread) ---

    def counter_lease(self, model: str | None = None, **options):
        """A context manager lending this runtime's Counter for (model, options) to the caller alone."""
        return self.counters.lease(key(model, options))

    def compressor_lease(self, model: str | None = None, **options):
        """Likewise for a Compressor (options: method, gap_marker, tokenizer, engine, cache, ...)."""
        return self.compressors.lease(key(model, options))

    def count_batch(self, items: list, model: str | None, options: dict):
        with self.counter_lease(model, **options) as counter:
            return counter.count_batch(items)

    def count_inline(self, text: str, model: str | None = None, **options):
        """The CountResult for a short text counted now, on this thread, by an idle local Counter
        for (model, options); None when that is not possible without waiting (the text is over
        INLINE_MAX_CHARS, no Counter for the key is loaded and idle, or it counts with a cache or
        online): then count it in the pool."""
        return self.count_inline_key(text, key(model, options))

    def count_inline_key(self, text: str, k: tuple):
        """count_inline for the Pool key `k` (key(model, options)), made once by the caller."""
        if type(text) is not str or len(text) > INLINE_MAX_CHARS:
            return None
        return self.counters.try_inline(k, lambda c: c.count_text(text), lambda c: _at_once(c, text))

    def count_rows(
        self,
        items: Iterable[Any],
        model: str | None = None,
        *,
        fields: Sequence[str] | None = None,
        id_field: str | None = "id",
        on_error: str = "stop",
        source: str = "records",
        **options,
    ) -> tuple[list[dict], dict]:
        """Count in-memory records (texts, or objects with `text`, chat `messages` (+ `system`,
        `tools`) or the given `fields`) through the count pipeline, as `omnitok count` counts JSONL
        lines. Returns (rows, summary): each row as `omnitok count --format jsonl` writes it, in
        input order; the summary as `--summary` gives it. on_error: stop (an InputError at the
        first bad record, `source:line`), skip (no row), record (an error row)."""
        from . import run
        from .records import Extractor, fields_given
        from .summary import Summary

        check_rows(items)
        policy = run.ErrorPolicy(on_error, name="on_error")
        with self.counter_lease(model, **options) as counter:
            extractor = Extractor(fields_given(fields), counter.framing, id_field or None)
            sink, stats = run.RowSink(counter.meta), Summary()
            outcome = run.count(run.records_of(items, extractor, source), counter, policy, stats, sink)
            if outcome.stopped is not None:
                raise outcome.input_error()
            rows = sink.rows
            summary = {**stats.to_dict(), **stats.meta(counter.meta)}
        return rows, summary

    def compress(self, context, query, model, budgets: dict, options: dict):
        with self.compressor_lease(model, **options) as comp:
            return comp.compress(context, query, **budgets)

    # --- statistics and shutdown ---

    def cache_stats(self) -> dict:
        """The statistics of every cache this runtime's lent objects use (and used, for objects
        since closed), as `omnitok cache stats` names them (omnitok.cache.stats.stats_view): hits
        per tier, misses, totals, hit rate in percent, L1 entries (summed), L2 entries (the shared
        disk tier)."""
        from .cache.stats import stats_view

        counts = Tally()
        l1 = 0
        l2 = None
        for pool in (self.caches, self.counters, self.compressors):
            c, n1, n2 = pool.stats()
            counts.update(c)
            l1 += n1
            l2 = n2 if l2 is None else l2
        return stats_view(counts, l1_size=l1, l2_size=l2)

    def close(self) -> None:
        """Close every lent object (saving cache statistics) and stop the thread pool."""
        self.counters.close()
        self.compressors.close()
        self.caches.close()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)


_default: Runtime | None = None
_default_lock = threading.Lock()
_RUNTIMES: weakref.WeakSet[Runtime] = weakref.WeakSet()


_LEFT: list = []  # in a forked child: what its runtimes held in the parent, kept, never freed


def _forked() -> None:
    """In a child just forked: every runtime starts afresh (Runtime._fresh), nothing of the
    parent's closed or touched (its sockets and files are the parent's too: what the runtimes
    held is kept referenced, so that no deallocation closes an SQLite connection the parent still
    uses); tokenizers load again at first use."""
    global _default_lock
    _default_lock = threading.Lock()
    for rt in list(_RUNTIMES):
        _LEFT.append((rt.caches, rt.counters, rt.compressors, rt._executor))
        rt._fresh()


if hasattr(os, "register_at_fork"):  # (POSIX; elsewhere there is no fork)
    os.register_at_fork(after_in_child=_forked)


def default() -> Runtime:
    """The process's default runtime: omnitok.aio's functions run on it."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Runtime()
        return _default
