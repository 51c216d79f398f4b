"""Segmentation: a context -> passages -> units (sentences; code blocks and list items whole);
units over a budget -> pieces within it (split_over).

A context is a string (passages are separated by blank lines; fenced code blocks are one unit
even across blank lines) or a list of documents: strings or `{title, text}` passages, rendered
as "title\\ntext" and joined by blank lines. Every unit remembers the text that separated it from
the previous unit in that rendering, so keeping every unit gives the rendering back exactly.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
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
_BLANK = re.compile(r"\n[ \t\r]*\n(?:[ \t\r]*\n)*")  # (\r: a blank line of CRLF text is one too)
_ITEM = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)])\s+\S")
_CODE_LINE = re.compile(r"^(?: {4}|\t)")
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_STOP = "\u3002\uff01\uff1f"  # 。！？
_CLOSE = "\"'\u201d\u2019)\\]\u300d\u300f\uff09\u3011"  # closing quotes and brackets, 」』）】 too
# A sentence ends at . ! ? (or an ellipsis), maybe followed by closing quotes/brackets, then space,
# then a letter or digit: a capital or a digit always (but after an abbreviation or an initial),
# a small letter only after a plain . ! or ? (see _sentence_spans). CJK full stops (with their
# closing brackets) end a sentence with no space, as ! and ? do before a CJK character.
_BOUNDARY = re.compile(
    r"(?<=[.!?\u2026])[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[^\W_])"
    rf"|(?<=[{_CJK_STOP}])(?![{_CLOSE}])|(?<=[{_CJK_STOP}][{_CLOSE}])(?![{_CLOSE}])|(?<=[!?])(?=[{_CJK}])"
)
_CAPITAL = re.compile(r"[\"'\u201c\u2018(\[]?[A-Z0-9\u00c0-\u00dd]")
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


def _ends_before_small(before: str, word: str) -> bool:
    """Whether `before` ends a sentence when the next one starts with a small letter (lowercase
    text, chat): after ? or !, or after a . that ends neither an ellipsis, an abbreviation, an
    initial (any case) nor a dotted word (a.m., 3.5)."""
    if before.endswith(("?", "!")):
        return True
    return (
        before.endswith(".")
        and not before.endswith("..")
        and len(word) > 1
        and "." not in word
        and word.lower() not in _ABBREV
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
        if m.group(0) and not _CAPITAL.match(text, m.end()) and not _ends_before_small(text[begin:cut], w):
            continue  # "e.g. this", "p. 5", "wait... what": no sentence ends there
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


# --- units longer than the budget ---------------------------------------------------------------

# The most tokens of a piece of a unit that was split: half the budget (room for two pieces to
# choose from), but no more than a long sentence's and no fewer than a short one's (or the budget).
PIECE_TOKENS = 64
PIECE_MIN = 16
# Where a unit over the budget is cut, coarsest first: lines; sentence ends (any case, CJK ones
# with no space); clauses (, ; : and CJK ones, dashes); words (and between CJK characters). A
# separator is whitespace only (it may be empty): the punctuation stays with the piece before it.
_SPLIT_LEVELS = tuple(
    re.compile(p)
    for p in (
        r"[ \t\r\f\v]*\n(?:[ \t\r\f\v]*\n)*",
        rf"(?:(?<=[.!?\u2026])|(?<=[.!?\u2026][{_CLOSE}]))\s+"
        rf"|(?:(?<=[{_CJK_STOP}])|(?<=[{_CJK_STOP}][{_CLOSE}]))(?![{_CLOSE}])\s*",
        rf"(?:(?<=[,;:])|(?<=[,;:][{_CLOSE}]))\s+|(?<=[\uff0c\u3001\uff1b\uff1a\u2014\u2013])\s*|(?<= -)\s+|(?<= --)\s+",
        rf"\s+|(?<=[{_CJK}])(?=\S)|(?<=\S)(?=[{_CJK}])",
    )
)


def _cut(text: str, a: int, b: int, level: int) -> list[tuple[int, int]]:
    """text[a:b] cut at the level's separators: the pieces, each holding some non-space text
    (space that would be a piece of its own joins the next one), the first starting at a and the last
    ending at b; [] when it has no separator inside."""
    pieces: list[list[int]] = []
    start = a
    for m in _SPLIT_LEVELS[level].finditer(text, a, b):
        if m.start() == a or m.end() == b:
            continue  # at an end: nothing on one side
        if text[start : m.start()].strip():
            pieces.append([start, m.start()])
            start = m.end()
    if not pieces:
        return []
    pieces.append([start, b])
    return [(x, y) for x, y in pieces]


def _by_characters(text: str, a: int, b: int, target: int, count) -> list[tuple[int, int]]:
    """text[a:b] cut into runs of characters of at most `target` tokens each, each as long as
    the tokenizer allows (found by doubling, then halving; a character over `target` alone is a
    piece of its own)."""
    out: list[tuple[int, int]] = []
    pos, guess = a, max(1, target)
    while pos < b:
        ok, bad = pos, None  # the longest run known to fit ends at ok; one ending at bad does not
        end = min(b, pos + guess)
        while True:  # grow until over (or the end)
            if count(text[pos:end]) <= target:
                ok = end
                if end == b:
                    break
                end = min(b, pos + 2 * (end - pos))
            else:
                bad = end
                break
        while bad is not None and bad - ok > 1:
            mid = (ok + bad) // 2
            if count(text[pos:mid]) <= target:
                ok = mid
            else:
                bad = mid
        cut = _grapheme_end(text, pos, ok, b)
        # Moved back off a joined sequence, the run may no longer fit: a shorter prefix can take
        # more tokens ("Markdown" is one token, "Markdow" two, before "n" + U+200D). Step back
        # until it fits or is one character (or one sequence) from pos.
        while pos + 1 < cut < ok and count(text[pos:cut]) > target:
            cut = _grapheme_end(text, pos, cut - 1, b)
        ok = cut
        out.append((pos, ok))
        guess = ok - pos
        pos = ok
    return out


def _joins(ch: str) -> bool:
    """Whether `ch` belongs with the character before it (a combining mark, a zero-width joiner,
    a variation selector, a skin tone, an emoji tag)."""
    o = ord(ch)
    return (
        o in (0x200D, 0xFE0E, 0xFE0F)
        or 0x1F3FB <= o <= 0x1F3FF
        or 0xE0020 <= o <= 0xE007F
        or unicodedata.combining(ch) > 0
    )


def _grapheme_end(text: str, pos: int, end: int, b: int) -> int:
    """`end` (a cut in text[pos:b]) moved back off the middle of a character sequence drawn as
    one (an emoji with its joiners and modifiers, a letter with its accents), unless the sequence
    starts at pos (then it is cut where it was); at least pos + 1."""

    def inside(e: int) -> bool:
        return e < b and (_joins(text[e]) or text[e - 1] == "\u200d")

    end = max(end, pos + 1)
    e = end
    while e > pos + 1 and inside(e):
        e -= 1
    return end if inside(e) else e


def _split_span(text: str, a: int, b: int, target: int, count, count_batch, level: int = 0) -> list[tuple[int, int]]:
    """text[a:b] (over `target` tokens) as pieces of at most `target` tokens: cut at the coarsest
    level that has a separator in it, adjacent pieces packed together while they fit (counted
    with their separators, then the packed runs counted exactly), a piece over the target cut at
    the next level; characters last."""
    while level < len(_SPLIT_LEVELS):
        pieces = _cut(text, a, b, level)
        if pieces:
            break
        level += 1
    else:
        return _by_characters(text, a, b, target, count)
    costs = count_batch([text[x:y] if i == 0 else text[pieces[i - 1][1] : y] for i, (x, y) in enumerate(pieces)])
    runs: list[list[tuple[int, int]]] = []
    out: list[tuple[int, int] | None] = []  # None: the next packed run, checked below
    run: list[tuple[int, int]] = []
    used = 0

    def close_run():
        nonlocal run, used
        if run:
            runs.append(run)
            out.append(None)
        run, used = [], 0

    for (x, y), c in zip(pieces, costs, strict=True):
        if c > target:  # a piece over the target alone: cut it further
            close_run()
            out.extend(_split_span(text, x, y, target, count, count_batch, level + 1))
        elif used + c > target:
            close_run()
            run, used = [(x, y)], c
        else:
            run.append((x, y))
            used += c
    close_run()
    checked = iter(_fit_runs(text, runs, target, count, count_batch, level))
    return [p for piece in out for p in (next(checked) if piece is None else [piece])]


def _fit_runs(text, runs, target, count, count_batch, level) -> list[list[tuple[int, int]]]:
    """Each packed run as spans within the target, counted exactly: a run over it halved (a
    single piece over it cut at the next level)."""
    exact = count_batch([text[run[0][0] : run[-1][1]] for run in runs]) if runs else []
    out = []
    for run, n in zip(runs, exact, strict=True):
        if n <= target:
            out.append([(run[0][0], run[-1][1])])
        elif len(run) == 1:
            out.append(_split_span(text, run[0][0], run[0][1], target, count, count_batch, level + 1))
        else:
            half = len(run) // 2
            out.append(
                [
                    s
                    for part in _fit_runs(text, [run[:half], run[half:]], target, count, count_batch, level)
                    for s in part
                ]
            )
    return out


def _merge_space(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans with one of only space (an indentation cut off by characters) joined to the next
    (the last, to the one before)."""
    out: list[tuple[int, int]] = []
    for x, y in spans:
        if out and not text[out[-1][0] : out[-1][1]].strip():
            x = out.pop()[0]
        out.append((x, y))
    if len(out) > 1 and not text[out[-1][0] : out[-1][1]].strip():
        y = out.pop()[1]
        out[-1] = (out[-1][0], y)
    return out


