"""L2: diskcache at a path, bounded in MB with LRU eviction, safe for several processes; plus the
Bloom filter that lets keys never stored skip the L2/L3 round trip, persisted beside it.

Everything read back from the directory is untrusted and checked before it is used:
- cache.db is inspected before diskcache opens it (a SQLite file with diskcache's tables and
  settings; not a database, a damaged one or another program's is refused, see `inspect`), and
  every setting diskcache would take from it is given explicitly instead;
- values are plain data (ints, text): SafeDisk refuses pickles, value files outside the directory
  or larger than MAX_VALUE_BYTES, and never removes a file outside the directory;
- each entry is stored as text with a checksum over its key and value (`seal`): an entry damaged,
  edited in the database or copied under another key reads as DAMAGED, never as a value (a
  checksum, not a signature: whoever can write the directory can write valid entries too);
- bloom.bin's header must match the configured filter and the file's size before a bit of it is
  allocated (`read_bloom`).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sqlite3
import stat
import struct
from pathlib import Path

from ..config import MAX_BLOOM_BITS, bloom_shape

BLOOM_FILE = "bloom.bin"
DB_FILE = "cache.db"
STATS_KEY = "__omnitok_stats__"
MAX_VALUE_BYTES = 16 * 2**20  # no value omnitok writes comes near; a bound on what a tampered cache can make us read
BLOOM_HEADER = struct.Struct("<dQQQQ")  # pybloom-live's: error rate, slices, bits per slice, capacity, count
SQLITE_MAGIC = b"SQLite format 3\x00"
CACHE_COLUMNS = {"rowid", "key", "raw", "store_time", "expire_time", "access_time", "access_count"}
CACHE_COLUMNS |= {"tag", "size", "mode", "filename", "value"}


class Damaged:
    """An entry whose checksum does not match its key and value: never decoded."""

    def __repr__(self) -> str:
        return "<entry failing its checksum>"


DAMAGED = Damaged()
CHECK_HEX = 16  # 64 bits of BLAKE2b: finds damage and edits, not a forger (see the module's docstring)


def _check(key: str, kind: str, text: str) -> str:
    data = f"{key}\0{kind}{text}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=CHECK_HEX // 2, person=b"omnitok-l2-v1").hexdigest()


def seal(key: str, value) -> str:
    """An entry as stored: checksum, kind (i: an int, s: text), then the value as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        kind, text = "i", str(value)
    elif isinstance(value, str):
        kind, text = "s", value
    else:
        raise TypeError(f"omnitok stores ints and text only, not {type(value).__name__}")
    return _check(key, kind, text) + kind + text


def unseal(key: str, stored):
    """The value `seal` stored under `key` (an int or text), or DAMAGED."""
    if not isinstance(stored, str) or len(stored) <= CHECK_HEX:
        return DAMAGED
    check, kind, text = stored[:CHECK_HEX], stored[CHECK_HEX], stored[CHECK_HEX + 1 :]
    if kind not in ("i", "s") or check != _check(key, kind, text):
        return DAMAGED
    if kind == "i":
        digits = text[1:] if text.startswith("-") else text
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 20):
            return DAMAGED
        return int(text)
    return text


class UnsafeValue(Exception):
    """A value stored in a form omnitok never writes (a pickle, a file outside the cache, too big)."""


class DamagedCache(sqlite3.DatabaseError):
    """cache.db is not a usable omnitok cache. `kind`: "damaged" (not a database, malformed, or
    diskcache's tables broken: `cache clear` rebuilds it) or "foreign" (another program's SQLite
    database: left alone)."""

    def __init__(self, path: Path, kind: str, reason: str):
        super().__init__(f"{path} {reason}")
        self.path, self.kind, self.reason = path, kind, reason


