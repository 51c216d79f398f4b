"""The tokenizer strategy protocol every counting backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Engine(Protocol):
    """A BPE implementation that counts tokens of plain text (no special tokens)."""

    name: str

    def count_batch(self, texts: Sequence[str]) -> list[int]: ...


@runtime_checkable
class Strategy(Protocol):
    """How one model's tokens are counted.

    `name` says which strategy produced a count, `exact` whether it equals the provider's own
    tokenizer, and `fingerprint` changes whenever the vocabulary or the counting rule changes
    (it is part of every cache key).
    """

    name: str
    exact: bool
    encoding: str
    engine: str
    fingerprint: str

    def count(self, text: str) -> int: ...

    def count_batch(self, texts: Sequence[str]) -> list[int]: ...


class EngineStrategy:
    """A strategy whose counting is one engine's: the delegation both local strategies share."""

    _engine: Engine

    def prepare_for_fork(self) -> None:
        """Load, before the pipeline forks workers, what the engine would otherwise load lazily
        in each of them (a reference engine for rare texts)."""
        prepare = getattr(self._engine, "prepare_for_fork", None)
        if prepare is not None:
            prepare()

    def count(self, text: str) -> int:
        return self._engine.count_batch([text])[0]

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return self._engine.count_batch(texts)
