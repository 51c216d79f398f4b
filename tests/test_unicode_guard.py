"""The Unicode guard (tokenizers.unicode_guard): which texts go to the reference engine.

The table lookup must answer exactly as a plain reading of omnitok/data/unassigned.json does:
any code point inside an unassigned range, BMP or astral, lone surrogates included."""

from __future__ import annotations

import bisect
import functools
import json
import random

import pytest

from omnitok.tokenizers import unicode_guard
from omnitok.tokenizers.unicode_guard import needs_reference

RANGES = json.loads(unicode_guard.DATA.read_text())["ranges"]
STARTS = [a for a, _ in RANGES]


def unassigned(cp: int) -> bool:
    i = bisect.bisect_right(STARTS, cp) - 1
    return i >= 0 and cp <= RANGES[i][1]


def plain(text: str) -> bool:
    return any(unassigned(ord(ch)) for ch in text)


def test_the_ranges_are_sorted_and_disjoint():
    assert all(a <= b < c for (a, b), (c, _) in zip(RANGES, RANGES[1:], strict=False))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("plain ascii", False),
        ("naïve βήτα 日本語 😀", False),
        ("idna: \u1c8a", True),  # Cyrillic, Unicode 16
        ("\ua7cd", True),  # Latin, Unicode 16
        ("CJK J \U000323b0", True),  # Unicode 17: the difference the property test found
        ("\U000e01ef", False),  # a variation selector, assigned long ago
        ("\U0010ffff", True),  # a noncharacter: unassigned
        ("lone \ud800 surrogate", False),  # Cs: assigned
        ("\u0378", True),  # the first gap in Greek
    ],
)
def test_known_characters(text, expected):
    assert needs_reference(text) is expected
    assert plain(text) is expected


def test_a_long_text_is_looked_up_a_slice_at_a_time():
    n = unicode_guard._CHUNK
    assert needs_reference("é" + "a" * (2 * n) + "\u1c8a") is True  # in the third slice
    assert needs_reference("é" + "a" * (2 * n) + "ü") is False
    assert needs_reference("a" * (n - 1) + "\u1c8a" + "é") is True  # at a slice's edge


def test_random_texts_agree_with_the_ranges():
    rng = random.Random(14)
    edges = [p for a, b in RANGES for p in (a - 1, a, b, b + 1) if 0 < p < 0x110000]
    for _ in range(3000):
        picks = [
            rng.choice(edges) if rng.random() < 0.5 else rng.randrange(0x80, 0x110000) for _ in range(rng.randint(1, 6))
        ]
        text = "a" + "".join(chr(p) for p in picks)
        assert needs_reference(text) is plain(text), [hex(p) for p in picks]


# --- OpenAI's patterns: characters assigned since Unicode 14 as symbols need no reference -------

OTHERS = json.loads(unicode_guard.NEW_OTHERS.read_text())["ranges"]
OTHER_POINTS = [cp for a, b in OTHERS for cp in range(a, b + 1)]


def test_new_others_file_is_what_unicodedata2_says():
    unicodedata2 = pytest.importorskip("unicodedata2")
    assert json.loads(unicode_guard.NEW_OTHERS.read_text())["unicode_version"] == unicodedata2.unidata_version
    assert unicode_guard.new_others(unicodedata2) == OTHERS
    assert len(OTHER_POINTS) > 1000  # emoji and symbols of Unicode 15-18


@pytest.mark.parametrize(
    "text, any_, openai",
    [
        ("shaking face \U0001fae8 pink heart \U0001fa77", True, False),  # Unicode 15 emoji: So
        ("idna: \u1c8a", True, False),  # a Unicode 16 letter both OpenAI engines know (known letters)
        ("idna: \ua7cf", True, True),  # a Unicode 17 letter: tiktoken's tables do not know it
        ("CJK J \U000323b0", True, True),
        ("\U0010ffff", True, True),  # still unassigned: a later Unicode may make it a letter
        ("naïve 😀", False, False),
    ],
)
def test_which_texts_go_to_the_reference(text, any_, openai):
    assert needs_reference(text, unicode_guard.ANY) is any_
    assert needs_reference(text, unicode_guard.OPENAI) is openai


