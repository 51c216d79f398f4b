"""Which texts the fast engines may count differently from the reference.

gigatoken's pre-tokenizer and the reference regex engines (tiktoken's, `tokenizers`') carry
Unicode tables of different versions: a character assigned only recently (U+323B0, CJK Extension
J, Unicode 17) is a letter to tiktoken and not to gigatoken, and the counts differ (the
differential property test found it). Texts holding any code point unassigned in Unicode 14
(omnitok/data/unassigned.json, from Python's unicodedata) are therefore counted by the
reference engine. ASCII texts skip the check; others cost one regex search.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "unassigned.json"


@functools.cache
def _pattern():
    import re

    ranges = json.loads(DATA.read_text())["ranges"]

    def esc(cp: int) -> str:
        return re.escape(chr(cp)) if cp >= 0x20 else f"\\x{cp:02x}"

    body = "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges if not 0xD800 <= a <= 0xDFFF)
    return re.compile(f"[{body}]")


def needs_reference(text: str) -> bool:
    """True if the text holds a code point newer than the fast engine's Unicode tables."""
    return not text.isascii() and _pattern().search(text) is not None
