"""The Unicode guard (tokenizers.unicode_guard): which texts go to the reference engine.

The table lookup must answer exactly as a plain reading of omnitok/data/unassigned.json does:
any code point inside an unassigned range, BMP or astral, lone surrogates included."""

from __future__ import annotations

import bisect
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


def test_random_texts_agree_with_the_ranges():
    rng = random.Random(14)
    edges = [p for a, b in RANGES for p in (a - 1, a, b, b + 1) if 0 < p < 0x110000]
    for _ in range(3000):
        picks = [
            rng.choice(edges) if rng.random() < 0.5 else rng.randrange(0x80, 0x110000) for _ in range(rng.randint(1, 6))
        ]
        text = "a" + "".join(chr(p) for p in picks)
        assert needs_reference(text) is plain(text), [hex(p) for p in picks]
