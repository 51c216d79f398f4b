"""Warnings users see: one per cause, never one per record.

The CLI installs a handler that prints to stderr; a library user gets Python warnings
(OmnitokWarning) unless they install their own handler.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable


class OmnitokWarning(UserWarning):
    pass


_seen: set[str] = set()
_lock = threading.Lock()
_handler: Callable[[str], None] | None = None


def set_handler(handler: Callable[[str], None] | None) -> None:
    global _handler
    _handler = handler


def warn_once(cause: str, message: str) -> bool:
    """Report `message` unless a notice with the same cause was already given; True if reported."""
    with _lock:
        if cause in _seen:
            return False
        _seen.add(cause)
    if _handler is not None:
        _handler(message)
    else:
        warnings.warn(message, OmnitokWarning, stacklevel=3)
    return True


def reset() -> None:
    with _lock:
        _seen.clear()