def settings_for(size_mb: float) -> dict:
    """Every diskcache setting, given explicitly, so that none is taken from the database file."""
    import diskcache

    out = dict(diskcache.DEFAULT_SETTINGS)
    out.update(
        size_limit=int(size_mb * 1_000_000),
        eviction_policy="least-recently-used",
        statistics=0,
        tag_index=0,
        disk_min_file_size=2**15,
    )
    return out


def is_corruption(e: BaseException) -> bool:
    """A SQLite error that means the file is damaged (not busy, locked or read-only)."""
    if isinstance(e, DamagedCache):
        return e.kind == "damaged"
    name = getattr(e, "sqlite_errorname", "")
    if name:
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    text = str(e).lower()
    return "malformed" in text or "not a database" in text


def inspect(directory: Path) -> None:
    """Raise DamagedCache unless `directory`/cache.db is absent, empty, or a diskcache database
    whose settings are diskcache's own (read-only; a few ms)."""
    path = Path(directory) / DB_FILE
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_file():
        raise DamagedCache(path, "foreign", "is not a file")
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if not head:
        return
    if head != SQLITE_MAGIC:
        raise DamagedCache(path, "damaged", "is not a SQLite database")
    from urllib.parse import quote

    import diskcache
    from diskcache.core import METADATA

    try:
        con = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return  # cannot open it read-only here (WAL on a read-only directory): diskcache will say
    try:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return
        # diskcache makes Settings, fills it, then makes Cache, not in one transaction: a database
        # with diskcache's Settings table alone is one another process is creating right now
        # (several processes opening a new cache directory at once), which diskcache completes
        settings_columns = [row[1] for row in con.execute("PRAGMA table_info(Settings)")]
        creating = tables == {"Settings"} and settings_columns == ["key", "value"]
        if not creating and not {"Cache", "Settings"} <= tables:
            raise DamagedCache(path, "foreign", f"is not an omnitok cache (tables: {', '.join(sorted(tables)[:5])})")
        columns = {row[1] for row in con.execute("PRAGMA table_info(Cache)")} | {"rowid"}
        if not creating and not columns >= CACHE_COLUMNS:
            raise DamagedCache(path, "damaged", "has a broken Cache table (columns missing)")
        known = set(diskcache.DEFAULT_SETTINGS) | set(METADATA)
        for key, value in con.execute("SELECT key, value FROM Settings LIMIT 100"):
            if key not in known:
                raise DamagedCache(path, "damaged", f"has an unknown setting {str(key)[:40]!r}")
            if key in METADATA and not (isinstance(value, int) and value >= 0):
                raise DamagedCache(path, "damaged", f"has a broken {key} ({str(value)[:40]!r})")
    except sqlite3.DatabaseError as e:
        if isinstance(e, DamagedCache):
            raise
        if is_corruption(e):
            raise DamagedCache(path, "damaged", f"is damaged ({e})") from None
    finally:
        con.close()


def remove_database(directory: Path) -> None:
    """Delete a damaged cache.db (with its journal files and the Bloom filter beside it)."""
    directory = Path(directory)
    for name in (DB_FILE, DB_FILE + "-wal", DB_FILE + "-shm", DB_FILE + "-journal", BLOOM_FILE):
        (directory / name).unlink(missing_ok=True)


