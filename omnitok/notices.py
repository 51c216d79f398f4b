"""Warnings users see: one per cause, never one per record.

The CLI installs a handler that prints to stderr; a library user gets Python warnings
(OmnitokWarning) unless they install their own handler.

A cause is a kind, then optionally `:` and what it concerns (`no-assets:<tokenizer>`). What it
concerns may come from a caller (a model id sent to `omnitok serve`), so each kind keeps at most
MAX_PER_KIND causes: past them, one more notice says the kind's further warnings are not shown,
and nothing more is kept or written for it. A long-lived server's memory and log then do not
grow with the ids strangers send.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable


class OmnitokWarning(UserWarning):
    pass


MAX_PER_KIND = 32

_seen: set[str] = set()
_per_kind: dict[str, int] = {}  # causes seen per kind (the part of a cause before its first ':')
_lock = threading.Lock()
_handler: Callable[[str], None] | None = None


def set_handler(handler: Callable[[str], None] | None) -> None:
    global _handler
    _handler = handler


def warn_once(cause: str, message: str) -> bool:
    """Report `message` unless a notice with the same cause was already given; True if reported."""
    kind = cause.partition(":")[0]
    with _lock:
        if cause in _seen:
            return False
        n = _per_kind.get(kind, 0)
        if n > MAX_PER_KIND:
            return False
        _per_kind[kind] = n + 1
        if n == MAX_PER_KIND:
            message = f"{MAX_PER_KIND} warnings of the kind '{kind}' so far: its further ones are not shown"
        else:
            _seen.add(cause)
    if _handler is not None:
        _handler(message)
    else:
        warnings.warn(message, OmnitokWarning, stacklevel=3)
    return True


def reset() -> None:
    with _lock:
        _seen.clear()
        _per_kind.clear()
