"""The server's CPU-heavy work (/validate's ROUGE-L and BERTScore, /compress) in worker processes.

ROUGE-L holds the GIL for as long as it runs (rapidfuzz's LCS over token lists): in the server's
thread pool one 2.3 MB /validate body kept every route, /healthz included, from answering for
12.5 s, and no timer could fire to end it (issue 23). Here each job runs in one of `size` worker
processes, each a fresh interpreter (`python -c`, started as subprocess starts one: never a plain
fork of the threaded server), and the event loop only sends and receives bytes. A job has a
deadline: the route's `within` cancels it, and a cancelled job's process is killed (SIGKILL: no
CPU burns on for an answer nobody waits for) and a fresh one started. Jobs beyond the workers
wait in a queue of `queue` places; past it, Busy (the route answers 503 with Retry-After)
instead of a queue without bound.

Workers die with the server: PR_SET_PDEATHSIG on Linux reaches a busy worker, and an idle one
exits when its socket to the server closes. They leave SIGINT and SIGTERM to the server (a
terminal's Ctrl-C, or systemd, signals the whole group), which finishes or kills their jobs as
its graceful shutdown says. They run at a lower priority (NICE) than the server, whose event
loop answers the probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from ..cpu import die_with_parent

log = logging.getLogger("omnitok.serve")

# What a worker imports before it says it is ready, so that no job waits for them.
# rouge_score.tokenizers (nltk, about 1.5 s) is loaded only by a worker's first stemmed request.
PRELOAD = ("omnitok.runtime", "omnitok.api", "omnitok.validation", "omnitok.compression", "rapidfuzz.distance")
NICE = 10  # the workers' priority below the server's: the event loop goes first
STOP_GRACE = 1.0  # seconds an idle worker gets to exit on its own when the pool closes
START_TIMEOUT = 120.0  # seconds a worker gets to import PRELOAD and say it is ready
_HEADER = struct.Struct("!Q")  # a message: its length, then its pickle
_READ_LIMIT = 1 << 20
# A cancelled job's worker gets CANCEL, and SIGKILL KILL_GRACE s later if it has not ended: Python
# code unwinds at once, a long call into C (rapidfuzz's LCS) is cut short by the SIGKILL.
CANCEL = getattr(signal, "SIGUSR1", None)
KILL_GRACE = 0.5
STOPPING = "the server is stopping"


class Busy(Exception):
    """No worker can take the job now (every one busy and the queue full, or the server stopping):
    answer 503, retry after `retry_after` s."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class WorkerLost(RuntimeError):
    """The worker process running a job exited before it answered (killed from outside, out of memory)."""


