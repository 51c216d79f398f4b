"""L1: an in-process LRU with a bound on entries and a time to live."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class MemoryTier:
    name = "l1"

    def __init__(self, max_entries: int = 100_000, ttl: float | None = 3600.0):
        self.max_entries = max_entries
        self.ttl = ttl
        self._data: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: list[str]) -> list[object | None]:
        now = time.monotonic()
        out: list[object | None] = []
        with self._lock:
            for key in keys:
                entry = self._data.get(key)
                if entry is None:
                    out.append(None)
                elif self.ttl is not None and now - entry[0] > self.ttl:
                    del self._data[key]
                    out.append(None)
                else:
                    self._data.move_to_end(key)
                    out.append(entry[1])
        return out

    def set_many(self, items: dict[str, object]) -> None:
        now = time.monotonic()
        with self._lock:
            for key, value in items.items():
                self._data[key] = (now, value)
                self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def size(self) -> int:
        return len(self._data)

    def clear(self, tag: str | None = None) -> int:
        with self._lock:
            if tag is None:
                n = len(self._data)
                self._data.clear()
                return n
            doomed = [k for k in self._data if k.startswith(tag + ":")]
            for k in doomed:
                del self._data[k]
            return len(doomed)
