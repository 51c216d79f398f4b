"""Bounds on provider calls: how many one request may cause, and how many run at once.

A server lends its API keys to whoever reaches it. Unbounded, one request of 2,000 texts spends
2,000 calls of the server's quota, and a few such requests at once open hundreds of connections
with its key. Two bounds, set once for the process (budget.configure, from `omnitok
serve --max-upstream-per-request / --max-upstream-concurrency`):

- a Budget per request, held in a context variable: every HTTP call to a provider (retries and
  claude_text's framing measurements included) takes one from it before it is sent; the call past
  the limit is never sent but raised as an UpstreamLimitError (422 over REST). Cache hits make no
  call and take nothing.
- a process-wide semaphore: at most `concurrency` calls in flight; a call that gets no slot within
  its timeout is a RemoteError (the run counts offline, labelled, as for any provider failure).

The command line and the Python API set neither unless asked: there the caller spends their own
key. Context variables do not follow work into a thread pool (loop.run_in_executor,
ThreadPoolExecutor.submit), so the code that hands work to a thread copies the context
(contextvars.copy_context().run): omnitok.runtime and RemoteStrategy do.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar

from ..errors import RemoteError, UpstreamLimitError

_per_request: int | None = None
_slots: threading.BoundedSemaphore | None = None
_concurrency: int | None = None
_current: ContextVar[Budget | None] = ContextVar("omnitok_upstream_budget", default=None)


class Budget:
    """The provider calls one request may still make (shared by the threads that work for it)."""

    __slots__ = ("_lock", "limit", "used")

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def need(self, calls: int) -> None:
        """Refuse now, before any call, work that needs more calls than are left."""
        if self.used + calls > self.limit:
            raise UpstreamLimitError(self.limit)

    def take(self) -> None:
        with self._lock:
            if self.used >= self.limit:
                raise UpstreamLimitError(self.limit)
            self.used += 1


def configure(per_request: int | None, concurrency: int | None) -> None:
    """Set both bounds for this process (None: no bound)."""
    global _per_request, _slots, _concurrency
    for name, value in (("per_request", per_request), ("concurrency", concurrency)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number of at least 1, or None")
    _per_request = per_request
    _concurrency = concurrency
    _slots = threading.BoundedSemaphore(concurrency) if concurrency else None


def limits() -> tuple[int | None, int | None]:
    """(calls a request may make, calls in flight at once); None: no bound."""
    return _per_request, _concurrency


def fresh(fn, /, *args, **kwargs):
    """`fn(*args, **kwargs)` as one request: under a new Budget when a per-request bound is set."""
    if _per_request is None:
        return fn(*args, **kwargs)
    token = _current.set(Budget(_per_request))
    try:
        return fn(*args, **kwargs)
    finally:
        _current.reset(token)


def need(calls: int) -> None:
    """Refuse at once a batch that cannot fit in what the current request has left."""
    budget = _current.get()
    if budget is not None:
        budget.need(calls)


@contextlib.contextmanager
def call(provider: str, timeout: float) -> Iterator[None]:
    """Around one HTTP call to a provider: one call taken from the request's budget, and a slot
    among those in flight held while it runs."""
    budget = _current.get()
    if budget is not None:
        budget.take()
    slots = _slots
    if slots is None:
        yield
        return
    if not slots.acquire(timeout=timeout):
        raise RemoteError(
            provider,
            f"{_concurrency} provider calls are already in flight on this server and none ended within {timeout:g} s",
        )
    try:
        yield
    finally:
        slots.release()
