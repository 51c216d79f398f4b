"""Worker processes forked by omnitok that die with it, however it ends (kill -9 included): on
Linux by PR_SET_PDEATHSIG (SIGKILL) where the main thread forked them, else (another platform, or
a fork from another thread, whose exit would fire that signal early) when a pipe whose write end
only this process holds (_LIFELINE) reads end-of-file. A child checks, after asking, that its
parent is still the one that forked it (it may have died before the request took effect)."""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Callable

from . import cpu
from .errors import WorkerLostError

# This process's lifeline: (its pid, the read end, the write end) of a pipe that its forked
# children watch (stay_with_parent) where PR_SET_PDEATHSIG does not serve.
_LIFELINE: tuple[int, int, int] | None = None


_MALLOC_TRIM: Callable[[int], int] | None | bool = None  # glibc's malloc_trim, once looked up


def release_free_memory() -> None:
    """Hand the C heap's free memory back to the kernel (glibc's malloc_trim) just before forking
    the count's processes (omnitok.pipeline), or after a load in a process that will not load again
    (tokenizers.early_reference's). Loading a tokenizer leaves tens of MB freed in the heap (gigatoken's
    parse of Llama 3's 9 MB tokenizer.json: RSS 147 -> 101 MB after the trim); a forked child's
    allocations otherwise start from those inherited free chunks and pages (copied on its first
    write to each). Measured on 2 shared cores, Llama 3.2's tokenizer.json over 100 MB, --jobs 2,
    interleaved runs: the process tree's CPU 2.33 -> 2.21 s (8 runs each) and 2.10 -> 2.05 s
    (8 more, on top of the guard's warm-up); `tokenizers` loading in a process forked after the
    trim: 0.42 -> 0.38 s. It costs ~2 ms here. It frees nothing in use: objects and counts are
    untouched. A no-op where the C library has no malloc_trim (not glibc)."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        _MALLOC_TRIM = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes  # the children forked after this inherit it (cpu.die_with_parent's)

                _MALLOC_TRIM = ctypes.CDLL(None).malloc_trim
            except (OSError, AttributeError):  # a C library without it (musl)
                pass
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


def parent_handle() -> tuple[int, int, int, int]:
    """What a child forked now needs to die with this process (stay_with_parent): this process's
    pid, its main thread's id, and the ends of its lifeline (made once a process)."""
    global _LIFELINE
    pid = os.getpid()
    if _LIFELINE is None or _LIFELINE[0] != pid:
        _LIFELINE = (pid, *os.pipe())  # not inherited by exec'd programs (os.pipe: close-on-exec)
    return pid, threading.main_thread().ident, _LIFELINE[1], _LIFELINE[2]


# The signals a process group gets as one (Ctrl-C; systemd's and `kill -- -PGID`'s SIGTERM), held
# in the forking thread across a fork (signals_held) until the child has set its own dispositions.
_HELD = frozenset({signal.SIGINT, signal.SIGTERM})
# The forking thread's mask before signals_held, the child's own: per thread, as masks are (two
# threads forking at once must not hand a child the other's); a child is a copy of its forking
# thread, so it reads that thread's value.
_MASK_BEFORE = threading.local()


