"""The tokenizer strategy protocol every counting backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

# What an engine offers beyond counting, for omnitok.tokens (encode / decode / truncate):
#   encode(text) -> ids             the ids whose number count_batch gives, for plain text
#   decode(ids) -> str              the tokenizer's own decoding (a cut character: U+FFFD)
#   token_bytes(id) -> bytes        one token as bytes; KeyError if the id is not in the vocabulary
#   vocab_size                      one past the largest id
#   encode_cuts(text) -> (ids, cuts) optional: where the text is cut after each token (cut_spans)
ENCODE_METHODS = ("encode", "decode", "token_bytes", "vocab_size")


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

    def warm(self) -> None:
        """Do once here, before the pipeline forks workers, what each worker would otherwise do
        on its first text: import numpy (gigatoken's results), build the Unicode guard's table,
        the engine's lazy set-up. Measured (o200k, 2 workers): the first shard of each worker
        took 0.25-0.37 s instead of 0.14-0.17 s, for 0.08 s here. The guard's regex and tables are
        built explicitly: this Latin-1 text is answered without them, and each worker (a fresh fork
        every few shards) built them again on its first other text."""
        self._engine.count_batch(["h\u00e9llo w\u00f6rld 123"])
        from .unicode_guard import ReferenceGuarded, prepare

        if isinstance(self._engine, ReferenceGuarded):
            prepare(self._engine._patterns)

    def early_reference(self):
        """The engine's reference loaded in a process of its own before the engine itself
        (tokenizers.early_reference) while that process is open; else None."""
        ref = getattr(self._engine, "_early", None)
        return ref if ref is not None and ref.open else None

    def known_vocab_size(self) -> int:
        """The vocabulary's size, from the fast engine where it knows it (vocab_size may load a
        reference engine to answer: 1.3 s for Gemma 4)."""
        return getattr(self._engine, "fast_vocab_size", None) or self.vocab_size

    def counts_at_once(self, text: str) -> bool:
        """Whether counting `text` now loads nothing: no reference engine, not loaded yet, for a
        text that needs one (runtime.count_inline asks, on an event loop's thread: the lazy load
        of o200k's reference held the loop ~0.2 s)."""
        from .unicode_guard import ReferenceGuarded, needs_reference

        e = self._engine
        return not isinstance(e, ReferenceGuarded) or e._reference is not None or not needs_reference(text, e._patterns)

    def defers(self) -> bool:
        """Whether shard workers may leave texts for a reference engine not loaded yet
        (unicode_guard.DEFER_REFERENCE)."""
        from .unicode_guard import ReferenceGuarded

        return isinstance(self._engine, ReferenceGuarded) and self._engine._reference is None

    def count(self, text: str) -> int:
        one = getattr(self._engine, "count", None)  # an engine's one-text count, where it has one
        return one(text) if one is not None else self._engine.count_batch([text])[0]

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return self._engine.count_batch(texts)

    # --- encoding (omnitok.tokens), where the engine offers it --------------------------------

    @property
    def encodes(self) -> bool:
        """Whether the engine can encode and decode (a plugin engine may only count)."""
        return all(hasattr(type(self._engine), name) for name in ENCODE_METHODS)

    def encode(self, text: str) -> list[int]:
        return self._engine.encode(text)

    def encode_cuts(self, text: str) -> tuple[list[int], list[int | None]] | None:
        """(ids, cuts): cuts[k - 1] is the character offset where the text's first k tokens end,
        None where that is inside a character; None if the engine cannot say."""
        cuts = getattr(self._engine, "encode_cuts", None)
        return cuts(text) if cuts is not None else None

    def decode(self, ids: Sequence[int]) -> str:
        return self._engine.decode(ids)

    def token_bytes(self, token_id: int) -> bytes:
        return self._engine.token_bytes(token_id)

    @property
    def vocab_size(self) -> int:
        return self._engine.vocab_size


def cut_spans(spans: Sequence[tuple[int, int]]) -> list[int | None]:
    """Cuts (see EngineStrategy.encode_cuts) from tokens' (start, end) character spans: the text
    can be cut after a token where the next one starts at or after every span so far ends
    (tokens of one character, as byte-level BPE splits an emoji, share its span)."""
    cuts: list[int | None] = []
    reach = 0
    for k, (_, end) in enumerate(spans):
        reach = max(reach, end)
        following = spans[k + 1][0] if k + 1 < len(spans) else reach
        cuts.append(reach if following >= reach else None)
    return cuts
