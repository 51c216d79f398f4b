"""The features of texts for a calibrated estimate (see omnitok.calibration): character classes
by script, byte statistics, the stratum of a text, and its tokens of the local vocabularies,
counted by the class of their first character that is not a space and by their rank (RANK_EDGES)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

# Character classes. A code point's class: ASCII by its kind, the rest by the block it is in (RANGES).
CLASSES = (
    "latin",  # ASCII letters, Latin-1 and Latin Extended letters
    "digit",  # ASCII digits
    "punct",  # ASCII punctuation
    "space",  # white space
    "greek",
    "cyrillic",
    "hebrew",
    "arabic",  # Arabic, Syriac, Persian presentation forms
    "indic",  # Devanagari .. Sinhala
    "thai",  # Thai, Lao
    "georgian",  # Georgian, Armenian
    "hangul",
    "kana",  # Hiragana, Katakana
    "han",  # CJK ideographs
    "cjkpunct",  # CJK punctuation, full-width forms
    "symbol",  # Latin-1 punctuation, general punctuation, arrows, box drawing, emoji ...
    "other",  # other scripts (Ethiopic, Tibetan, Myanmar ...), IPA, private use
)
_K = {name: i for i, name in enumerate(CLASSES)}
NC = len(CLASSES)
RANGES = (  # (first code point, class) in order; ASCII is classified apart
    (0x0080, "symbol"),
    (0x00C0, "latin"),
    (0x0250, "other"),
    (0x0370, "greek"),
    (0x0400, "cyrillic"),
    (0x0530, "georgian"),
    (0x0590, "hebrew"),
    (0x0600, "arabic"),
    (0x0780, "other"),
    (0x0900, "indic"),
    (0x0E00, "thai"),
    (0x0F00, "other"),
    (0x10A0, "georgian"),
    (0x1100, "hangul"),
    (0x1200, "other"),
    (0x1E00, "latin"),
    (0x1F00, "greek"),
    (0x2000, "symbol"),
    (0x2C00, "other"),
    (0x3000, "cjkpunct"),
    (0x3040, "kana"),
    (0x3100, "other"),
    (0x3130, "hangul"),
    (0x3190, "other"),
    (0x3400, "han"),
    (0xA000, "other"),
    (0xAC00, "hangul"),
    (0xD7B0, "other"),
    (0xF900, "han"),
    (0xFB00, "other"),
    (0xFB50, "arabic"),
    (0xFE00, "symbol"),
    (0xFE70, "arabic"),
    (0xFF00, "cjkpunct"),
    (0xFFF0, "other"),
    (0x1F000, "symbol"),
    (0x20000, "han"),
    (0x30000, "other"),
)
SCRIPTS = CLASSES[4:14] + ("other",)  # the non-Latin scripts: a stratum each
STRATA = ("prose", "code", "numbers", *SCRIPTS)
BASES = ("o200k_base", "cl100k_base")
_SHORT = {"o200k_base": "o200k", "cl100k_base": "cl100k"}
_EXTRA = ("spaces", "newlines", "words", "nonascii_words", "code", "markup")
# A base's tokens by rank: a BPE rank says how late (how rarely) its merge was learnt, so the tokens
# of high rank are the ones a vocabulary of another size or corpus is likeliest to split (or to
# merge further). A feature per edge: the tokens from that rank up to the next edge (the byte
# tokens, below the first edge, are in none).
RANK_EDGES = {
    "o200k_base": (256, 5000, 20000, 50000, 100000, 150000),
    "cl100k_base": (256, 5000, 20000, 50000, 80000),
}
FEATURES = (
    *(f"{_SHORT[b]}:{c}" for b in BASES for c in CLASSES),
    *(f"chars:{c}" for c in CLASSES),
    *_EXTRA,
    *(f"{_SHORT[b]}:rank{e}" for b in BASES for e in RANK_EDGES[b]),
    "one",
)
VOCAB = {"o200k_base": 200000, "cl100k_base": 100256}  # ordinary token ids are below these
OFFSETS = (0, 1 << 18)  # a token's key (one id space for both vocabularies): its id + its base's offset


def key_of(base: str, token_id: int) -> int:
    return OFFSETS[BASES.index(base)] + token_id


# Byte classes of UTF-8 text: a lookup table over bytes, so that numpy counts a whole batch at once.
DIGIT, SPACE, NEWLINE, PUNCT, LETTER, LEAD, HIGH, CODE, MARKUP = (1 << i for i in range(9))


@functools.lru_cache(maxsize=1)
def _tables():
    import numpy as np

    t = np.zeros(256, np.uint16)
    ascii_class = np.zeros(128, np.int64)
    for c in range(128):
        ch = chr(c)
        if ch.isdigit():
            t[c] |= DIGIT
            ascii_class[c] = _K["digit"]
        elif ch.isspace():
            t[c] |= SPACE | (NEWLINE if ch == "\n" else 0)
            ascii_class[c] = _K["space"]
        elif ch.isalpha():
            t[c] |= LETTER
            ascii_class[c] = _K["latin"]
        elif 32 < c < 127:
            t[c] |= PUNCT
            ascii_class[c] = _K["punct"]
        else:
            ascii_class[c] = _K["symbol"]  # control characters
        if ch in ";{}()=[]_":
            t[c] |= CODE
        if ch in '<>|"':
            t[c] |= MARKUP
    t[0x80:] |= HIGH  # any byte of a non-ASCII character
    t[0xC0:] |= LEAD  # the first byte of one
    starts = np.array([0, *(s for s, _ in RANGES)], np.int64)
    classes = np.array([_K["symbol"], *(_K[c] for _, c in RANGES)], np.int64)
    return t, ascii_class, starts, classes


def _classes_by_search(cp):
    import numpy as np

    _, ascii_class, starts, classes = _tables()
    out = classes[np.searchsorted(starts, cp, side="right") - 1]
    low = cp < 128
    out[low] = ascii_class[cp[low]]
    return out


@functools.lru_cache(maxsize=1)
def _bmp():
    """The class of every code point below U+10000: a table looked up at numpy speed."""
    import numpy as np

    return _classes_by_search(np.arange(0x10000, dtype=np.int64)).astype(np.int64)


def classes_of(code_points):
    """The class (an index into CLASSES) of each code point (a numpy integer array)."""
    import numpy as np

    cp = np.asarray(code_points, np.int64)
    high = cp >= 0x10000
    if not high.any():
        return _bmp()[cp]
    out = _bmp()[np.where(high, 0, cp)]
    out[high] = _classes_by_search(cp[high])
    return out


def _owners(sizes):
    """For a batch of texts of these sizes: each element's text, and each text's first element."""
    import numpy as np

    ends = np.cumsum(sizes)
    return np.repeat(np.arange(len(sizes)), sizes), ends - sizes


def char_counts(texts: Sequence[str]):
    """A numpy array, a row per text, a column per CLASSES: its characters of each class."""
    import numpy as np

    n = len(texts)
    data = "".join(texts).encode("utf-32-le", "surrogatepass")
    cp = np.frombuffer(data, np.uint32)
    sizes = np.fromiter((len(t) for t in texts), np.int64, n)
    owner, _ = _owners(sizes)
    keys = owner * NC + classes_of(cp)
    return np.bincount(keys, minlength=n * NC).reshape(n, NC).astype(float)


# columns of byte_stats
_COLUMNS = (
    "chars",
    "digits",
    "spaces",
    "newlines",
    "punct",
    "words",
    "nonascii_words",
    "code",
    "markup",
    "space_chars",
)
_C = {name: i for i, name in enumerate(_COLUMNS)}


def byte_stats(texts: Sequence[str]):
    """A numpy array, a row per text, a column per _COLUMNS: characters, digits, whitespace runs,
    line breaks, ASCII punctuation, ASCII words, runs of non-ASCII characters, code and markup
    characters, whitespace characters."""
    import numpy as np

    table = _tables()[0]
    n = len(texts)
    out = np.zeros((n, len(_COLUMNS)))
    encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
    sizes = np.fromiter((len(e) for e in encoded), np.int64, n)
    if not sizes.sum():
        return out
    raw = np.frombuffer(b"".join(encoded), np.uint8)
    cls = table[raw]
    ends = np.cumsum(sizes)
    starts = ends - sizes
    first = np.zeros(len(raw) + 1, bool)
    first[starts] = True  # a text's first byte (the last slot: past the end)
    first = first[:-1]

    full = sizes > 0
    cuts = starts[full]

    def total(mask):  # per text (segments from each non-empty text's first byte; empty ones: 0)
        sums = np.zeros(n, np.int64)
        sums[full] = np.add.reduceat(mask.view(np.uint8), cuts, dtype=np.int64)
        return sums

    def has(flag):
        return (cls & flag) > 0

    def runs(on):
        prev = np.concatenate(([False], on[:-1])) & ~first
        return total(on & ~prev)

    out[:, _C["chars"]] = total(raw < 0x80) + total(has(LEAD))
    out[:, _C["digits"]] = total(has(DIGIT))
    out[:, _C["spaces"]] = runs(has(SPACE))
    out[:, _C["newlines"]] = total(has(NEWLINE))
    out[:, _C["punct"]] = total(has(PUNCT))
    out[:, _C["words"]] = runs(has(LETTER))
    out[:, _C["nonascii_words"]] = runs(has(HIGH))
    out[:, _C["code"]] = total(has(CODE))
    out[:, _C["markup"]] = total(has(MARKUP))
    out[:, _C["space_chars"]] = total(has(SPACE))
    return out


def _stratum(row, chars, indented: bool) -> str:
    """row: byte_stats of a text; chars: its char_counts."""
    visible = max(1.0, row[_C["chars"]] - row[_C["space_chars"]])
    scripts = [chars[_K[s]] for s in SCRIPTS]
    foreign = sum(scripts)
    if foreign > 0.3 * (chars[_K["latin"]] + foreign):
        return SCRIPTS[max(range(len(SCRIPTS)), key=scripts.__getitem__)]
    if row[_C["digits"]] > 0.2 * visible or row[_C["markup"]] > 0.08 * visible:
        return "numbers"
    code = row[_C["code"]]
    if code > 0.05 * visible or (indented and code > 0.02 * visible):
        return "code"
    return "prose"


def strata_of(texts: Sequence[str], stats=None, chars=None) -> list[str]:
    """The stratum of each text (see stratum)."""
    st = byte_stats(texts) if stats is None else stats
    ch = char_counts(texts) if chars is None else chars
    return [_stratum(r, c, "\n    " in t) for t, r, c in zip(texts, st.tolist(), ch.tolist(), strict=True)]


def stratum(text: str) -> str:
    """prose, code, numbers (digits and markup), or the text's main non-Latin script (SCRIPTS)
    where those are more than 30% of its letters."""
    return strata_of([text])[0]


@functools.lru_cache(maxsize=4)
def token_classes(encoding: str):
    """The class of each token id of an OpenAI encoding (a numpy array; -1: the token starts inside
    a character), from its rank file (found and verified by the asset store, read through the
    derived rank cache the tokenizer itself loads from): the class of the token's first character
    that is not a space (all spaces, or an id no token has: `space`)."""
    import numpy as np

    from ..assets.rank_cache import load_ranks
    from ..assets.store import find_tiktoken_file
    from ..tokenizers.engines import read_ranks
    from ..tokenizers.openai_encodings import ENCODINGS

    spec = ENCODINGS[encoding]
    path, _ = find_tiktoken_file(spec.file, spec.url, spec.sha256)
    ranks = load_ranks(path, spec.file, spec.sha256, read_ranks)
    n = len(ranks)
    where = np.fromiter(ranks.values(), np.int64, n)
    heads = [piece.lstrip(b" ") for piece in ranks]
    blank = np.fromiter(map(len, heads), np.int64, n) == 0
    b = np.frombuffer(b"".join([h[:4].ljust(4, b"\x80") for h in heads]), np.uint8).reshape(n, 4).astype(np.int64)
    lead = b[:, 0]
    cont = b[:, 1:] & 0x3F
    cp = np.where(
        lead < 0x80,
        lead,
        np.where(
            lead < 0xE0,
            ((lead & 0x1F) << 6) | cont[:, 0],
            np.where(
                lead < 0xF0,
                ((lead & 0x0F) << 12) | (cont[:, 0] << 6) | cont[:, 1],
                ((lead & 0x07) << 18) | (cont[:, 0] << 12) | (cont[:, 1] << 6) | cont[:, 2],
            ),
        ),
    )
    cls = classes_of(np.minimum(cp, 0x10FFFF))
    cls[(lead >= 0x80) & (lead < 0xC0)] = -1
    cls[blank] = _K["space"]
    out = np.full(int(where.max()) + 1 if n else 0, _K["space"], np.int64)
    out[where] = cls
    return out


class Featurizer:
    """The features of texts (FEATURES) and their o200k_base tokens, from the local tokenizers."""

    def __init__(self, engine: str = "auto"):
        from ..tokenizers import load_strategy

        self.bases = [load_strategy(name, engine) for name in BASES]
        self.engine = self.bases[0].engine
        self.fingerprint = "+".join(b.fingerprint for b in self.bases)
        self.tables = [token_classes(name) for name in BASES]

    def features(self, texts: Sequence[str]):
        """(X: a numpy array, a row of FEATURES per text; the texts' tokens of both vocabularies,
        concatenated, as keys (key_of); the text each of those belongs to; each text's stratum)."""
        import numpy as np

        n = len(texts)
        parts, keys, owners, ranked = [], [], [], []
        for offset, name, base, table in zip(OFFSETS, BASES, self.bases, self.tables, strict=True):
            ids = [np.asarray(base.encode(t), np.int64) for t in texts]
            sizes = np.fromiter((len(x) for x in ids), np.int64, n)
            flat = np.concatenate(ids) if n else np.zeros(0, np.int64)
            owner, firsts = _owners(sizes)
            cls = table[flat]
            frag = cls < 0
            if frag.any():  # a piece of a character: its predecessor's class (a text's first: symbol)
                start = np.zeros(len(flat), bool)
                start[firsts[sizes > 0]] = True
                idx = np.where(~frag | start, np.arange(len(flat)), 0)
                np.maximum.accumulate(idx, out=idx)
                cls = cls[idx]
                cls[cls < 0] = _K["symbol"]
            parts.append(np.bincount(owner * NC + cls, minlength=n * NC).reshape(n, NC).astype(float))
            edges = np.asarray(RANK_EDGES[name], np.int64)
            nb = len(edges) + 1  # bucket 0: below the first edge (not a feature)
            bucket = np.searchsorted(edges, flat, side="right")
            ranked.append(np.bincount(owner * nb + bucket, minlength=n * nb).reshape(n, nb)[:, 1:].astype(float))
            keys.append(flat + offset)
            owners.append(owner)
        stats = byte_stats(texts)
        chars = char_counts(texts)
        extra = stats[:, [_C[k] for k in _EXTRA]]
        x = np.hstack([*parts, chars, extra, *ranked, np.ones((n, 1))])
        return x, np.concatenate(keys), np.concatenate(owners), strata_of(texts, stats, chars)
