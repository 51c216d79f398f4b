"""Cache keys: a hash over the strategy's fingerprint, the options that change a result, and the
item (a text, or a chat sent whole to an API). Two tokenizers never share a key: the fingerprint
changes with the vocabulary, the counting rule and omnitok's version of that rule."""

from __future__ import annotations

import hashlib
import json

from ..config import HASH_ALGORITHMS as ALGORITHMS
from ..errors import UsageError


def hasher(algorithm: str = "blake3"):
    if algorithm == "blake3":
        try:
            from blake3 import blake3

            return blake3
        except ImportError:  # the package is missing: the same keys cannot be promised
            raise UsageError(
                "hash_algorithm blake3 needs the blake3 package",
                hint='pip install blake3, or set hash_algorithm = "sha256" in the config\'s [cache]',
            ) from None
    if algorithm == "sha256":
        return hashlib.sha256
    raise UsageError(f"hash_algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")


def item_bytes(item) -> bytes:
    if isinstance(item, str):
        return b"t\0" + item.encode("utf-8", "surrogatepass")
    messages = getattr(item, "messages", None)
    if messages is not None:
        return b"c\0" + json.dumps(list(messages), sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
    raise TypeError(f"cannot key a {type(item).__name__}")


# The entries' format, part of every key: a change to what a tier stores (v2: L2 entries carry a
# checksum, L3 values a tag under a secret) gets new keys, so no entry of another format is read.
FORMAT = "v2"


class KeyMaker:
    """Keys for one strategy and option set: `<tag>:<hex digest>` (the tag lets `cache clear
    --model` find one tokenizer's entries)."""

    def __init__(self, fingerprint: str, options: str = "", algorithm: str = "blake3"):
        self._new = hasher(algorithm)
        self.tag = self._new(f"{FORMAT}\0{fingerprint}\0{options}".encode()).hexdigest()[:16]
        self._prefix = f"{FORMAT}\0{algorithm}\0{fingerprint}\0{options}\0".encode()

    def key(self, item) -> str:
        return f"{self.tag}:{self._new(self._prefix + item_bytes(item)).hexdigest()}"
