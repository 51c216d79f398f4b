"""BPE engines for OpenAI rank files. Both count like tiktoken's `encode_ordinary`: text that
looks like a special token (`<|endoftext|>`) is counted as plain text.

- `gigatoken` (Rust): the default; several times tiktoken's batch throughput (`make bench`'s
  throughput steps measure it) and identical counts (tests/test_engine_equivalence.py guards that
  against tiktoken).
- `tiktoken`: the reference, and the fallback where gigatoken is not installed or cannot load
  a rank file (p50k_base).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .openai_encodings import EncodingSpec
from .unicode_guard import OPENAI, ReferenceGuarded, _clean_surrogates

_CONTINUATION = bytes(range(0x80, 0xC0))  # UTF-8 bytes that continue a character


def read_ranks(path: Path) -> dict[bytes, int]:
    """Parse a .tiktoken rank file (base64 token, space, rank a line). The store has verified it;
    tiktoken's own loader would also copy it into TIKTOKEN_CACHE_DIR, which we must not touch.
    (binascii over the split fields, faster than base64.b64decode a line: a reference engine is
    loaded on a run's critical path.)"""
    from binascii import a2b_base64

    fields = path.read_bytes().split()
    if len(fields) % 2:
        raise ValueError(f"{path}: not a rank file (an odd number of fields)")
    return dict(zip(map(a2b_base64, fields[0::2]), map(int, fields[1::2]), strict=True))


def spec_ranks(spec: EncodingSpec, path: Path) -> dict[bytes, int]:
    """The ranks of `spec` as a dict: the store verified `path` against spec.sha256; the derived
    form (assets/rank_cache.py) is checked against both."""
    from ..assets.rank_cache import load_ranks

    return load_ranks(path, spec.file, spec.sha256, read_ranks)


def cuts_of(ids: Sequence[int], text: str, token_bytes) -> list[int | None]:
    """After each token of `ids` (the encoding of `text`), the character offset its bytes end at,
    None inside a character: characters so far are the UTF-8 lead bytes so far."""
    data = text.encode("utf-8", "surrogatepass")
    cuts: list[int | None] = []
    end = chars = 0
    for token in ids:
        b = token_bytes(token)
        end += len(b)
        chars += len(b.translate(None, _CONTINUATION))
        cuts.append(chars if end >= len(data) or data[end] & 0xC0 != 0x80 else None)
    return cuts


class TiktokenEngine:
    name = "tiktoken"

    def __init__(self, spec: EncodingSpec, path: Path, threads: int = 1, ranks: dict[bytes, int] | None = None):
        """`ranks`: the rank file's, already read (by pybpe, whose reference this is)."""
        import tiktoken

        if ranks is None:
            ranks = spec_ranks(spec, path)
        self._enc = tiktoken.Encoding(
            name=spec.name,
            pat_str=spec.pat_str,
            mergeable_ranks=ranks,
            special_tokens=spec.special_tokens,
            explicit_n_vocab=spec.explicit_n_vocab,
        )
        self.threads = threads

    @classmethod
    def supports(cls, spec: EncodingSpec) -> bool:
        return True

    def count_only(self) -> None:
        """For a process that only counts (tokenizers.early_reference's): drop the Encoding's rank
        dict, which tiktoken keeps only to pickle it (~25 MB for o200k); counting, encoding and
        decoding go through its Rust core."""
        self._enc._mergeable_ranks = {}

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        if len(texts) == 1 or self.threads <= 1:
            enc = self._enc.encode_ordinary
            return [len(enc(t)) for t in texts]
        return [len(t) for t in self._enc.encode_ordinary_batch(list(texts), num_threads=self.threads)]

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def encode_cuts(self, text: str) -> tuple[list[int], list[int | None]]:
        ids = self._enc.encode_ordinary(text)
        return ids, cuts_of(ids, text, self._enc.decode_single_token_bytes)

    def decode(self, ids: Sequence[int]) -> str:
        return self._enc.decode(list(ids))

    def token_bytes(self, token_id: int) -> bytes:
        return self._enc.decode_single_token_bytes(token_id)

    @property
    def vocab_size(self) -> int:
        return self._enc.n_vocab


class GigatokenEngine(ReferenceGuarded):
    name = "gigatoken"
    _patterns = OPENAI  # cl100k / o200k: letters, marks, numbers, white space (unicode_guard)

    def __init__(self, spec: EncodingSpec, path: Path, threads: int = 1):
        if spec.gigatoken_pretokenizer is None:
            raise ValueError(f"gigatoken cannot load {spec.name}")
        self._spec, self._path = spec, path
        self._lend()  # the first instance now: a bad file fails here, not at the first count

    @classmethod
    def supports(cls, spec: EncodingSpec) -> bool:
        try:
            import gigatoken  # noqa: F401
        except ImportError:
            return False
        return spec.gigatoken_pretokenizer is not None

    def _reference_factory(self):  # Unicode the two engines' tables class apart: tiktoken decides
        return TiktokenEngine(self._spec, self._path)

    def _encoder(self):
        # numpy here, not inside the first encode (gigatoken returns numpy arrays and imports numpy
        # from Rust when it first makes one): a Ctrl-C during that import became a pyo3
        # PanicException, a traceback and exit 1 instead of "omnitok: interrupted" and 130.
        import numpy  # noqa: F401
        from gigatoken.gigatoken_rs import BPETokenizer

        # No special tokens: `<|endoftext|>` in text is plain text, as in encode_ordinary.
        return BPETokenizer.from_tiktoken(str(self._path), self._spec.gigatoken_pretokenizer, {}).encode

    @staticmethod
    def _count_fast(encode, text: str) -> int:
        try:
            return ReferenceGuarded._count_fast(encode, text)
        except (UnicodeEncodeError, TypeError):  # lone surrogates
            return ReferenceGuarded._count_fast(encode, _clean_surrogates(text))

    @staticmethod
    def _encode_fast(encode, text: str) -> list[int]:
        try:
            return encode(text).tolist()
        except (UnicodeEncodeError, TypeError):  # lone surrogates
            return encode(_clean_surrogates(text)).tolist()
