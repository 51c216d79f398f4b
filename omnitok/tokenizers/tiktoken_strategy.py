"""A counting strategy for an OpenAI encoding: TiktokenStrategy (exact, local) and its loader."""

from __future__ import annotations

import functools
import hashlib

from ..assets.store import find_tiktoken_file
from ..errors import UnknownEncodingError
from .base import EngineStrategy
from .openai_encodings import ENCODINGS
from .registry import pick_engine

# Bump when the counting rule of the strategy changes (it is part of the fingerprint).
TIKTOKEN_RULE_VERSION = 1


class TiktokenStrategy(EngineStrategy):
    """Exact local counts for an OpenAI encoding, as tiktoken's encode_ordinary counts them."""

    name = "tiktoken"
    exact = True

    def __init__(self, encoding: str, engine: str = "auto", threads: int = 1):
        if encoding not in ENCODINGS:
            raise UnknownEncodingError(encoding, sorted(ENCODINGS))
        spec = ENCODINGS[encoding]
        path, where = find_tiktoken_file(spec.file, spec.url, spec.sha256)
        cls = pick_engine(spec, engine)
        self.encoding = encoding
        self.source = f"{where}: {path}"
        self._engine = cls(spec, path, threads=threads)
        self.engine = self._engine.name
        rule = f"{spec.sha256}\0{spec.pat_str}\0ordinary\0v{TIKTOKEN_RULE_VERSION}"
        self.fingerprint = f"tiktoken:{encoding}:" + hashlib.sha256(rule.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"TiktokenStrategy({self.encoding!r}, engine={self.engine!r})"


@functools.lru_cache(maxsize=16)
def load_strategy(encoding: str, engine: str = "auto", threads: int = 1) -> TiktokenStrategy:
    """A loaded strategy for an encoding, cached per process."""
    return TiktokenStrategy(encoding, engine, threads)
