"""L2: diskcache at a path, bounded in MB with LRU eviction, safe for several processes; plus the
Bloom filter that lets keys never stored skip the L2/L3 round trip, persisted beside it.

Values are plain data (ints, JSON text). diskcache would unpickle a value stored in its pickle
mode; SafeDisk refuses that mode, so a tampered database yields a miss and a warning, never code
execution.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

BLOOM_FILE = "bloom.bin"
STATS_KEY = "__omnitok_stats__"


class UnsafeValue(Exception):
    """A value stored in a form omnitok never writes (pickle)."""


def _safe_disk_class():
    import diskcache
    from diskcache.core import MODE_PICKLE

    class SafeDisk(diskcache.Disk):
        def fetch(self, mode, filename, value, read):
            if mode == MODE_PICKLE:
                raise UnsafeValue("a pickled value")
            return super().fetch(mode, filename, value, read)

        def get(self, key, raw):
            if not raw:
                raise UnsafeValue("a pickled key")
            return super().get(key, raw)

        def store(self, value, read, key=None):
            if not isinstance(value, (int, str, bytes)) or isinstance(value, bool):
                raise TypeError(f"omnitok stores plain data only, not {type(value).__name__}")
            return super().store(value, read, key=key)

    return SafeDisk


class DiskTier:
    name = "l2"

    def __init__(self, directory: Path, size_mb: float = 1024):
        import diskcache

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cache = diskcache.Cache(
            str(self.directory),
            size_limit=int(size_mb * 1_000_000),
            eviction_policy="least-recently-used",
            disk=_safe_disk_class(),
            timeout=10,
        )

    def get_many(self, keys: list[str]) -> list[object | None]:
        out: list[object | None] = []
        for key in keys:
            out.append(self.cache.get(key, default=None, retry=True))
        return out

    def set_many(self, items: dict[str, object]) -> None:
        # One transaction per entry: inside diskcache.transact() its size-limit culling misfires
        # (measured: a 1 MB cache emptied itself completely).
        for key, value in items.items():
            self.cache.set(key, value, tag=key.split(":", 1)[0], retry=True)

    def size(self) -> int:
        return len(self.cache) - (STATS_KEY in self.cache)

    def volume_bytes(self) -> int:
        return self.cache.volume()

    def clear(self, tag: str | None = None) -> int:
        if tag is None:
            stats = self.cache.get(STATS_KEY)
            n = self.cache.clear(retry=True)
            if stats is not None:  # the statistics outlive a clear
                self.cache.set(STATS_KEY, stats)
                n -= 1
            return n
        return self.cache.evict(tag, retry=True)

    def keys(self):
        for key in self.cache.iterkeys():
            if isinstance(key, str) and key != STATS_KEY:
                yield key

    def close(self) -> None:
        self.cache.close()


def _union(a, b):
    """Bit-OR of two filters with the same parameters. pybloom-live's own union() fails when one
    side was read from a file (its bit array is padded to whole bytes), so the bits are
    truncated to the filter's size first."""
    if (a.capacity, a.error_rate, a.num_bits) != (b.capacity, b.error_rate, b.num_bits):
        raise ValueError("Bloom filters with different parameters")
    merged = a.copy()
    n = a.num_bits
    merged.bitarray = a.bitarray[:n] | b.bitarray[:n]
    merged.count = max(a.count, b.count)
    return merged


class Bloom:
    """pybloom-live's BloomFilter, persisted as its own binary format (no pickle), merged with the
    file on disk under a lock when saved so that several processes add to one filter."""

    def __init__(self, path: Path, capacity: int, error_rate: float):
        from pybloom_live import BloomFilter

        self.path = Path(path)
        self.capacity = capacity
        self.error_rate = error_rate
        self.full = False
        self.loaded_from_disk = False
        self.filter = self._load() or BloomFilter(capacity, error_rate)
        self.dirty = False

    def _load(self):
        from pybloom_live import BloomFilter

        if not self.path.is_file():
            return None
        with open(self.path, "rb") as f:
            loaded = BloomFilter.fromfile(f)  # raises ValueError on a damaged file
        if loaded.capacity != self.capacity or loaded.error_rate != self.error_rate:
            return None  # settings changed: start a new filter (the caller rebuilds it from L2)
        self.loaded_from_disk = True
        return loaded

    def __contains__(self, key: str) -> bool:
        return key in self.filter

    def add_many(self, keys) -> None:
        for key in keys:
            try:
                self.filter.add(key)
            except IndexError:  # at capacity: stop trusting it rather than give false "never seen"
                self.full = True
                return
        self.dirty = True

    def save(self) -> None:
        if not self.dirty or self.full:
            return
        import fcntl

        from pybloom_live import BloomFilter

        lock_path = self.path.with_suffix(".lock")
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            merged = self.filter
            with contextlib.suppress(OSError, ValueError):
                if self.path.is_file():
                    with open(self.path, "rb") as f:
                        on_disk = BloomFilter.fromfile(f)
                    merged = _union(merged, on_disk)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            with open(tmp, "wb") as f:
                merged.tofile(f)
            os.replace(tmp, self.path)
        self.dirty = False