@contextlib.contextmanager
def signals_held():
    """Around a fork, in the parent: SIGINT and SIGTERM held (blocked) in this thread, so that a
    child forked now gets none until stay_with_parent has set its dispositions and lets them
    through. Otherwise one sent to the group a moment after the fork reached the child with
    the parent's handler, inside the interpreter's after-fork hooks (threading's _after_fork):
    a KeyboardInterrupt or Terminated there printed "Exception ignored in ..." and a traceback
    beside the parent's "interrupted". The parent gets any that came meanwhile as the block ends;
    a child holds none of them (pending signals are not inherited)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    _MASK_BEFORE.mask = old
    pid = os.getpid()
    try:
        yield
    finally:
        if os.getpid() == pid:  # a child never returns here (it leaves by os._exit)
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def stay_with_parent(parent: tuple[int, int, int, int]) -> None:
    """In a child just forked (under signals_held): end with the parent (the module's docstring),
    ignore SIGINT and take SIGTERM's default action (Ctrl-C and a SIGTERM to the group reach the
    parent too, which reports them and stops its children: a child that took them would only
    print a traceback), then let signals through. PR_SET_PDEATHSIG fires
    when the forking *thread* exits, so it is used only where that thread was the parent's main
    one (a thread's id survives the fork: the child's thread is the forking one's copy); any
    other fork (a pool's handler thread refilling the pool, a caller's own thread) watches the
    lifeline, whose write end this child closes so that only the parent holds it."""
    pid, main_thread, read_end, write_end = parent
    with contextlib.suppress(OSError):
        os.close(write_end)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if callable(signal.getsignal(signal.SIGTERM)):  # the console script's Terminated (cli.app) is the
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # parent's: a worker that gets SIGTERM just ends
    mask = getattr(_MASK_BEFORE, "mask", None)
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if not (threading.get_ident() == main_thread and cpu.die_with_parent(signal.SIGKILL)):
        threading.Thread(target=_watch_lifeline, args=(read_end,), name="omnitok-lifeline", daemon=True).start()
    if os.getppid() != pid:
        os._exit(1)  # the parent was gone before the request took effect


def _watch_lifeline(read_end: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(read_end, 1):
            pass
    os._exit(1)  # end-of-file: the parent is gone


def _status(status: int) -> str:
    """A waitpid status in words: 'killed by SIGKILL', 'exit status 3'."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(sig).name}"
        return f"killed by signal {sig}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class _Worker:
    """A forked worker: the parent's ends of its two pipes (tasks in, results out)."""

    def __init__(self, parent, initializer: Callable[[], None] | None, limit: int | None, others: list[_Worker]):
        task_r, self.tasks = multiprocessing.Pipe(duplex=False)
        self.results, result_w = multiprocessing.Pipe(duplex=False)
        self.key: int | None = None  # the task it holds
        self.done = 0
        with signals_held():
            self.pid = os.fork()
            if self.pid == 0:  # the child: never returns into the caller's frames
                code = 1
                try:
                    for conn in (self.tasks, self.results, *(c for w in others for c in (w.tasks, w.results))):
                        conn.close()
                    stay_with_parent(parent)
                    if initializer is not None:
                        initializer()
                    code = _serve(task_r, result_w, limit)
                finally:
                    os._exit(code)
        task_r.close()
        result_w.close()

    def close(self) -> None:
        self.tasks.close()
        self.results.close()


def _serve(tasks, results, limit: int | None) -> int:
    """A worker's loop: run each task it is sent, send back ("ok", value) or ("error", exception);
    end after `limit` tasks (its replacement is a fresh fork) or when the parent closes the pipe."""
    done = 0
    while limit is None or done < limit:
        try:
            fn, args = tasks.recv()
        except EOFError:
            return 0
        try:
            reply = ("ok", fn(*args))
        except Exception as e:  # the parent raises it, as Pool did
            reply = ("error", e)
        try:
            results.send(reply)
        except Exception as e:  # an unpicklable result or exception
            results.send(("error", RuntimeError(f"{type(e).__name__}: {e}")))
        done += 1
    return 0


class ForkPool:
    """`jobs` forked workers, each with its own pipes, so that the parent always knows which worker
    holds which task: a worker that dies with a task (the OOM killer, kill -9) is a
    WorkerLostError for whoever waits on it. (multiprocessing's Pool replaces such a worker and
    drops its task, and its shared queue's lock can die held with it: a wait, or terminate(),
    then hung forever.) Workers are forked by the thread that submits or waits (no handler
    threads); one with `worker_tasks` done (None: never) is replaced by a fresh fork (Pool's
    maxtasksperchild). Results are taken as they come; `callback` runs then, in that thread."""

    def __init__(self, jobs: int, initializer: Callable[[], None] | None = None, worker_tasks: int | None = None):
        self._initializer = initializer
        self._limit = worker_tasks
        self._parent = parent_handle()
        self._workers: list[_Worker] = []
        self._queue: collections.deque = collections.deque()  # (key, fn, args) not yet sent
        self._callbacks: dict[int, Callable] = {}
        self._results: dict[int, tuple[str, object]] = {}
        self._next = 0
        try:
            for _ in range(jobs):
                self._workers.append(_Worker(self._parent, initializer, self._limit, self._workers))
        except BaseException:
            self.close()
            raise

    def submit(self, fn: Callable, args: tuple, callback: Callable | None = None) -> Task:
        key, self._next = self._next, self._next + 1
        self._queue.append((key, fn, args))
        if callback is not None:
            self._callbacks[key] = callback
        self._dispatch()
        return Task(self, key)

    def _dispatch(self) -> None:
        for w in self._workers:
            if not self._queue:
                return
            if w.key is None:
                key, fn, args = self._queue.popleft()
                w.key = key
                try:
                    w.tasks.send((fn, args))
                except OSError:  # it died idle: its task is lost with it
                    self._lost(w)

    def _lost(self, w: _Worker) -> None:
        _, status = os.waitpid(w.pid, 0)
        w.close()
        self._workers.remove(w)  # reaped: close() must not signal its pid (the kernel may reuse it)
        raise WorkerLostError(
            f"a worker process died in the middle of its task ({_status(status)}); the run stopped",
            hint="a worker killed by SIGKILL is often the kernel's out-of-memory killer (see dmesg): "
            "try a smaller --jobs",
        )

    def _collect(self, timeout: float | None) -> None:
        """Take the results ready within `timeout`, replace workers that ended, send more tasks."""
        busy = {w.results: w for w in self._workers if w.key is not None}
        for conn in multiprocessing.connection.wait(list(busy), timeout):
            w = busy[conn]
            try:
                reply = conn.recv()
            except (EOFError, OSError):
                self._lost(w)
            except Exception as e:  # a reply that does not unpickle (the message was read whole)
                reply = ("error", RuntimeError(f"a worker's reply could not be read: {type(e).__name__}: {e}"))
            key, w.key = w.key, None
            self._results[key] = reply
            w.done += 1
            callback = self._callbacks.pop(key, None)
            if callback is not None and reply[0] == "ok":
                callback(reply[1])
            if self._limit is not None and w.done >= self._limit:  # it ends by itself: a fresh one
                os.waitpid(w.pid, 0)
                w.close()
                i = self._workers.index(w)
                self._workers[i] = _Worker(self._parent, self._initializer, self._limit, self._workers)
        self._dispatch()

    def result(self, key: int):
        while key not in self._results:
            if not any(w.key is not None for w in self._workers) and not self._queue:
                raise RuntimeError(f"task {key}: no worker holds it (its result was taken, or the pool is closed)")
            self._collect(None)
        kind, value = self._results.pop(key)
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        """Stop every worker now (a task under way is abandoned) and reap it."""
        for w in self._workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGKILL)
        for w in self._workers:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(w.pid, 0)
            w.close()
        self._workers = []