def _safe_disk_class():
    import diskcache
    from diskcache.core import MODE_BINARY, MODE_PICKLE, MODE_TEXT

    class SafeDisk(diskcache.Disk):
        def _inside(self, filename) -> str | None:
            """The full path of a value file if it lies inside the cache directory, else None."""
            if not isinstance(filename, str) or not filename or os.path.isabs(filename) or "\0" in filename:
                return None
            parts = filename.replace("\\", "/").split("/")
            if ".." in parts:
                return None
            full = os.path.join(self._directory, filename)
            real, root = os.path.realpath(full), os.path.realpath(self._directory)
            return full if real.startswith(root + os.sep) else None

        def fetch(self, mode, filename, value, read):
            if mode == MODE_PICKLE:
                raise UnsafeValue("a pickled value (omnitok never unpickles)")
            if mode in (MODE_BINARY, MODE_TEXT) and filename is not None:
                full = self._inside(filename)
                if full is None:
                    raise UnsafeValue("a value file outside the cache directory")
                try:
                    st = os.stat(full)
                except OSError:
                    st = None  # gone (evicted meanwhile): diskcache's own read says so, a miss
                if st is not None and (not stat.S_ISREG(st.st_mode) or st.st_size > MAX_VALUE_BYTES):
                    raise UnsafeValue("a value file that is not a plain file or is too large")
            try:
                return super().fetch(mode, filename, value, read)
            except UnicodeDecodeError:
                raise UnsafeValue("a text value that is not UTF-8") from None

        def get(self, key, raw):
            if not raw:
                raise UnsafeValue("a pickled key (omnitok never unpickles)")
            return super().get(key, raw)

        def store(self, value, read, key=None):
            if not isinstance(value, (int, str, bytes)) or isinstance(value, bool):
                raise TypeError(f"omnitok stores plain data only, not {type(value).__name__}")
            return super().store(value, read, key=key)

        def remove(self, file_path):
            if self._inside(file_path) is not None:  # a tampered row never deletes a file elsewhere
                super().remove(file_path)

    return SafeDisk


class DiskTier:
    name = "l2"

    def __init__(self, directory: Path, size_mb: float = 1024):
        import diskcache

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        inspect(self.directory)
        self.cache = diskcache.Cache(str(self.directory), disk=_safe_disk_class(), timeout=10, **settings_for(size_mb))

    def get_many(self, keys: list[str]) -> list[object | None]:
        """Values for keys (ints or text, as stored), None for a miss, DAMAGED for an entry whose
        checksum does not match."""
        out: list[object | None] = []
        for key in keys:
            stored = self.cache.get(key, default=None, retry=True)
            out.append(None if stored is None else unseal(key, stored))
        return out

    def set_many(self, items: dict[str, object]) -> None:
        """Store ints and text, each with its checksum (`seal`)."""
        # One transaction per entry: inside diskcache.transact() its size-limit culling misfires
        # (measured: a 1 MB cache emptied itself completely).
        for key, value in items.items():
            self.cache.set(key, seal(key, value), tag=key.split(":", 1)[0], retry=True)

    def _setting(self, key: str) -> int | None:
        """diskcache's running count or size, if it is sane (a damaged one is not trusted)."""
        row = self.cache._sql("SELECT value FROM Settings WHERE key = ?", (key,)).fetchone()
        value = row[0] if row else None
        return value if isinstance(value, int) and value >= 0 else None

    def size(self) -> int:
        n = self._setting("count")
        if n is None:  # the running count is damaged: count the rows
            n = self.cache._sql("SELECT COUNT(*) FROM Cache").fetchone()[0]
        return max(0, n - (STATS_KEY in self.cache))

    def volume_bytes(self) -> int:
        ((pages,),) = self.cache._sql("PRAGMA page_count").fetchall()
        return pages * self.cache._page_size + (self._setting("size") or 0)

    def stats_raw(self):
        """The stored statistics entry as stored (or None; a pickled one is ignored)."""
        try:
            return self.cache.get(STATS_KEY, retry=True)
        except UnsafeValue:
            return None

    def clear(self, tag: str | None = None) -> int:
        if tag is None:
            stats, had = self.stats_raw(), STATS_KEY in self.cache
            n = self.cache.clear(retry=True) - had
            if isinstance(stats, str):  # the statistics outlive a clear
                self.cache.set(STATS_KEY, stats)
            return max(n, 0)
        return self.cache.evict(tag, retry=True)

    def keys(self):
        """Every key omnitok could have written (text keys; pickled or foreign ones skipped)."""
        sql = self.cache._sql
        last = 0
        while True:
            rows = sql(
                "SELECT rowid, key FROM Cache WHERE rowid > ? AND raw = 1 ORDER BY rowid LIMIT 1000", (last,)
            ).fetchall()
            if not rows:
                return
            for rowid, key in rows:
                last = rowid
                if isinstance(key, str) and key != STATS_KEY:
                    yield key

    def integrity(self) -> str:
        """SQLite's quick_check: 'ok' or the first problems found (reads the whole file)."""
        rows = self.cache._sql("PRAGMA quick_check(5)").fetchall()
        return "; ".join(str(r[0]) for r in rows)

    def close(self) -> None:
        self.cache.close()


