"""Segmentation: a context -> passages -> units (sentences; code blocks and list items whole).

A context is a string (passages are separated by blank lines; fenced code blocks are one unit
even across blank lines) or a list of documents: strings or `{title, text}` passages, rendered
as "title\\ntext" and joined by blank lines. Every unit remembers the text that separated it from
the previous unit in that rendering, so keeping every unit gives the rendering back exactly.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError

PASSAGE_SEP = "\n\n"


@dataclass(slots=True)
class Unit:
    index: int  # position in the whole context
    passage: int  # which passage it belongs to
    text: str
    sep: str  # what preceded it in the rendering ("" for the first unit)
    kind: str = "sentence"  # sentence | title | code | item | line
    tokens: int = 0  # filled by the compressor


class SegmentError(UsageError):
    """A context that cannot be segmented (wrong type), with where it is wrong."""


_FENCE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[ \t]*$", re.S | re.M)
_BLANK = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)*")
_ITEM = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)])\s+\S")
_CODE_LINE = re.compile(r"^(?: {4}|\t)")
# A sentence ends at . ! ? (or an ellipsis), maybe followed by closing quotes/brackets, then space,
# then something that can start a sentence. CJK full stops end a sentence with no space.
_BOUNDARY = re.compile(
    r"(?<=[.!?\u2026])[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9\u00c0-\u00dd])|(?<=[\u3002\uff01\uff1f])"
)
_ABBREV = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "st",
        "sr",
        "jr",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "u.s",
        "u.k",
        "inc",
        "ltd",
        "co",
        "corp",
        "no",
        "nos",
        "fig",
        "figs",
        "approx",
        "est",
        "dept",
        "gen",
        "gov",
        "lt",
        "col",
        "sgt",
        "capt",
        "rev",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "mt",
        "ft",
        "al",
        "cf",
        "ca",
        "op",
        "vol",
        "pp",
        "ed",
        "eds",
    ]
)


def _sentence_spans(text: str, start: int = 0) -> list[tuple[int, int]]:
    """(start, end) of each sentence of a prose paragraph, whitespace excluded."""
    spans, begin = [], 0
    for m in _BOUNDARY.finditer(text):
        cut = m.start()
        word = text[begin:cut].rstrip(".!?\u2026\"')]\u201d\u2019").rsplit(None, 1)[-1:] or [""]
        w = word[0].lstrip("(\"'")
        if m.group(0) and (w.lower() in _ABBREV or (len(w) == 1 and w.isupper())):
            continue  # "Dr. Smith", "J. K. Rowling"
        if text[begin:cut].strip():
            spans.append((begin, cut))
        begin = m.end()
    if text[begin:].strip():
        spans.append((begin, len(text)))
    out = []
    for a, b in spans:
        seg = text[a:b]
        lead = len(seg) - len(seg.lstrip())
        out.append((start + a + lead, start + a + len(seg.rstrip())))
    return out


def _block_spans(text: str) -> list[tuple[int, int, str]]:
    """Units of one passage: a code block whole; list items, and lines of line-shaped text
    (records, rows, logs), by line; prose by sentence."""
    lines = text.split("\n")
    if all(_CODE_LINE.match(ln) or not ln.strip() for ln in lines):
        return [(0, len(text), "code")]
    if _ITEM.match(lines[0]) and all(_ITEM.match(ln) or ln[:1].isspace() or not ln.strip() for ln in lines):
        spans, pos, cur = [], 0, None
        for ln in lines:  # an item with its indented continuation lines
            if _ITEM.match(ln) or cur is None:
                if cur is not None:
                    spans.append(cur)
                cur = [pos, pos + len(ln), "item"]
            else:
                cur[1] = pos + len(ln)
            pos += len(ln) + 1
        spans.append(cur)
        return [(a, b, k) for a, b, k in spans if text[a:b].strip()]
    if len(lines) >= 3 and all(not ln.rstrip().endswith((".", "!", "?")) for ln in lines if ln.strip()):
        # records, table rows, log lines, key-value pairs: a line is a unit
        spans, pos = [], 0
        for ln in lines:
            if ln.strip():
                spans.append((pos, pos + len(ln), "line"))
            pos += len(ln) + 1
        return spans
    return [(a, b, "sentence") for a, b in _sentence_spans(text)]


def _passages_of_string(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_code) of the passages of a string context."""
    out, pos = [], 0
    for fence in _FENCE.finditer(text):
        out += _paragraphs(text, pos, fence.start())
        out.append((fence.start(), fence.end(), True))
        pos = fence.end()
    return out + _paragraphs(text, pos, len(text))


def _paragraphs(text: str, a: int, b: int) -> list[tuple[int, int, bool]]:
    out, pos = [], a
    for m in _BLANK.finditer(text, a, b):
        if text[pos : m.start()].strip():
            out.append((pos, m.start(), False))
        pos = m.end()
    if text[pos:b].strip():
        out.append((pos, b, False))
    return out