def default_size(server_workers: int = 1) -> int:
    """The cores this process may run on, shared among the server's worker processes."""
    from ..cpu import cores

    return max(1, cores() // max(1, server_workers))


# --- the jobs (run in a worker) ------------------------------------------------------------------
# Each returns (its result, the statistics of the worker's caches or None): the server's
# /cache/stats adds up what the workers last reported.


def limit_upstream(per_request: int | None, concurrency: int | None) -> tuple:
    """A worker's first job: the server's bounds on provider calls (omnitok.remote.budget); each
    job is then one request with its own budget. (In flight at once: `concurrency` per worker.)"""
    from ..remote import budget

    budget.configure(per_request, concurrency)
    return None, None


def validate(original: str, compressed: str, kwargs: dict) -> tuple:
    """omnitok.validate, as aio.avalidate runs it."""
    from ..validation import validate as run

    return run(original, compressed, **kwargs), None


def compress(context, query, model, budgets: dict, options: dict) -> tuple:
    """omnitok.compress with this worker's Compressor for (model, options), as aio.acompress runs it
    (a worker process's runtime is the default one)."""
    from .. import runtime

    rt = runtime.default()
    with rt.compressor_lease(model, **options) as comp:
        result = comp.compress(context, query, **budgets)
    return result, rt.cache_stats()


# --- a worker process ----------------------------------------------------------------------------


def _recv_exact(sock: socket.socket, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            return None
        got += k
    return buf


def _portable(e: BaseException) -> tuple:
    """A library error as (class, args, attributes): its class's __init__ may take other arguments
    than its args (UnknownModelError), so it is rebuilt without calling it (_rebuilt)."""
    state = dict(vars(e))
    try:
        pickle.dumps((type(e), e.args, state))
    except Exception:
        from ..errors import OmnitokError

        return OmnitokError, (str(e),), {"message": str(e), "hint": getattr(e, "hint", None)}
    return type(e), e.args, state


def _rebuilt(cls: type, args: tuple, state: dict) -> BaseException:
    e = cls.__new__(cls)
    e.args = args
    e.__dict__.update(state)
    return e


def _send(sock: socket.socket, reply: tuple) -> None:
    try:
        out = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        out = pickle.dumps(("crash", f"the result could not be sent back ({type(e).__name__}: {e})"))
    sock.sendall(_HEADER.pack(len(out)) + out)


def main(fd: int, server: int) -> None:
    """A worker's life (`python -c`, WORKER_CODE): run the jobs the server (pid `server`) sends on
    the socket `fd`, one at a time, until that socket closes."""
    if die_with_parent(signal.SIGKILL) and os.getppid() != server:
        os._exit(0)  # the server was gone before the request took effect
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # the server stops us (see the module's docstring)
    with contextlib.suppress(OSError):
        os.nice(NICE)
    sock = socket.socket(fileno=fd)
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):  # a missing extra fails the job that needs it, as before
            importlib.import_module(name)
    from ..errors import OmnitokError
    from ..remote import budget

    if CANCEL is not None:
        signal.signal(CANCEL, _cancelled)
    _send(sock, ("ready", None))
    with contextlib.suppress(_Cancelled):  # the server gave up on the job: unwound, we end
        while True:
            head = _recv_exact(sock, _HEADER.size)
            data = None if head is None else _recv_exact(sock, _HEADER.unpack(head)[0])
            if data is None:
                return  # the server closed its end: it stops, or it died
            try:
                fn, args, kwargs = pickle.loads(data)
                reply: tuple = ("ok", budget.fresh(fn, *args, **kwargs))
            except OmnitokError as e:
                reply = ("error", *_portable(e))
            except Exception as e:
                reply = ("crash", "".join(traceback.format_exception(e)))
            _send(sock, reply)


class _Cancelled(BaseException):
    """Raised in a worker by CANCEL: a BaseException, so that no `except Exception` in the
    library keeps the job going; its `finally` blocks run (a half-written export's temporary
    file is removed)."""


def _cancelled(signum, frame):
    raise _Cancelled


# The worker's command line: the server's sys.path (as multiprocessing's spawn passes it), then main().
WORKER_CODE = "import sys; sys.path[:] = sys.argv[3:]; from omnitok.serve.workers import main; main(int(sys.argv[1]), int(sys.argv[2]))"


# --- the pool (in the server) --------------------------------------------------------------------


class _Worker:
    __slots__ = ("cache", "deadline", "proc", "reader", "writer")

    def __init__(self, proc: subprocess.Popen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.proc = proc
        self.reader = reader
        self.writer = writer
        self.deadline: float | None = None  # the running job's, in loop time
        self.cache: dict | None = None  # the cache statistics its last job reported

    async def call(self, fn: Callable, args: tuple, kwargs: dict) -> tuple:
        data = pickle.dumps((fn, args, kwargs), protocol=pickle.HIGHEST_PROTOCOL)
        self.writer.write(_HEADER.pack(len(data)))
        self.writer.write(data)
        await self.writer.drain()
        head = await self.reader.readexactly(_HEADER.size)
        return pickle.loads(await self.reader.readexactly(_HEADER.unpack(head)[0]))


class CpuPool:
    """`size` worker processes, started on the running loop by start() (or by the first run()),
    and at most `queue` jobs waiting for one (default: `size`); close() stops them. `init`, a job
    and its arguments, is run first in every worker."""

    def __init__(self, size: int, queue: int | None = None, init: tuple[Callable, tuple] | None = None):
        if size < 1:
            raise ValueError("a pool needs at least one worker")
        self.size = size
        self.queue = size if queue is None else queue
        self.init = init
        self._workers: set[_Worker] = set()
        self._idle: deque[_Worker] = deque()
        self._waiters: deque[asyncio.Future] = deque()
        self._starting = 0
        self._tasks: set[asyncio.Task] = set()  # starts and reaps in flight
        self._starts: set[asyncio.Task] = set()
        self._closed = False
        self._jobs = 0  # running or waiting
        self._retired_cache: dict | None = None  # what replaced workers reported, added up

    # -- workers come and go --

    def start(self) -> None:
        """Start the missing workers (in the background; jobs wait for them)."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        while len(self._workers) + self._starting < self.size:
            self._starting += 1
            task = loop.create_task(self._start_one())
            self._tasks.add(task)
            self._starts.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(self._starts.discard)

    async def _start_one(self) -> None:
        try:
            worker = await self._launch()
        except Exception as e:  # reported; the jobs waiting get an error rather than wait on
            self._starting -= 1
            log.error("omnitok serve: a CPU worker could not start (%s: %s)", type(e).__name__, e)
            if not self._workers and not self._starting:
                lost = WorkerLost(f"no CPU worker could start ({type(e).__name__})")
                for fut in self._waiters:
                    if not fut.done():
                        fut.set_exception(lost)
                self._waiters.clear()
            return
        except BaseException:
            self._starting -= 1
            raise
        self._starting -= 1
        if self._closed:
            self._kill(worker)
            return
        self._workers.add(worker)
        self._release(worker)

    async def _launch(self) -> _Worker:
        mine, theirs = socket.socketpair()
        try:
            # On the loop's thread, which lives as long as the server: PR_SET_PDEATHSIG watches the
            # thread that started the process, not the process. (A vfork and an exec: quick.)
            proc = subprocess.Popen(
                [sys.executable, "-c", WORKER_CODE, str(theirs.fileno()), str(os.getpid()), *sys.path],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()  # the worker's end lives in the worker alone: its death is our EOF
        try:
            reader, writer = await asyncio.open_unix_connection(sock=mine, limit=_READ_LIMIT)
            head = await asyncio.wait_for(reader.readexactly(_HEADER.size), START_TIMEOUT)
            await reader.readexactly(_HEADER.unpack(head)[0])  # ("ready", None)
            worker = _Worker(proc, reader, writer)
            if self.init is not None:
                fn, args = self.init
                reply = await asyncio.wait_for(worker.call(fn, args, {}), START_TIMEOUT)
                if reply[0] != "ok":
                    raise RuntimeError(f"{fn.__name__} failed in a new CPU worker: {reply[1]}")
        except BaseException:
            mine.close()
            proc.kill()
            await asyncio.to_thread(_reap, proc)
            raise
        return worker

    def _kill(self, worker: _Worker) -> None:
        """End a worker now: CANCEL, SIGKILL after KILL_GRACE (in the background), reaped."""
        self._workers.discard(worker)
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)
        if worker.cache is not None:  # its L1 is gone; its hits and misses stay counted
            gone = {**worker.cache, "l1_size": 0}
            self._retired_cache = add_stats([gone] if self._retired_cache is None else [self._retired_cache, gone])
        with contextlib.suppress(OSError):
            worker.proc.send_signal(CANCEL or signal.SIGKILL)
        worker.writer.close()
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(_end, worker.proc, KILL_GRACE))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _replace(self, worker: _Worker) -> None:
        self._kill(worker)
        self.start()

    # -- jobs --

    def _release(self, worker: _Worker) -> None:
        worker.deadline = None
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(worker)
                return
        self._idle.append(worker)

    def retry_after(self) -> int:
        """Seconds until a worker frees up at the latest: the nearest deadline of a running job."""
        now = asyncio.get_running_loop().time()
        deadlines = [w.deadline for w in self._workers if w.deadline is not None]
        return max(1, math.ceil(min(deadlines) - now)) if deadlines else 1

    async def _acquire(self) -> _Worker:
        if len(self._workers) + self._starting < self.size:
            self.start()
        if self._idle:
            return self._idle.popleft()
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._release(fut.result())  # handed a worker just as the deadline came
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    async def run(self, fn: Callable, /, *args, deadline: float | None = None, **kwargs) -> Any:
        """fn(*args, **kwargs)'s result, run in a worker (fn: one of this module's jobs). Raises
        Busy when the queue is full, the job's library error as itself, WorkerLost if its process
        died. Cancel it (asyncio.wait_for) and its worker is killed and replaced."""
        # Admitted: a job that runs or waits, `size + queue` at most (a worker still starting
        # counts as one that will take a job, not as a full queue).
        if self._closed:
            raise Busy(STOPPING)
        if self._jobs >= self.size + self.queue:
            wait = self.retry_after()
            raise Busy(f"every CPU worker is busy and its queue of {self.queue} is full; retry after {wait} s", wait)
        self._jobs += 1
        try:
            return await self._run(fn, args, kwargs, deadline)
        finally:
            self._jobs -= 1

    async def _run(self, fn: Callable, args: tuple, kwargs: dict, deadline: float | None) -> Any:
        worker = await self._acquire()
        worker.deadline = deadline
        try:
            reply = await worker.call(fn, args, kwargs)
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            self._replace(worker)
            raise WorkerLost(f"the CPU worker running {fn.__name__} exited") from e
        except BaseException:  # cancelled (the deadline), or a bug here: the job may still run
            self._replace(worker)
            raise
        self._release(worker)
        kind = reply[0]
        if kind == "ok":
            result, cache = reply[1]
            if cache is not None:
                worker.cache = cache
            return result
        if kind == "error":
            raise _rebuilt(*reply[1:])
        raise RuntimeError(f"{fn.__name__} failed in a CPU worker:\n{reply[1]}")

    def cache_views(self) -> list[dict]:
        """The cache statistics the workers' jobs reported (those of workers since replaced too)."""
        views = [w.cache for w in self._workers if w.cache is not None]
        return views if self._retired_cache is None else [self._retired_cache, *views]

    async def close(self) -> None:
        """Stop every worker: an idle one on its own (EOF), within STOP_GRACE, else killed."""
        self._closed = True
        for fut in self._waiters:
            if not fut.done():
                fut.set_exception(Busy(STOPPING))
        self._waiters.clear()
        busy = [w for w in self._workers if w not in self._idle]
        for worker in busy:
            self._kill(worker)
        procs = [w.proc for w in self._workers]
        for worker in list(self._workers):
            worker.writer.close()
        self._workers.clear()
        self._idle.clear()
        for task in self._starts:
            task.cancel()  # a worker started after all is never given a job: it exits on EOF
        await asyncio.to_thread(_stop, procs, STOP_GRACE)
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _reap(proc: subprocess.Popen) -> None:
    with contextlib.suppress(Exception):
        proc.wait(10)


def _end(proc: subprocess.Popen, grace: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    if proc.poll() is None:
        proc.kill()
        _reap(proc)


def _stop(procs: list[subprocess.Popen], grace: float) -> None:
    deadline = time.monotonic() + grace
    for proc in procs:
        _end(proc, max(0.0, deadline - time.monotonic()))


def add_stats(views: list[dict]) -> dict:
    """Cache statistics (omnitok.cache.stats.stats_view's) of several processes as one: the
    server's own and those its workers reported. L2 is one file shared by all: its size is the
    first one known."""
    from collections import Counter as Tally

    from ..cache.stats import stats_view

    counts: Tally = Tally()
    l1 = 0
    l2 = None
    for view in views:
        for key in ("l1_hits", "l2_hits", "l3_hits", "misses", "malformed"):
            counts[key] += view.get(key) or 0
        for tier, n in (view.get("tier_errors") or {}).items():
            counts[f"{tier}_errors"] += n
        counts["bloom_skips"] += (view.get("bloom") or {}).get("skips") or 0
        l1 += view.get("l1_size") or 0
        if l2 is None:
            l2 = view.get("l2_size")
    return stats_view(counts, l1_size=l1, l2_size=l2)
