"""Which texts the fast engines may count differently from the reference.

gigatoken's pre-tokenizer and the reference regex engines (tiktoken's, `tokenizers`') carry
Unicode tables of different versions: a character assigned only recently (U+323B0, CJK Extension
J, Unicode 17) is a letter to tiktoken and not to gigatoken, and the counts differ (the
differential property test found it). Texts holding any code point unassigned in Unicode 14
(omnitok/data/unassigned.json, from Python's unicodedata) are therefore counted by the
reference engine. ASCII texts skip the check; others cost one table lookup of their code points.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "unassigned.json"


@functools.cache
def _table():
    """A boolean per code point, True where Unicode 14 assigns nothing; looked up for a whole text
    at once (numpy, a dependency: gigatoken hands back numpy arrays), several times faster than
    the regex class search it replaces, which on non-ASCII text had cost about as much as the
    encoding itself (tests/test_unicode_guard.py holds the answers to the ranges)."""
    import numpy as np

    table = np.zeros(0x110000, dtype=np.bool_)
    for a, b in json.loads(DATA.read_text())["ranges"]:
        table[a : b + 1] = True
    return table


def needs_reference(text: str) -> bool:
    """True if the text holds a code point newer than the fast engine's Unicode tables."""
    if text.isascii():
        return False
    import numpy as np

    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return bool(_table().take(points).any())


# Set in the pipeline's shard workers: a text that needs the reference engine is not counted
# there (count_batch gives DEFERRED for it) but sent back to the parent, which loads the reference
# once, so neither start-up nor memory depends on which worker meets such a text.
DEFER_REFERENCE = False
DEFERRED = -1


class ReferenceGuarded:
    """A fast engine with a reference engine behind it for the texts it may count differently
    (needs_reference). Subclasses give `_reference_factory`, `_count_fast` and `_encode_fast`;
    what the fast engine does not offer (offsets, decoding, the vocabulary) the reference gives."""

    _reference = None

    def _reference_factory(self):
        raise NotImplementedError

    def _count_fast(self, text: str) -> int:
        raise NotImplementedError

    def _encode_fast(self, text: str) -> list[int]:
        raise NotImplementedError

    def prepare_for_fork(self) -> None:
        """Load the reference now (before the pipeline forks), not lazily in every worker."""
        if self._reference is None:
            self._reference = self._reference_factory()

    def count_batch(self, texts) -> list[int]:
        # One call per text: gigatoken's per-text encode is faster than its batch calls once their
        # results are turned into Python objects; the pipeline uses processes for both cores.
        out = []
        count = self._count_fast
        for text in texts:
            if needs_reference(text):
                if DEFER_REFERENCE:
                    out.append(DEFERRED)
                    continue
                self.prepare_for_fork()
                out.append(self._reference.count_batch([text])[0])
            else:
                out.append(count(text))
        return out

    def encode(self, text: str) -> list[int]:
        if needs_reference(text):
            return self._ref().encode(text)
        return self._encode_fast(text)

    def encode_cuts(self, text: str):
        return self._ref().encode_cuts(text)

    def decode(self, ids) -> str:
        return self._ref().decode(ids)

    def token_bytes(self, token_id: int) -> bytes:
        return self._ref().token_bytes(token_id)

    @property
    def vocab_size(self) -> int:
        return self._ref().vocab_size

    def _ref(self):
        self.prepare_for_fork()
        return self._reference
