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
    with open(path, "wb") as f:
        for text in _texts():
            f.write(orjson.dumps({"id": records, "text": text}) + b"\n")
            records += 1
            text_bytes += len(text.encode("utf-8"))
            if text_bytes >= target_bytes:
                break
    meta.write_bytes(orjson.dumps({"target": target_bytes, "records": records, "text_bytes": text_bytes}))
    return records, text_bytes
