"""A benchmark corpus of real text: the Python sources and docs on this machine, as JSONL records
of ~2 KB (split at line ends), deterministic for a given machine."""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import orjson

SUFFIXES = (".py", ".pyi", ".rst", ".md", ".txt", ".c", ".h", ".html")
CHUNK = 2000


def roots() -> list[str]:
    found = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], sys.base_prefix]
    found += ["/usr/share/doc", "/usr/include", "/usr/lib/python3", "/usr/share"]
    out = []
    for r in found:
        if os.path.isdir(r) and not any(r.startswith(o + os.sep) or r == o for o in out):
            out.append(r)
    return out


def _texts():
    seen = set()
    for root in roots():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.endswith(SUFFIXES):
                    continue
                path = os.path.realpath(os.path.join(dirpath, name))
                if path in seen:
                    continue
                seen.add(path)
                try:
                    text = Path(path).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                chunk: list[str] = []
                size = 0
                for line in text.splitlines(keepends=True):
                    chunk.append(line)
                    size += len(line)
                    if size >= CHUNK:
                        yield "".join(chunk)
                        chunk, size = [], 0
                if chunk:
                    yield "".join(chunk)


def build(path: Path, target_bytes: int) -> tuple[int, int]:
    """Write the corpus to `path` (reused if already built for this target); (records, text bytes)."""
    meta = path.with_suffix(".meta.json")
    if path.exists() and meta.exists():
        info = orjson.loads(meta.read_bytes())
        if info["target"] == target_bytes:
            return info["records"], info["text_bytes"]
    path.parent.mkdir(parents=True, exist_ok=True)
    records = text_bytes = 0
    tmp = path.with_suffix(".tmp")  # a reader of the old corpus never sees a half-written one
    with open(tmp, "wb") as f:
        for text in _texts():
            f.write(orjson.dumps({"id": records, "text": text}) + b"\n")
            records += 1
            text_bytes += len(text.encode("utf-8"))
            if text_bytes >= target_bytes:
                break
    os.replace(tmp, path)
    meta.write_bytes(orjson.dumps({"target": target_bytes, "records": records, "text_bytes": text_bytes}))
    return records, text_bytes


def _shift_table(k: int) -> bytes:
    """A bytes.translate table moving ASCII letters k places on (a->b for k=1, z->a), case kept;
    every other byte (UTF-8's multi-byte sequences included) unchanged."""
    table = bytearray(range(256))
    for base in (ord("a"), ord("A")):
        for i in range(26):
            table[base + i] = base + (i + k) % 26
    return bytes(table)


def into_page_cache(path: Path) -> None:
    """Read the file once, so that every timed run reads it from memory."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def build_shifted(path: Path, base_bytes: int, copies: int) -> tuple[int, int]:
    """Issue 26's gigabyte corpus: the first `base_bytes` of text of this module's corpus written
    `copies` times, copy k with its ASCII letters shifted k places (copy 0 as it is), so that no
    copy repeats another's words (an engine's caches see distinct text throughout), as JSONL
    records {"id", "text"} with ids 0.. across the copies. Reused if already built for these
    arguments; (records, text bytes)."""
    meta = path.with_suffix(".meta.json")
    want = {"base": base_bytes, "copies": copies}
    if path.exists() and meta.exists():
        info = orjson.loads(meta.read_bytes())
        if {k: info.get(k) for k in want} == want:
            return info["records"], info["text_bytes"]
    texts: list[bytes] = []
    size = 0
    for text in _texts():
        texts.append(text.encode("utf-8"))
        size += len(texts[-1])
        if size >= base_bytes:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    records = 0
    with open(tmp, "wb") as f:
        for k in range(copies):
            table = _shift_table(k)
            out = []
            for raw in texts:
                out.append(orjson.dumps({"id": records, "text": raw.translate(table).decode("utf-8")}) + b"\n")
                records += 1
            f.write(b"".join(out))
    os.replace(tmp, path)
    meta.write_bytes(orjson.dumps({**want, "records": records, "text_bytes": size * copies}))
    return records, size * copies
