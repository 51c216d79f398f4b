"""Async forms of the library API, for event loops (omnitok serve, async applications).

    >>> from omnitok import aio
    >>> (await aio.acount("Hello, world!", model="gpt-4")).tokens
    4

Each call runs the same synchronous library code as the CLI (omnitok.api.Counter, the count
pipeline, omnitok.compression.Compressor, omnitok.validation.validate) in a thread pool, so
CPU-bound counting never blocks the event loop for long. One exception, where the hop to a thread
costs more than the work: `acount` of a text of at most INLINE_MAX_CHARS characters counts on the
calling thread (count_inline) when a Counter for its (model, options) is already loaded and idle,
counts locally (no cache tiers, no provider: nothing that waits on I/O) and is free at once.
That bounds how long the loop is held: benchmarks/serve_bench.py prints the longest such count
over inputs chosen to be slow (the README quotes it under the REST API's throughput).

Provider calls can be bounded (set_upstream_limits, as `omnitok serve` does): each acount,
acount_batch, acount_rows, acompress and avalidate call is then one request with its own budget
of calls, and the calls in flight are bounded process-wide (omnitok.remote.budget). The library
code runs in a copy of the caller's context, so context variables reach it as in a direct call.

Counter and Compressor objects are kept per (model, options) and lent to one call at a time: a
tokenizer loads once per process, and no two threads share an object's per-call state (a cache's
statistics, a fallback's `last_meta`). A counter whose online strategy fell back offline is
retired after the call, so the next call tries the provider again instead of staying offline for
the life of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import threading
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = [
    "acompress",
    "acount",
    "acount_batch",
    "acount_rows",
    "avalidate",
    "cache_stats",
    "close",
    "compressor_lease",
    "count_inline",
    "count_rows",
    "counter_lease",
    "run_sync",
    "set_threads",
    "set_upstream_limits",
]

ON_ERROR = ("stop", "skip", "record")

# --- the thread pool --------------------------------------------------------------------------

_executor: ThreadPoolExecutor | None = None
_threads = min(32, (os.cpu_count() or 1) + 4)
_executor_lock = threading.Lock()


def set_threads(n: int) -> None:
    """How many threads run library calls (default: min(32, cores + 4)); takes effect for a pool
    not yet started."""
    global _threads
    if n < 1:
        raise ValueError("threads must be at least 1")
    _threads = n


def _pool_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=_threads, thread_name_prefix="omnitok-aio")
        return _executor


def set_upstream_limits(per_request: int | None, concurrency: int | None) -> None:
    """Bound provider calls (online counts): at most `per_request` for one acount, acount_batch,
    acount_rows, acompress or avalidate call (beyond: UpstreamLimitError, and the call past it is never sent), at most
    `concurrency` in flight at once in this process. None: no bound (the default). Cache hits
    make no call."""
    from .remote import budget

    budget.configure(per_request, concurrency)


async def run_sync(fn: Callable, /, *args, **kwargs):
    """`fn(*args, **kwargs)` in omnitok's thread pool, awaited, in a copy of the caller's context
    (run_in_executor alone would run it in the pool thread's own)."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return await loop.run_in_executor(_pool_executor(), functools.partial(ctx.run, fn, *args, **kwargs))


async def _request(fn: Callable, /, *args, **kwargs):
    """run_sync as one request: under a fresh budget of provider calls when set_upstream_limits
    set one."""
    from .remote import budget

    return await run_sync(budget.fresh, fn, *args, **kwargs)


# --- objects lent per (model, options) -----------------------------------------------------------


class _Slot:
    __slots__ = ("all", "idle", "sem")

    def __init__(self, size: int):
        self.sem = threading.BoundedSemaphore(size)
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

    def _slot(self, key: tuple) -> _Slot:
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot(self.size)
            self._slots.move_to_end(key)
            evict = []
            if len(self._slots) > self.max_keys:
                for k, s in list(self._slots.items()):
                    if len(self._slots) <= self.max_keys:
                        break
                    if k != key and len(s.idle) == len(s.all):
                        evict += s.all
                        del self._slots[k]
        for obj in evict:
            self._close(obj)
        return slot

    @contextlib.contextmanager
    def lease(self, key: tuple) -> Iterator[Any]:
        slot = self._slot(key)
        slot.sem.acquire()
        try:
            with self._lock:
                obj = slot.idle.pop() if slot.idle else None
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
            slot.sem.release()

    def objects(self) -> list:
        with self._lock:
            return [obj for slot in self._slots.values() for obj in slot.all]

    def try_inline(self, key: tuple, fn: Callable[[Any], Any], usable: Callable[[Any], bool]):
        """`fn(obj)` with an idle object for `key`, on the calling thread, when one is idle now
        and `usable(obj)`; else None at once (never waits, never makes an object)."""
        slot = self._slots.get(key)
        if slot is None or not slot.idle or not slot.sem.acquire(blocking=False):
            return None
        try:
            with self._lock:
                obj = slot.idle.pop() if slot.idle else None
                if obj is not None and key in self._slots:
                    self._slots.move_to_end(key)
            if obj is None:
                return None
            try:
                return fn(obj) if usable(obj) else None
            finally:
                with self._lock:  # usable objects are local: a call never degrades them
                    slot.idle.append(obj)
        finally:
            slot.sem.release()

    def _close(self, obj) -> None:
        cache = _cache_of(obj)
        if cache is not None:
            with self._lock:
                self.retired.update(dict(cache.stats))
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


def _key(model: str | None, options: dict) -> tuple:
    return (model, tuple(sorted(options.items())))


def _make_counter(key: tuple):
    from .api import Counter

    model, options = key
    return Counter(model, **dict(options))


def _make_compressor(key: tuple):
    from .compression import Compressor

    model, options = key
    return Compressor(model, **dict(options))


COUNTERS = Pool(_make_counter, size=4)
COMPRESSORS = Pool(_make_compressor, size=2)


def counter_lease(model: str | None = None, **options):
    """A context manager lending this process's Counter for (model, options) to the caller alone
    (synchronous: for use inside a worker thread)."""
    return COUNTERS.lease(_key(model, options))


def compressor_lease(model: str | None = None, **options):
    """Likewise for a Compressor (options: method, gap_marker, tokenizer, engine, cache, ...)."""
    return COMPRESSORS.lease(_key(model, options))


# --- counting ----------------------------------------------------------------------------------


def _count_batch(items: list, model: str | None, options: dict):
    with counter_lease(model, **options) as counter:
        return counter.count_batch(items)


# Longest text `acount` may count on the event loop's thread (see the module's docstring).
INLINE_MAX_CHARS = 2048


def _counts_locally(counter) -> bool:
    """No cache tiers (an L2 file, an L3 server) and no online strategy (in_process marks the
    strategies that wait on I/O): the count is pure CPU."""
    return counter.cache is None and not getattr(counter.strategy, "in_process", False)


def count_inline(text: str, model: str | None = None, **options):
    """The CountResult for a short text counted now, on this thread, by an idle local Counter
    for (model, options); None when that is not possible without waiting (the text is over
    INLINE_MAX_CHARS, no Counter for the key is loaded and idle, or it counts with a cache or
    online): then use acount."""
    if type(text) is not str or len(text) > INLINE_MAX_CHARS:
        return None
    return COUNTERS.try_inline(_key(model, options), _count_one(text), _counts_locally)


def _count_one(text: str):
    return lambda counter: counter.count_batch([text])[0]


async def acount(item: str | Sequence[dict], model: str | None = None, **options):
    """omnitok.count, a CountResult for a text or a chat `messages` list: in the thread pool, or
    at once for a short text a loaded local Counter can take (count_inline)."""
    if type(item) is str and len(item) <= INLINE_MAX_CHARS:
        r = count_inline(item, model, **options)
        if r is not None:
            return r
    return (await _request(_count_batch, [item], model, options))[0]


async def acount_batch(items: Iterable[str | Sequence[dict]], model: str | None = None, **options):
    """omnitok.count_batch in the thread pool: CountResults in input order."""
    return await _request(_count_batch, list(items), model, options)


def _records(items: Sequence[Any], extractor, source: str):
    """Records of in-memory items (a text, or a JSON object as a JSONL line holds it), numbered
    as the CLI numbers lines: pos from 0, line from 1; a record whose text cannot be taken out of
    it carries the reason, as a bad input line does."""
    for i, obj in enumerate(items):
        yield extractor.record(i, source, i + 1, obj)


def count_rows(
    items: Sequence[Any],
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
    lines. Returns (rows, summary): each row as `omnitok count --format jsonl` writes it, in input
    order; the summary as `--summary` gives it. on_error: stop (an InputError at the first bad
    record, `source:line`), skip (no row), record (an error row)."""
    from .errors import InputError, UsageError
    from .io.writers import Sink
    from .pipeline import count_records
    from .records import Extractor
    from .summary import Summary

    _check_rows(items)
    if on_error not in ON_ERROR:
        raise UsageError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
    with counter_lease(model, **options) as counter:
        extractor = Extractor(tuple(fields) if fields else None, counter.framing, id_field or None)
        sink = Sink(None, counter.meta, False)
        stats = Summary()
        rows: list[dict] = []
        for c in count_records(_records(items, extractor, source), counter.strategy, 1):
            rec = c.record
            if rec.error is not None:
                if on_error == "stop":
                    raise InputError(rec.source, rec.line, rec.error)
                stats.add_error(f"{rec.where}: {rec.error}")
                if on_error == "record":
                    rows.append(sink.error_row(c))
                continue
            stats.add(c.tokens, rec, c.meta)
            rows.append(sink.row(c))
        summary = {**stats.to_dict(), **stats.meta(counter.meta)}
    return rows, summary


def _check_rows(items) -> None:
    """A TypeError for rows that are no list of records: one text, one record (a mapping, whose
    keys would be taken for rows) or no iterable at all."""
    from collections.abc import Mapping

    if isinstance(items, (str, bytes, bytearray, Mapping)) or not isinstance(items, Iterable):
        what = "a mapping (one record: wrap it in a list)" if isinstance(items, Mapping) else type(items).__name__
        raise TypeError(f"rows must be a list of records (texts or objects), not {what}")


async def acount_rows(items: Sequence[Any], model: str | None = None, **kwargs) -> tuple[list[dict], dict]:
    """count_rows in the thread pool."""
    _check_rows(items)
    return await _request(count_rows, list(items), model, **kwargs)


# --- compress and validate -----------------------------------------------------------------------


def _compress(context, query, model, budgets: dict, options: dict):
    with compressor_lease(model, **options) as comp:
        return comp.compress(context, query, **budgets)


async def acompress(
    context,
    query: str | None = None,
    *,
    model: str | None = None,
    budget: int | None = None,
    ratio: float | None = None,
    target_compression: float | None = None,
    method: str = "auto",
    gap_marker: str | None = None,
    **options,
):
    """omnitok.compress in the thread pool (a CompressResult)."""
    budgets = {"budget": budget, "ratio": ratio, "target_compression": target_compression}
    options = {"method": method, "gap_marker": gap_marker, **options}
    return await _request(_compress, context, query, model, budgets, options)


async def avalidate(original: str, compressed: str, **kwargs):
    """omnitok.validate in the thread pool (a ValidationResult)."""
    from .validation import validate

    return await _request(validate, original, compressed, **kwargs)


# --- statistics and shutdown ---------------------------------------------------------------------


def cache_stats() -> dict:
    """The statistics of every cache this process's lent objects use (and used, for objects since
    closed), as `omnitok cache stats` names them (omnitok.cache.tiered.stats_view): hits per tier,
    misses, totals, hit rate in percent, L1 entries (summed), L2 entries (the shared disk tier)."""
    from .cache.tiered import stats_view

    counts = Tally()
    l1 = 0
    l2 = None
    for pool in (COUNTERS, COMPRESSORS):
        with pool._lock:
            counts.update(pool.retired)
        for obj in pool.objects():
            cache = _cache_of(obj)
            if cache is None:
                continue
            counts.update(dict(cache.stats))
            l1 += cache.l1.size()
            if l2 is None and cache.l2 is not None:
                with contextlib.suppress(Exception):  # a failing L2 reports itself in tier_errors
                    l2 = cache.l2.size()
    return stats_view(counts, l1_size=l1, l2_size=l2)


def close() -> None:
    """Close every lent object (saving cache statistics) and stop the thread pool."""
    global _executor
    COUNTERS.close()
    COMPRESSORS.close()
    with _executor_lock:
        if _executor is not None:
            _executor.shutdown(wait=False)
            _executor = None
