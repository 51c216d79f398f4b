"""The shared pipeline: records -> batches -> stage -> results, in input order.

Every subcommand runs this flow with a different stage. For `count`, the texts of a whole batch of
records go to the engine in one call, so per-record Python work stays small; with `jobs > 1` and
more than one batch of input, batches are counted in worker processes (forked, so they inherit
the loaded tokenizer) while this process reads and writes, with a bounded number of batches in
flight so memory does not grow with input size.

Every process forked here dies with this one, however it ends (omnitok.forks).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

from . import cpu
from .forks import close_pool, fork_pool, parent_handle, release_free_memory, signals_held, stay_with_parent
from .records import Counted, CountedRun, Record

BATCH_BYTES = 1 << 20  # characters of text per batch
BATCH_RECORDS = 4096
AUTO_MIN_BYTES = 4 << 20  # --jobs auto: smaller inputs are counted in this process
# Shards a job may have sent and not yet merged: shards that carry a stream's bytes hold memory
# (2 a job); a file's byte ranges and row groups do not (their results are counts), and more of
# them keep the workers busy while the merge waits, e.g. for the reference engine's counts.
STREAM_SHARDS_AHEAD = 2
FILE_SHARDS_AHEAD = 8
# --jobs 1 over an input of this many bytes or more counts in one forked worker that is replaced
# every SHARD_WORKER_TASKS shards, not in this process: the engine's memory (SHARD_WORKER_TASKS'
# note) would otherwise grow with the input here (+250 MB over a gigabyte of distinct text,
# +20-60 MB below this size).
LONE_WORKER_BYTES = 256 << 20


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
    return cpu.cores()


def idle_jobs() -> int:
    """--jobs auto for a large input: the cores other work leaves idle now (omnitok.cpu: /proc/stat
    over this process's start-up, not the lagging load average), at least 1. Workers on cores that
    other work holds would only compete with it and with this process's own merging."""
    return cpu.idle_cores()


# The strategy a forked worker counts with; set in the parent just before the fork.
_WORKER_STRATEGY = None


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
        release_free_memory()
        self._pool = fork_pool(self.jobs)
        return True

    def close(self) -> None:
        if self._pool is not None:
            close_pool(self._pool)
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
                pending.append((batch, self._pool.submit(_count_in_worker, (_texts(batch),))))
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
    jobs: int | None = 1,
    on_batch: Callable[[], None] | None = None,
    runs: bool = False,
) -> Iterator[Counted | CountedRun]:
    """Count every record; error records pass through with their error.

    runs: a consumer that takes records.CountedRun (columns of consecutive plain results; the
    CLI's sinks and Summary do) may get those where workers counted shards, instead of one
    Counted a record: the parent's per-record work is what stops a parallel count scaling.

    `jobs=None` is auto: the idle cores (idle_jobs) for an input of AUTO_MIN_BYTES or more (or a
    stream longer than one shard), else this process alone, where start-up matters more."""
    in_process = getattr(strategy, "in_process", False)
    if in_process:
        jobs = 1  # online strategies and the cache run here (threads, a database connection)
    shardable = getattr(records, "shardable", None)
    total = getattr(getattr(records, "progress", None), "total", None)
    if jobs is None:
        jobs = 1 if total is not None and total < AUTO_MIN_BYTES else idle_jobs()
    # One job over a large input: one worker, replaced as shard workers are (SHARD_WORKER_TASKS),
    # so that the engine's cache of the words met does not grow with the input in this process.
    lone = jobs == 1 and not in_process and total is not None and total >= LONE_WORKER_BYTES
    if (jobs > 1 or lone) and shardable is not None and shardable():
        yield from _count_shards(records, strategy, jobs, on_batch, runs)
        return
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


# What a forked shard worker reads and counts with: (a fresh-able InputStream, the strategy).
_SHARD_WORKER = None