def split_over(units: list[Unit], limit: int, count, count_batch) -> tuple[list[Unit], list[Unit]]:
    """(the units with each one over `limit` tokens replaced by pieces of at most
    min(limit, PIECE_TOKENS, max(PIECE_MIN, limit // 2)) tokens each, counted alone; the new
    pieces). Pieces are cut at
    lines, then sentence ends, clauses, words (CJK characters) and characters (see _SPLIT_LEVELS),
    keep the unit's passage and kind (a title's pieces are sentences), and tile its text: the first
    takes the unit's separator, the others the text between them with the white space that begins
    them (an indentation, whose tokens would put a piece over the target), so rendering every
    piece gives the unit back. The first keeps the white space that begins the unit (a code
    block's indentation: a separator is not rendered before the first unit kept), which may put
    it over the target by that white space's tokens. A unit over the limit only with its separator stays whole. Indexes are
    renumbered; the pieces' tokens (with their separators, as units') are left for the caller.
    `count(text)` and `count_batch(texts)`: the model's token counts."""
    over = [u for u in units if u.tokens > limit]
    if limit <= 0 or not over:
        return units, []
    target = min(limit, PIECE_TOKENS, max(PIECE_MIN, limit // 2))
    alone = dict(zip(map(id, over), count_batch([u.text for u in over]), strict=True))
    out: list[Unit] = []
    new: list[Unit] = []
    for u in units:
        if u.tokens <= limit or alone[id(u)] <= target:
            u.index = len(out)
            out.append(u)
            continue
        spans = _merge_space(u.text, _split_span(u.text, 0, len(u.text), target, count, count_batch))
        kind = "sentence" if u.kind == "title" else u.kind
        prev = None
        for x, y in spans:
            if prev is None:
                sep = u.sep
            else:  # an indentation goes with the separator
                x += len(u.text[x:y]) - len(u.text[x:y].lstrip())
                sep = u.text[prev:x]
            piece = Unit(len(out), u.passage, u.text[x:y], sep, kind)
            out.append(piece)
            new.append(piece)
            prev = y
    return out, new