def _spans(text: str) -> Iterator[tuple[int, int, str, int]]:
    """(start, end, kind, passage) of every unit of a text, in order, surrounding space excluded."""
    for p, (a, b, code) in enumerate(_passages_of_string(text)):
        if code:
            yield (a, a + len(text[a:b].rstrip()), "code", p)
            continue
        for x, y, kind in _block_spans(text[a:b]):
            piece = text[a + x : a + y]
            lead = 0 if kind == "code" else len(piece) - len(piece.lstrip())
            yield (a + x + lead, a + x + len(piece.rstrip()), kind, p)


def segment(context) -> tuple[list[Unit], str]:
    """(units, the rendering of the whole context: every unit's sep + text, concatenated).
    Raises SegmentError for a context of the wrong type."""
    units: list[Unit] = []

    def add_text(text: str, first_sep: str, passage: int | None = None) -> tuple[int, int]:
        """Its units appended; (where the first starts, where the last ends) in `text`."""
        first = prev_end = None
        for a, b, kind, p in _spans(text):
            sep = first_sep if prev_end is None else text[prev_end:a]
            units.append(Unit(len(units), passage if passage is not None else p, text[a:b], sep if units else "", kind))
            first = a if first is None else first
            prev_end = b
        return (first, prev_end) if first is not None else (0, 0)

    if isinstance(context, str):
        # every unit's sep + text, joined, is the context from the first unit's start to the last
        # one's end: a slice, not a second rendering (the context itself when nothing is trimmed)
        start, end = add_text(context, "")
        return units, context[start:end]
    elif isinstance(context, list):
        for p, doc in enumerate(context):
            if isinstance(doc, str):
                title, body = None, doc
            elif isinstance(doc, dict) and isinstance(doc.get("text", doc.get("content")), str):
                title, body = doc.get("title"), doc.get("text", doc.get("content"))
                if title is not None and not isinstance(title, str):
                    raise SegmentError(f"context[{p}].title is {type(title).__name__}, expected a string")
            else:
                raise SegmentError(f"context[{p}]: expected a string or an object with a 'text' string")
            sep = PASSAGE_SEP
            if title and title.strip() and body.strip():
                units.append(Unit(len(units), p, title.strip(), sep if units else "", "title"))
                sep = "\n"
            add_text(body, sep, p)
    else:
        raise SegmentError(f"the context is a {type(context).__name__}; expected a string or a list of documents")
    return units, render(units, [True] * len(units))


def separator_widths(units: list[Unit]) -> np.ndarray:
    """Each unit's separator ranked by width (newlines, then length), an earlier unit's ahead of
    an equal later one, as one integer a unit: the widest separator of a run of units is the one
    with the largest number (see render)."""
    n = len(units)
    newlines = np.fromiter((u.sep.count("\n") for u in units), dtype=np.int64, count=n)
    lengths = np.fromiter((len(u.sep) for u in units), dtype=np.int64, count=n)
    _, rank = np.unique(newlines * (int(lengths.max(initial=0)) + 1) + lengths, return_inverse=True)
    return rank.reshape(-1) * (n + 1) + (n - np.arange(n))


def render(units: list[Unit], keep: list[bool], gap_marker: str | None = None, widths: np.ndarray | None = None) -> str:
    """The kept units with the separators between them; `gap_marker` where units were left out
    between two kept ones. `widths`: separator_widths(units), for callers that render the same
    units many times."""
    if len(keep) != len(units):
        raise ValueError(f"{len(keep)} keep flags for {len(units)} units")
    kept = list(itertools.compress(units, keep))
    if not kept:
        return ""
    at = np.fromiter((u.index for u in kept), dtype=np.int64, count=len(kept))
    widest: list[int] = []
    if (np.diff(at) > 1).any():
        # the widest separator that was left out: a paragraph break stays one. Units p+1..c for
        # each kept pair (p, c) tile p0+1..c_last, so one reduceat finds every run's widest
        # (the first of equals, as max() over the run would)
        w = separator_widths(units) if widths is None else widths
        widest = (len(units) - np.maximum.reduceat(w[: at[-1] + 1], at[:-1] + 1) % (len(units) + 1)).tolist()
    out = [kept[0].text]
    for k in range(1, len(kept)):
        u = kept[k]
        if u.index == kept[k - 1].index + 1:
            out.append(u.sep)
        else:
            sep = units[widest[k - 1]].sep
            sep = sep if sep and not sep.strip() else " "
            out += (sep, gap_marker, sep) if gap_marker else (sep,)
        out.append(u.text)  # pieces, not pieces joined: no second copy of every kept unit
    return "".join(out)
