"""`pybpe`: tiktoken's byte-pair encoding in Python, for inputs too small to pay for building an engine.

Building tiktoken's CoreBPE for o200k_base takes 0.2-0.5 s of CPU (its 200,000 ranks copied into
Rust maps, its pattern compiled); gigatoken's tokenizer about as long. For a one-line count that is
the whole run. This engine needs the ranks only as a table it maps (assets/rank_table.py: a hash
table in a file, checked by its digest, looked up where it lies) and the split pattern compiled by
the `regex` module (tiktoken's own dependency; ~2 ms); it then merges in Python, far slower per
byte than either engine, so the CLI gives it inputs of at most 64 KiB (cli/_small.py).

The same ids as tiktoken's `encode_ordinary`, by the same rule: the text split by the encoding's
pattern, each piece that is a token taken whole, the others merged pair by pair, the lowest rank
first and of equal ranks the leftmost (tiktoken's `_byte_pair_merge`; here over a heap of
(rank, position), so a long piece, a run of digits or spaces, costs n log n and not n^2). What
could still differ is the split: the `regex` module and tiktoken's Rust regex may class a
character differently (a newer Unicode's letter). So only texts whose every character is below
U+0100 (ASCII, Latin-1: classes unchanged since Unicode 1.1) are split here; tests/test_pybpe.py
compares every such character, in every context the patterns tell apart, with tiktoken for each
OpenAI encoding. Other texts (and lone surrogates) are tiktoken's, loaded on first need
(ReferenceGuarded) from the ranks as a dict.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from pathlib import Path

from . import unicode_guard
from .openai_encodings import EncodingSpec
from .unicode_guard import ReferenceGuarded


def _latin1(text: str) -> bool:
    """Whether every character of the text is below U+0100. (Not from the str's storage width,
    unicode_guard._width: a str that C code has asked for UTF-8 keeps that copy and looks wider.)"""
    if text.isascii():
        return True
    try:
        text.encode("latin-1")  # a copy at memcpy speed for a 1-byte str; fails at once for others
    except UnicodeEncodeError:
        return False
    return True


def _merge(piece: bytes, get) -> list[int]:
    """The ids of one piece that is not a token (`get`: a token's rank, or None): tiktoken's merge
    order (lowest rank, then leftmost), over a heap with stale entries skipped instead of a rescan
    per merge."""
    n = len(piece)
    # parts as a linked list of byte offsets: start[i] begins a part, nxt/prv link live parts
    nxt = list(range(1, n + 1))
    prv = list(range(-1, n - 1))
    alive = [True] * n
    heap = []
    for i in range(n - 1):
        rank = get(piece[i : i + 2])
        if rank is not None:
            heap.append((rank, i, i + 2))
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        rank, i, end = pop(heap)
        # stale: i merged into its left neighbour, or its right neighbour changed since
        if not alive[i] or nxt[i] >= n or nxt[nxt[i]] != end:
            continue
        j = nxt[i]
        alive[j] = False
        nxt[i] = end
        if end < n:
            prv[end] = i
            after = nxt[end]
            r = get(piece[i:after])
            if r is not None:
                push(heap, (r, i, after))
        p = prv[i]
        if p >= 0:
            r = get(piece[p:end])
            if r is not None:
                push(heap, (r, p, end))
    out = []
    i = 0
    while i < n:
        out.append(get(piece[i : nxt[i]]))
        i = nxt[i]
    return out


def _inverse(ranks: dict[bytes, int]):
    """rank -> token bytes over `ranks` (KeyError for no token), the inverse made on first use."""
    inverse: dict[int, bytes] = {}

    def token(rank: int) -> bytes:
        if not inverse:
            inverse.update((r, t) for t, r in ranks.items())
        return inverse[rank]

    return token


class PyBpeEngine(ReferenceGuarded):
    name = "pybpe"

    def __init__(self, spec: EncodingSpec, path: Path, threads: int = 1):
        import regex

        from ..assets import rank_table

        self._spec, self._path = spec, path
        self._dict: dict[bytes, int] | None = None
        # The ranks as a mapped table (assets/rank_table.py: no 200,000 objects to make), or, where
        # that form cannot be used, as the dict.
        table = rank_table.load(spec.file, spec.sha256, self._ranks)
        if table is not None:
            self._get, self._token, self._top = table.get, table.token, table.top
        else:
            ranks = self._ranks()
            self._get, self._token, self._top = ranks.get, _inverse(ranks), max(ranks.values())
        # An id with two names (o200k_harmony's 200018: <|endofprompt|> and <|reserved_200018|>)
        # decodes to the first, as tiktoken decodes it.
        self._special: dict[int, bytes] = {}
        for token, rank in spec.special_tokens.items():
            self._special.setdefault(rank, token.encode())
        self._split = regex.compile(spec.pat_str).findall

    def _ranks(self) -> dict[bytes, int]:
        """The ranks as a dict (rank_cache's derived file, or the verified rank file parsed)."""
        if self._dict is None:
            from .engines import spec_ranks

            self._dict = spec_ranks(self._spec, self._path)
        return self._dict

    @classmethod
    def supports(cls, spec: EncodingSpec) -> bool:
        return True

    def _reference_factory(self):  # characters above U+00FF, lone surrogates: tiktoken decides
        from .engines import TiktokenEngine

        return TiktokenEngine(self._spec, self._path, ranks=self._dict)

    def _ids(self, text: str) -> list[int]:
        get = self._get
        out: list[int] = []
        for piece in self._split(text):
            data = piece.encode("utf-8")
            token = get(data)
            if token is not None:
                out.append(token)
            else:
                out += _merge(data, get)
        return out

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [self.count(text) for text in texts]

    def count(self, text: str) -> int:
        if _latin1(text):
            return len(self._ids(text))
        if unicode_guard.DEFER_REFERENCE:  # a shard worker: the pipeline's one reference process counts it
            return unicode_guard.DEFERRED
        return self._ref().count_batch([text])[0]

    def encode(self, text: str) -> list[int]:
        return self._ids(text) if _latin1(text) else self._ref().encode(text)

    def encode_cuts(self, text: str) -> tuple[list[int], list[int | None]]:
        """As TiktokenEngine.encode_cuts: the ids, and after each token the character offset its
        bytes end at (None inside a character)."""
        if not _latin1(text):
            return self._ref().encode_cuts(text)
        from .engines import cuts_of

        ids = self._ids(text)
        return ids, cuts_of(ids, text, self.token_bytes)

    def decode(self, ids: Sequence[int]) -> str:
        """tiktoken's decode: the tokens' bytes, a cut character as U+FFFD; KeyError for an id
        that is no token (special tokens are)."""
        return b"".join([self.token_bytes(i) for i in ids]).decode("utf-8", "replace")

    def token_bytes(self, token_id: int) -> bytes:
        special = self._special.get(token_id)
        return special if special is not None else self._token(token_id)

    @property
    def vocab_size(self) -> int:
        if self._spec.explicit_n_vocab is not None:
            return self._spec.explicit_n_vocab
        return max([self._top, *self._special]) + 1