class Task:
    """One submitted task: get() its result (its exception raised), or WorkerLostError."""

    def __init__(self, pool: ForkPool, key: int):
        self._pool, self.key = pool, key

    def get(self):
        return self._pool.result(self.key)


def fork_pool(jobs: int, initializer: Callable[[], None] | None = None, worker_tasks: int | None = None) -> ForkPool:
    """A ForkPool of `jobs` forked workers, with this process's objects frozen out of the garbage
    collector (gc.freeze, as CPython's docs advise before a fork) until close_pool: collections
    here and in the workers then never walk what was loaded before (modules, the tokenizer, the
    run's state), and the workers do not copy the shared pages such a walk touches. Objects still
    go when their last reference does; only cycles among them wait for close_pool. make bench's
    `--jobs 2` rows measure it. `worker_tasks`: each worker is replaced by a fresh fork after that
    many tasks (Pool's maxtasksperchild; None: never)."""
    import gc

    gc.freeze()
    try:
        return ForkPool(jobs, initializer, worker_tasks)
    except BaseException:
        gc.unfreeze()
        raise


def close_pool(pool: ForkPool) -> None:
    """Stop a fork_pool's workers and give the frozen objects back to the collector."""
    import gc

    try:
        pool.close()
    finally:
        gc.unfreeze()