def _count_shard(shard, state=None) -> tuple[int, list, bool]:
    """In a worker: read, parse, extract and count one shard; never send the texts back. The
    records come back in order as segments: a run of plain results (counted as planned, one
    text, no error) as columns, `[lines, ids, tokens, raws, raw JSON texts]` (raws only when the
    reader keeps them); any other record as a row tuple, (line in the shard, id, tokens,
    per-field counts, fields, error, raw, raw JSON text, texts left for the parent). Returns
    (lines read, segments, whether any texts were left for the parent)."""
    from .io.shards import read_shard
    from .tokenizers.unicode_guard import DEFERRED

    template, strategy = state or _SHARD_WORKER
    reader = template.fresh()
    recs = read_shard(reader, shard, plain=True)  # a plain JSONL record: (line, id, text, overhead)
    texts = []
    for rec in recs:
        if type(rec) is tuple:
            texts.append(rec[2])
        elif rec.error is None:
            texts += rec.texts
    counts = strategy.count_batch(texts) if texts else []
    keep = reader.keep_raw
    segments: list = []
    run = None
    i = 0
    deferred = False
    for rec in recs:
        if type(rec) is tuple:  # a plain record: one text, no fields, no raws (jsonl_lines' plain)
            line, rid, _, overhead = rec
            n, fields, raw, raw_json = 1, None, None, None
        elif rec.error is not None:
            segments.append((rec.line, rec.id, None, None, rec.fields, rec.error, rec.raw, rec.raw_json, None))
            run = None
            continue
        else:
            line, rid, overhead, n = rec.line, rec.id, rec.overhead, len(rec.texts)
            fields, raw, raw_json = rec.fields, rec.raw, rec.raw_json
        if n == 1 and fields is None:
            tokens = counts[i]
            i += 1
            if tokens != DEFERRED:
                if run is None:
                    run = [[], [], [], [] if keep else None, [] if keep else None]
                    segments.append(run)
                run[0].append(line)
                run[1].append(rid)
                run[2].append(tokens + overhead)
                if keep:
                    run[3].append(raw)
                    run[4].append(raw_json)
                continue
            part = [tokens]
        else:
            part = counts[i : i + n]
            i += n
        run = None
        if DEFERRED in part:  # a text for the reference engine: the merge has it counted (_Reference)
            later = ([rec[2]] if type(rec) is tuple else rec.texts, overhead)
            deferred = True
            segments.append((line, rid, None, None, fields, None, raw, raw_json, later))
            continue
        tokens = sum(part) + overhead
        segments.append((line, rid, tokens, part if fields else None, fields, None, raw, raw_json, None))
    return reader.lines_read, segments, deferred


class _Input:
    """One input's place in the merge: lines before the next shard, whether it held a record."""

    __slots__ = ("fmt", "lines", "records", "source")

    def __init__(self, source: str, fmt: str):
        self.source, self.fmt, self.lines, self.records = source, fmt, 0, 0


def _count_shards(stream, strategy, jobs: int, on_batch, runs: bool = False) -> Iterator[Counted | CountedRun]:
    """Count an InputStream by shards in `jobs` forked workers (io.shards), yielding exactly what
    the serial path yields, in input order: records numbered here, lines offset by the shards
    before, error records and read failures where the serial reader puts them. With `runs`,
    consecutive plain results come as one CountedRun (records.CountedRun) instead of one Counted
    each."""
    from .io.inputs import source_name
    from .io.shards import Shard, shard_bytes

    state = (stream.fresh(), strategy)
    chunk = shard_bytes(stream.progress.total, jobs)
    pool = None
    pending: collections.deque = collections.deque()  # (kind, input, item), in input order

    def entries():
        for path in stream.paths:
            inp = _Input(source_name(path), stream.format_of(path))
            try:
                for item in stream.shards(path, chunk):
                    if isinstance(item, Shard):
                        inp.fmt = item.fmt
                        yield "shard", inp, item
                    else:
                        yield "record", inp, item
            except (OSError, EOFError) as e:
                yield "failed", inp, e
            yield "end", inp, None

    def merge(kind, inp, item):
        if kind == "record":
            inp.records += 1
            yield Counted(item)
        elif kind == "failed":
            inp.records += 1
            yield Counted(stream.shard_error(inp.source, inp.lines, item))
        elif kind == "end":
            if inp.records == 0:
                stream.no_records(inp.source, inp.fmt)
        else:
            shard, result = item
            lines, segments, _ = result.get() if result is not None else _count_shard(shard, state)
            base, source = inp.lines, inp.source
            pos = stream.next_pos
            n = 0
            for seg in segments:
                if type(seg) is list:  # a run of plain results, as columns
                    k = len(seg[2])
                    n += k
                    lines_of = [base + line for line in seg[0]] if base else seg[0]
                    block = CountedRun(source, stream.take_pos(k), lines_of, seg[1], seg[2], seg[3], seg[4])
                    if runs:
                        yield block
                    else:
                        yield from block.counted()
                    continue
                n += 1
                line, rid, tokens, parts, fields, error, raw, raw_json, later = seg
                # Positional: a keyword dataclass call costs more than the rest of the row here.
                rec = Record(pos(), source, base + line, rid, (), 0, fields, raw, raw_json, error)
                if later is not None:  # texts a worker left for the reference engine
                    texts, overhead = later
                    part = reference.count(texts)
                    tokens, parts = sum(part) + overhead, part if fields else None
                yield Counted(rec, tokens, parts)
            inp.records += n
            inp.lines += lines
            if shard.path is not None:
                stream.progress.done += shard.size
            if on_batch is not None:
                on_batch()

    reference = _Reference(strategy)
    source = entries()
    ahead = []  # look ahead for a second shard: with one shard in all, no workers are started
    for entry in source:
        ahead.append(entry)
        if sum(kind == "shard" for kind, _, _ in ahead) == 2:
            warm = getattr(strategy, "warm", None)
            if warm is not None:
                warm()  # what each worker would do first, done once before the fork
            release_free_memory()
            reference.fork()  # before the pool: this process has no threads yet
            pool = _start_shard_pool(state, jobs, _worker_tasks(stream.progress.total, jobs))
            break
    try:
        window = STREAM_SHARDS_AHEAD * jobs
        for kind, inp, item in itertools.chain(ahead, source):
            if kind == "shard":
                window = (STREAM_SHARDS_AHEAD if item.data is not None else FILE_SHARDS_AHEAD) * jobs
                item = (item, pool.submit(_count_shard, (item,), callback=reference.early) if pool else None)
            pending.append((kind, inp, item))
            while pending and (len(pending) > window or pending[0][0] != "shard"):
                yield from merge(*pending.popleft())
        while pending:
            yield from merge(*pending.popleft())
    finally:
        if pool is not None:
            close_pool(pool)
        reference.close()


