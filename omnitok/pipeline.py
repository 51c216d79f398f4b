"""The shared pipeline: records -> batches -> stage -> results, in input order.

Every subcommand runs this flow with a different stage. For `count`, the texts of a whole batch of
records go to the engine in one call, so per-record Python work stays small; with `jobs > 1` and
more than one batch of input, batches are counted in worker processes (forked, so they inherit
the loaded tokenizer) while this process reads and writes, with a bounded number of batches in
flight so memory does not grow with input size.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from .records import Record

BATCH_BYTES = 1 << 20  # characters of text per batch
BATCH_RECORDS = 4096


@dataclass(slots=True)
class Counted:
    """One record's outcome: its token count, or its error (record.error)."""

    record: Record
    tokens: int | None = None
    parts: list[int] | None = None  # per-field counts when several fields were counted
    meta: dict | None = None  # set when a fallback strategy counted this record


def batched(records: Iterable[Record], max_chars: int | None = None, max_records: int | None = None):
    max_chars = max_chars or BATCH_BYTES
    max_records = max_records or BATCH_RECORDS
    batch: list[Record] = []
    size = 0
    for rec in records:
        batch.append(rec)
        for t in rec.texts:
            size += len(t)
        if size >= max_chars or len(batch) >= max_records:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# The strategy a forked worker counts with; set in the parent just before the fork.
_WORKER_STRATEGY = None


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group: the parent says "interrupted" and stops the pool;
    # a worker that took the signal too would only print a KeyboardInterrupt traceback.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _count_in_worker(texts: list[str]) -> list[int]:
    return _WORKER_STRATEGY.count_batch(texts)


class BatchCounter:
    """Counts batches of texts in order, in this process or in `jobs` forked workers."""

    def __init__(self, count_batch: Callable[[Sequence[str]], list[int]], strategy=None, jobs: int = 1):
        self.count_batch = count_batch
        self.strategy = strategy
        self.jobs = jobs
        self._pool = None

    def _start_pool(self) -> bool:
        if self.jobs <= 1 or self.strategy is None or "fork" not in multiprocessing.get_all_start_methods():
            return False
        global _WORKER_STRATEGY
        _WORKER_STRATEGY = self.strategy
        # Load what workers might need lazily (a reference engine for rare texts) once, here:
        # forked workers share it instead of each loading a copy, so memory does not depend on
        # how many workers happen to meet such a text.
        prepare = getattr(self.strategy, "prepare_for_fork", None)
        if prepare is not None:
            prepare()
        self._pool = multiprocessing.get_context("fork").Pool(self.jobs, initializer=_worker_init)
        return True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def run(self, batches: Iterator[list[Record]]) -> Iterator[tuple[list[Record], list[int]]]:
        """Yield (batch, counts of its texts) for every batch, in order."""
        try:
            first = next(batches, None)
            if first is None:
                return
            second = next(batches, None)
            if second is None or not self._start_pool():
                for batch in (first, second) if second is not None else (first,):
                    yield batch, self.count_batch(_texts(batch))
                for batch in batches:
                    yield batch, self.count_batch(_texts(batch))
                return
            pending: collections.deque = collections.deque()
            limit = 2 * self.jobs
            for batch in _chain(first, second, batches):
                pending.append((batch, self._pool.apply_async(_count_in_worker, (_texts(batch),))))
                if len(pending) >= limit:
                    done, result = pending.popleft()
                    yield done, result.get()
            while pending:
                done, result = pending.popleft()
                yield done, result.get()
        finally:
            self.close()


def _chain(first, second, rest):
    yield first
    yield second
    yield from rest


def _texts(batch: list[Record]) -> list[str]:
    return [t for rec in batch if rec.error is None for t in rec.texts]


def count_records(
    records: Iterable[Record],
    strategy,
    jobs: int = 1,
    on_batch: Callable[[], None] | None = None,
) -> Iterator[Counted]:
    """Count every record; error records pass through with their error."""
    if getattr(strategy, "in_process", False):
        jobs = 1  # online strategies run their requests on threads here
    counter = BatchCounter(strategy.count_batch, strategy, jobs)
    for batch, counts in counter.run(batched(records)):
        metas = getattr(strategy, "last_meta", None)
        i = 0
        for rec in batch:
            if rec.error is not None:
                yield Counted(rec)
                continue
            n = len(rec.texts)
            part = counts[i : i + n]
            meta = next((m for m in metas[i : i + n] if m), None) if metas else None
            i += n
            yield Counted(rec, sum(part) + rec.overhead, part if rec.fields else None, meta)
        if on_batch is not None:
            on_batch()