@functools.cache
def _gigatoken(encoding: str):
    """gigatoken itself on omnitok's rank file (no guard in front), built once per encoding for the
    module (o200k's takes most of a second)."""
    from gigatoken.gigatoken_rs import BPETokenizer

    from omnitok.tokenizers.openai_encodings import ENCODINGS

    path = unicode_guard.DATA.parents[1] / "assets/data/openai" / f"{encoding}.tiktoken"
    return BPETokenizer.from_tiktoken(str(path), ENCODINGS[encoding].gigatoken_pretokenizer, {})


@pytest.mark.parametrize("encoding", ["o200k_base", "cl100k_base"])
def test_gigatoken_and_tiktoken_agree_on_every_new_symbol(encoding, ref_o200k, ref_cl100k):
    # The proof behind OPENAI's narrower guard: gigatoken itself (no guard in front) gives
    # tiktoken's ids for each such character in every context its patterns tell apart.
    import omnitok

    ref = ref_o200k if encoding == "o200k_base" else ref_cl100k
    path = unicode_guard.DATA.parents[1] / "assets/data/openai" / f"{encoding}.tiktoken"
    assert path.is_relative_to(unicode_guard.DATA.parents[1]) and omnitok
    fast = _gigatoken(encoding)
    texts = [ctx.format(c=chr(cp)) for cp in OTHER_POINTS for ctx in unicode_guard.CONTEXTS]
    assert [list(ids) for ids in map(fast.encode, texts)] == ref.encode_ordinary_batch(texts, num_threads=1)


def test_known_letters_file_is_what_the_engines_say(ref_o200k, ref_cl100k):
    """The proof behind openai_known_letters.json: made again here from unicodedata2 and the two
    engines (gigatoken itself, no guard in front, against tiktoken), for both encodings, every
    new letter, mark and number in every context; the ones they split differently (Unicode 17's)
    are not in it and stay with the reference."""
    unicodedata2 = pytest.importorskip("unicodedata2")
    doc = json.loads(unicode_guard.KNOWN_LETTERS.read_text())
    assert doc["unicode_version"] == unicodedata2.unidata_version
    engines = [
        (_gigatoken(name).encode, lambda texts, ref=ref: [ref.encode_ordinary(t) for t in texts])
        for name, ref in (("o200k_base", ref_o200k), ("cl100k_base", ref_cl100k))
    ]
    assert unicode_guard.known_letters(unicodedata2, engines) == doc["ranges"]
    points = {cp for a, b in doc["ranges"] for cp in range(a, b + 1)}
    assert len(points) > 20_000  # Unicode 15-16's letters: CJK Extensions H and I, Garay, Kirat Rai ...
    assert 0x323B0 not in points and 0xA7CF not in points  # Unicode 17: the engines differ
    assert {0x1C8A, 0x31350, 0x10D70} <= points


def test_a_text_with_known_letters_counts_on_gigatoken_as_tiktoken(ref_o200k):
    """Counted through the guard by a fresh engine (no reference engine loaded) as tiktoken does."""
    from omnitok.tokenizers.engines import GigatokenEngine
    from omnitok.tokenizers.openai_encodings import ENCODINGS

    text = "idna \u1c8a\ua7cd \U00010d70\U00010d71 CJK H \U00031350\U00031351 end"
    assert not needs_reference(text, unicode_guard.OPENAI)
    path = unicode_guard.DATA.parents[1] / "assets/data/openai/o200k_base.tiktoken"
    engine = GigatokenEngine(ENCODINGS["o200k_base"], path)
    assert engine.count_batch([text]) == [len(ref_o200k.encode_ordinary(text))]
    assert engine._reference is None  # gigatoken counted it
    assert engine.count_batch([text + " \ua7cf"]) == [len(ref_o200k.encode_ordinary(text + " \ua7cf"))]
    assert engine._reference is not None  # a Unicode 17 letter: the reference