class _Reference:
    """Where the texts shard workers leave for the reference engine are counted: a process
    forked with the workers when the strategy may leave such texts (its reference not loaded),
    which loads the reference once, as soon as a worker first reports such a text
    (`early`, the pool's result callback), while the workers go on counting; the merge then asks
    it for the counts in input order. Not this process: loading tiktoken's o200k holds the GIL
    for ~0.1 s at a time, stalling the merge and the pool's result thread while the workers
    wait to hand over their results (measured: a 0.27 s load during which one shard of 8 MB
    came back instead of five), and not the workers: memory (80 MB for o200k) would grow with
    how many of them met such a text. Without that process (one shard, a strategy with nothing
    to load, or an error from it) the counts are taken here, which reports any error.

    For a large count the engine may have forked its reference's process before it loaded
    itself (tokenizers.early_reference: the reference loaded on a core that would have waited):
    then that process counts them, and none is forked here."""

    def __init__(self, strategy):
        self._strategy = strategy
        self._conn = None
        self._proc = None
        self._lock = threading.Lock()
        self._asked = False
        self._early = None  # tokenizers.early_reference.EarlyReference, when the strategy has one

    def fork(self) -> None:
        defers = getattr(self._strategy, "defers", None)
        if defers is None or not defers():
            return
        early = getattr(self._strategy, "early_reference", None)
        self._early = early() if early is not None else None
        if self._early is not None:
            return
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_reference_main, args=(child, self._strategy, parent_handle()), daemon=True)
        with signals_held():
            self._proc.start()
        child.close()

    def early(self, result) -> None:  # the pool's result callback, in its result thread: never waits
        if result[2] and not self._asked and self._conn is not None and self._lock.acquire(blocking=False):
            try:
                self._asked = True
                self._conn.send(("load", None))
            except OSError:
                pass  # gone: count() takes the texts here
            finally:
                self._lock.release()

    def count(self, texts: list[str]) -> list[int]:
        if self._early is not None:
            try:
                return self._early.count(texts)
            except Exception:  # noqa: BLE001 - gone or failed: counted here, which reports any error
                self._early.close()
                self._early = None
        if self._conn is not None:
            with self._lock:
                try:
                    self._conn.send(("count", texts))
                    status, counts = self._conn.recv()
                except (OSError, EOFError):
                    status, counts = "gone", None
            if status == "ok":
                return counts
        return self._strategy.count_batch(texts)  # here: the same counts, or the error said

    def close(self) -> None:
        if self._early is not None:
            self._early.close()
            self._early = None
        if self._proc is None:
            return
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._conn.close()
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