# --- the Bloom filter -------------------------------------------------------------------------


class DamagedBloom(ValueError):
    pass


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


def read_bloom(path: Path, capacity: int, error_rate: float):
    """The filter saved at `path` if it is the one these settings make; None if the file is absent
    or was made with other settings (the caller starts afresh). DamagedBloom if it is damaged.

    Nothing is allocated from the file's say-so: the header must describe exactly the filter that
    `capacity` and `error_rate` give (checked, bounded settings), and the file must be exactly the
    size of that header and bit array, before the bits are read."""
    from bitarray import bitarray
    from pybloom_live import BloomFilter

    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise DamagedBloom("not a regular file")
    if st.st_size < BLOOM_HEADER.size:
        raise DamagedBloom(f"{st.st_size} bytes, shorter than its {BLOOM_HEADER.size}-byte header")
    with open(path, "rb") as f:
        rate, slices, per_slice, cap, count = BLOOM_HEADER.unpack(f.read(BLOOM_HEADER.size))
        plausible = math.isfinite(rate) and 0 < rate < 1 and 1 <= cap <= 10**9
        plausible = plausible and 0 < slices * per_slice <= MAX_BLOOM_BITS and count <= cap + 1
        if plausible and (cap, rate) != (capacity, error_rate):
            return None  # settings changed: start a new filter (the caller rebuilds it from L2)
        want_slices, want_per_slice = bloom_shape(capacity, error_rate)
        if not plausible or (slices, per_slice) != (want_slices, want_per_slice):
            raise DamagedBloom("its header does not describe a filter of the configured size")
        nbytes = (slices * per_slice + 7) // 8
        if st.st_size != BLOOM_HEADER.size + nbytes:
            raise DamagedBloom(f"{st.st_size} bytes where its header says {BLOOM_HEADER.size + nbytes}")
        data = f.read(nbytes + 1)
    if len(data) != nbytes:
        raise DamagedBloom("it changed while being read")
    bloom = BloomFilter.__new__(BloomFilter)
    bloom._setup(rate, slices, per_slice, cap, count)
    bits = bitarray(endian="little")
    bits.frombytes(data)
    del bits[slices * per_slice :]
    bloom.bitarray = bits
    return bloom


class Bloom:
    """pybloom-live's BloomFilter, persisted as its own binary format (no pickle), merged with the
    file on disk under a lock when saved so that several processes add to one filter."""

    def __init__(self, path: Path, capacity: int, error_rate: float):
        from pybloom_live import BloomFilter

        self.path = Path(path)
        self.capacity = capacity
        self.error_rate = error_rate
        self.full = False
        loaded = read_bloom(self.path, capacity, error_rate)  # DamagedBloom on a damaged file
        self.loaded_from_disk = loaded is not None
        self.filter = loaded or BloomFilter(capacity, error_rate)
        self.full = self.filter.count > capacity
        self.dirty = False

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

        lock_path = self.path.with_suffix(".lock")
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            merged = self.filter
            with contextlib.suppress(OSError, ValueError):  # a damaged file on disk is replaced
                on_disk = read_bloom(self.path, self.capacity, self.error_rate)
                if on_disk is not None:
                    merged = _union(merged, on_disk)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            with open(tmp, "wb") as f:
                merged.tofile(f)
            os.replace(tmp, self.path)
        self.dirty = False