def _reference_main(conn, strategy, parent) -> None:
    """The reference process (_Reference): load the reference when asked, count texts, until told
    to stop or the parent is gone (forks.stay_with_parent: the workers forked after it hold the
    parent's end of `conn` too, so its end-of-file alone would not come). It leaves by os._exit:
    a normal exit would flush the stdout buffer it inherited, writing the parent's pending output
    a second time."""
    try:
        stay_with_parent(parent)
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg is None:
                break
            kind, texts = msg
            try:
                if kind == "load":
                    strategy.prepare_for_fork()
                else:
                    conn.send(("ok", strategy.count_batch(texts)))
            except Exception:  # noqa: BLE001 - the parent counts here, where the error is reported
                if kind != "load":
                    conn.send(("error", None))
    finally:
        os._exit(0)


def _shard_worker_init(state) -> None:
    global _SHARD_WORKER
    from .tokenizers import unicode_guard

    _SHARD_WORKER = state  # this run's, bound when its pool began: not the module's latest
    unicode_guard.DEFER_REFERENCE = True


# Shards a worker counts before a fresh fork replaces it (None: never). gigatoken's memory grows
# with the distinct words it meets (+20-40 MB a 100 MB of distinct text) and only the process's
# end gives it back (not a new tokenizer, not the end of the thread that counted, not
# malloc_trim): a worker that counted 500 MB of a gigabyte held 100+ MB more than it started
# with. 16 shards are 16-32 MB of input (io.shards.SHARD_MAX); the fork costs milliseconds. With
# 8 MB shards, 1 GB of distinct text, --jobs 2, interleaved: 6.39/6.09/6.38 s at 4 vs
# 6.38/6.27/5.73 s at 16 shards a worker; peak PSS of the process tree 275 MB at 4, 304-317 at 8,
# 333 at 16, 452 never replaced: what bounds the memory is the text a worker meets.
SHARD_WORKER_TASKS: int | None = 16
# An input of at most this many bytes a job keeps its shard workers to its end: they meet at most
# that much text each, and a fresh fork starts with the engine's cache as the parent left it (cold
# for this input's words) and costs the fork. 100 MB of text at --jobs 2 (106 MB on disk),
# interleaved pairs, medians: 0.77 -> 0.72 s (5 pairs), 0.80 -> 0.75 s (6 more); peak summed RSS
# 395 -> 396 MB.
WORKER_KEPT_BYTES = 64 << 20


def _worker_tasks(total: int | None, jobs: int) -> int | None:
    """Shards a worker counts before a fresh fork replaces it, for an input of `total` bytes (None:
    unknown, a stream) over `jobs` workers (None: never)."""
    if total is not None and total <= jobs * WORKER_KEPT_BYTES:
        return None
    return SHARD_WORKER_TASKS


def _start_shard_pool(state, jobs: int, worker_tasks: int | None):
    # The reference engine for rare texts (code points the two engines' Unicode tables may class
    # apart: unicode_guard) is not loaded before the fork (0.3-0.5 s of serial start-up on every run) nor in
    # the workers (memory would depend on how many met such a text): workers send those texts
    # back and the merge has them counted by one process (_Reference), which loads the reference
    # once, only if one turns up. `worker_tasks`: _worker_tasks' answer for the input (None: the
    # workers are kept to the end), passed by the caller, never a default that would hide it.
    return fork_pool(jobs, functools.partial(_shard_worker_init, state), worker_tasks)


# The function a forked ordered_map worker applies; set just before the fork.
_MAP_FN = None


def _map_chunk(chunk: list) -> list:
    return [_MAP_FN(item) for item in chunk]


def ordered_map(fn: Callable, items: Iterable, jobs: int | None = None, chunk: int = 512) -> Iterator:
    """`fn` over `items`, results in input order: here for fewer than two chunks of items or one
    job, else in `jobs` forked workers (None: every core). `fn` and what it closes over reach the
    workers by the fork, never pickled; items and results are. Memory stays bounded: at most
    2 x jobs chunks in flight. For stages whose unit of work is a record (validate's ROUGE-L)."""
    global _MAP_FN
    it = iter(items)
    first = list(itertools.islice(it, chunk))
    second = list(itertools.islice(it, chunk))
    jobs = idle_jobs() if jobs is None else jobs
    if jobs <= 1 or not second or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(fn, itertools.chain(first, second, it))
        return
    _MAP_FN = fn
    pool = fork_pool(jobs)
    try:
        pending: collections.deque = collections.deque()
        chunks = itertools.chain((first, second), iter(lambda: list(itertools.islice(it, chunk)), []))
        for part in chunks:
            pending.append(pool.submit(_map_chunk, (part,)))
            while len(pending) > 2 * jobs:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()
    finally:
        close_pool(pool)
