r"""Which texts the fast engines may count differently from the reference.

gigatoken's pre-tokenizer and the reference regex engines (tiktoken's, `tokenizers`') carry
Unicode tables of different versions: a character assigned only recently (U+323B0, CJK Extension
J, Unicode 17) is a letter to gigatoken 0.10 and not to tiktoken 0.14, whose tables predate it,
and the counts differ (the differential property test found it; the reference's count is the
one taken). Texts holding any code point unassigned in Unicode 14 (omnitok/data/unassigned.json,
from Python's unicodedata) are therefore counted by the reference engine. ASCII and Latin-1 texts
skip the check; others cost one regex search (needs_reference says how).

For OpenAI's patterns (cl100k, o200k) only letters, marks, numbers and white space are told
apart; every other character, unassigned (Cn) or assigned as a symbol, punctuation or format
character, falls in the same `[^\s\p{L}\p{N}]` branches. So the characters assigned since
Unicode 14 as symbols and the like (new emoji, 🫨 🩷 ...: omnitok/data/new_others.json, from
unicodedata2 at Unicode 18) pretokenize alike in both engines and need no reference there
(`needs_reference(text, OPENAI)`); tests/test_unicode_guard.py proves both engines agree on each
of them and that the file is what unicodedata2 says. So do the letters, marks and numbers both
engines' tables already know (Unicode 15-16's: CJK Extensions H and I, new scripts and Latin
letters; omnitok/data/openai_known_letters.json, 22,345 code points): the test makes that file
again from the engines themselves, every such code point in every context of CONTEXTS, for
o200k and cl100k; those they split differently (Unicode 17's, e.g. U+323B0) stay guarded.
Hugging Face pre-tokenizers may split on any category (punctuation, symbols) and keep the whole
table.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import threading
from pathlib import Path

from . import early_reference

DATA = Path(__file__).resolve().parents[1] / "data" / "unassigned.json"
NEW_OTHERS = DATA.with_name("new_others.json")
KNOWN_LETTERS = DATA.with_name("openai_known_letters.json")
ANY, OPENAI = "any", "openai"  # which patterns a guard is for (module docstring)


@functools.cache
def _table(patterns: str = ANY):
    """A boolean per code point, True where the guard applies (Unicode 14 assigns nothing, less
    what `patterns` tell apart alike); looked up for a text with many characters above U+FFFF
    (numpy, a dependency: gigatoken hands back numpy arrays). A regex class of every guarded code
    point is ~100x slower (`re` checks ranges above U+FFFF one by one): needs_reference's class
    names only the safe ones, and of those above U+FFFF only the widest runs
    (tests/test_unicode_guard.py holds the answers to the ranges)."""
    import numpy as np

    table = np.zeros(0x110000, dtype=np.bool_)
    for a, b in _guarded(patterns):  # the same ranges _search and _astral start from
        table[a : b + 1] = True
    return table


def _clean_surrogates(text: str) -> str:
    """tiktoken's own cleaning of a str that is not valid UTF-8 (the engines count this text)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def needs_reference(text: str, patterns: str = ANY) -> bool:
    """True if the text holds a code point unassigned in Unicode 14, which the two engines'
    tables may class apart, that the `patterns` (ANY, or OPENAI's) may split differently.

    The common texts are answered without a pass in Python over their characters: ASCII at once;
    a text whose every code point is below U+0100 (Latin-1, all assigned in Unicode 14) from its
    storage width; others by one regex search for a character not surely safe (_search: ~2 ns a
    character, twice as fast as numpy's table lookup), each character above U+FFFF it finds then
    looked up in a table (past _ASTRAL_SEEN of them, the rest of the text in numpy's table).
    tests/test_guard_fast.py checks the answers against the table's."""
    if text.isascii() or _width(text) == 1:
        return False
    search = _search(patterns)
    seen = 0
    found = search(text)
    while found is not None:
        cp = ord(found.group())
        if 0xD800 <= cp <= 0xDFFF:
            # Surrogates: the engines count the text cleaned as tiktoken cleans it (a pair becomes
            # the character above U+FFFF it encodes, a lone one U+FFFD): that is the text to check.
            return needs_reference(_clean_surrogates(text), patterns)
        if cp <= 0xFFFF or _astral(patterns)[cp - 0x10000]:
            return True
        seen += 1
        if seen == _ASTRAL_SEEN:
            return _in_table(text[found.end() :], patterns)
        found = search(text, found.end())
    return False


_ASTRAL_SEEN = 16  # characters above U+FFFF looked up one at a time before numpy takes the rest
# A compact non-ASCII str's size less its 1-byte characters, from a string made here: a literal
# is shared, and once any C code has asked it for UTF-8 its size includes that copy.
_EXTRA = sys.getsizeof("".join(["\u00e9", "\u00e9"])) - 3


def _width(text: str) -> int:
    """CPython's bytes per character of a non-ASCII str (1: all below U+0100, 2: below
    U+10000, 4), from its size (O(1)); 4 (nothing assumed) where that cannot be known."""
    if _CPYTHON and type(text) is str:
        extra, stride = divmod(sys.getsizeof(text) - _EXTRA, len(text) + 1)
        if not stride and extra in (1, 2):
            return extra
    return 4


_CPYTHON = sys.implementation.name == "cpython"


@functools.cache
def _guarded(patterns: str) -> tuple[tuple[int, int], ...]:
    """The guarded code points as sorted, disjoint (first, last) ranges (read once a process:
    _search and _astral both start from them)."""
    ranges = [tuple(r) for r in json.loads(DATA.read_text())["ranges"]]
    if patterns == OPENAI:
        cut = sorted(tuple(r) for name in (NEW_OTHERS, KNOWN_LETTERS) for r in json.loads(name.read_text())["ranges"])
        out = []
        for a, b in ranges:
            for c, d in cut:
                if d < a or c > b:
                    continue
                if c > a:
                    out.append((a, c - 1))
                a = max(a, d + 1)
                if a > b:
                    break
            if a <= b:
                out.append((a, b))
        ranges = out
    return tuple(ranges)


@functools.cache
def _search(patterns: str = ANY):
    """The search for a character that is not surely safe: a negated class of the code points
    below U+10000 that are not guarded (a bitmap in `re`: a safe character costs one lookup) and
    of the _SAFE_RANGES widest runs above U+FFFF that are not (emoji, CJK extensions: compared
    only for characters above U+FFFF). What it finds is guarded if below U+10000, else maybe."""
    safe, start = [], 0
    for a, b in _guarded(patterns):
        if a > start:
            safe.append((start, a - 1))
        start = b + 1
    if start <= 0x10FFFF:
        safe.append((start, 0x10FFFF))
    bmp = []  # surrogates are not safe: needs_reference checks the text they make once cleaned
    for a, b in ((a, min(b, 0xFFFF)) for a, b in safe if a <= 0xFFFF):
        bmp += [(x, y) for x, y in ((a, min(b, 0xD7FF)), (max(a, 0xE000), b)) if x <= y]
    astral = sorted(((max(a, 0x10000), b) for a, b in safe if b > 0xFFFF), key=lambda r: r[0] - r[1])
    ranges = bmp + sorted(astral[:_SAFE_RANGES])
    return re.compile("[^" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]").search


_SAFE_RANGES = 32


@functools.cache
def _astral(patterns: str = ANY) -> bytes:
    """A byte per code point above U+FFFF, 1 where it is guarded."""
    table = bytearray(0x100000)
    for a, b in _guarded(patterns):
        if b > 0xFFFF:
            a = max(a, 0x10000)
            table[a - 0x10000 : b - 0xFFFF] = b"\x01" * (b - a + 1)
    return bytes(table)


def _in_table(text: str, patterns: str) -> bool:
    import numpy as np

    table = _table(patterns)
    for start in range(0, len(text), _CHUNK):  # a slice at a time: memory stays flat for a huge text
        part = text[start : start + _CHUNK]
        if part.isascii():
            continue
        if table.take(np.frombuffer(part.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)).any():
            return True
    return False


_CHUNK = 1 << 18  # characters looked up at once (1 MB of code points)


def prepare(patterns: str = ANY) -> None:
    """Build now what needs_reference builds on first use for `patterns`: the search's regex
    (~6-10 ms to compile), the table above U+FFFF and numpy's table. The pipeline's warm-up calls it
    before forking its shard workers, so that each worker (a fresh fork every few shards) shares
    them instead of building them again on its first text that is not Latin-1."""
    _search(patterns)
    _astral(patterns)
    _table(patterns)


CONTEXTS = (  # where OpenAI's patterns tell a character's class apart (letter case, digits, space)
    "{c}", "a{c}b", "A{c}", "{c}a", " {c} ", "{c}{c}", "1{c}2", "'s{c}", "{c}'s", "\n{c}\n", "x {c}\ty", "\u00e9{c}\u00fc",
)  # fmt: skip


def _ranges(points) -> list[list[int]]:
    ranges: list[list[int]] = []
    for cp in points:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return ranges


def known_letters(unicodedata2, engines) -> list[list[int]]:
    """The ranges of omnitok/data/openai_known_letters.json, made again: code points unassigned in
    Unicode 14 that `unicodedata2` assigns as a letter, mark or number and that every (fast,
    reference) pair in `engines` (gigatoken and tiktoken, per OpenAI encoding) encodes alike in
    each of CONTEXTS: both engines' tables already know them (Unicode 15-16 additions), so a text
    holding them needs no reference. Those they split differently (Unicode 17's, e.g. CJK
    Extension J) stay in the guard."""
    known = []
    for a, b in json.loads(DATA.read_text())["ranges"]:
        for cp in range(a, b + 1):
            if unicodedata2.category(chr(cp))[0] not in "LMN":
                continue
            texts = [ctx.format(c=chr(cp)) for ctx in CONTEXTS]
            if all([list(fast(t)) for t in texts] == ref(texts) for fast, ref in engines):
                known.append(cp)
    return _ranges(known)


def new_others(unicodedata2) -> list[list[int]]:
    """The ranges of omnitok/data/new_others.json, made again: code points unassigned in Unicode
    14 that `unicodedata2` (a later Unicode) assigns as anything but a letter, mark or number
    or white space. `python -c "import unicodedata2, json; from
    omnitok.tokenizers.unicode_guard import new_others; print(json.dumps(new_others(unicodedata2)))"`."""
    points: list[int] = []
    for a, b in json.loads(DATA.read_text())["ranges"]:
        for cp in range(a, b + 1):
            category = unicodedata2.category(chr(cp))
            if category[0] in "LMNZ" or category == "Cn":  # Cn: still unassigned, a later one may be a letter
                continue
            points.append(cp)
    return _ranges(points)


# Set in the pipeline's shard workers: a text that needs the reference engine is not counted
# there (count_batch gives DEFERRED for it) but sent back, and one process loads the reference
# once (pipeline._Reference), so neither start-up nor memory depends on which worker meets such
# a text.
DEFER_REFERENCE = False
DEFERRED = -1
# One reference load at a time, whichever thread asks first (an engine may be shared by threads:
# omnitok serve, a library user's pool).
_LOAD = threading.Lock()


class Lent:
    """Instances of a fast engine's tokenizer, one to a thread at a time. gigatoken's tokenizers
    take themselves mutably while they encode, without the GIL: a second thread calling one that
    is encoding gets RuntimeError('Already borrowed') (as the server's threads would). A thread
    takes a free instance, or builds one more when none is free (o200k: ~0.3 s, ~50 MB), so there
    are never more instances than threads that ever counted at once; past `cap` it waits.

    Taking a free instance and giving it back are one list pop and one append (each atomic under
    the GIL: no two threads get the same instance); only a thread that finds none free takes the
    lock, to build one or wait, and a give wakes it when someone waits."""

    def __init__(self, build, first, cap: int | None = None):
        import os

        self._build = build
        self._free = [first]
        self._made = 1
        self._cap = cap or max(2, os.cpu_count() or 2)
        self._waiting = 0
        self._cond = threading.Condition(threading.Lock())

    def take(self):
        try:
            return self._free.pop()
        except IndexError:
            return self._take_slow()

    def _take_slow(self):
        with self._cond:
            self._waiting += 1  # before looking again: a give after this look sees it and wakes us
            try:
                while True:
                    try:
                        return self._free.pop()
                    except IndexError:
                        pass
                    if self._made < self._cap:
                        self._made += 1
                        break
                    self._cond.wait()
            finally:
                self._waiting -= 1
        try:
            return self._build()
        except BaseException:
            with self._cond:
                self._made -= 1
                self._cond.notify()
            raise

    def give(self, instance) -> None:
        self._free.append(instance)
        if self._waiting:  # read after the append: a thread counted later finds the instance itself
            with self._cond:
                self._cond.notify()


# Texts longer than this (characters) are counted by gigatoken's batch call, which gives up the
# GIL while it encodes, once release_long_texts() has been called; its one-text encode holds it,
# and for one long piece (a run of one letter, space or punctuation mark, or of Han characters)
# that is 0.1-0.18 s a MB: in `omnitok serve` a body of such a run held the event loop, /healthz
# included, for its whole count (~1.4 s for 9 MB; now 2 ms). The same speed either way (a 2 MB
# run: 0.13-0.20 s each); at 64K characters one piece holds the GIL ~10 ms at most.
RELEASED_CHARS = 1 << 16
_RELEASE = False  # release_long_texts() was called


def release_long_texts() -> None:
    """From now on, count texts over RELEASED_CHARS without holding the GIL (count_long): for the
    front ends whose callers wait on an event loop (omnitok.runtime: `omnitok serve` and
    omnitok.aio). Not for the command line's: the batch call imports awkward (~0.3 s) at its
    first use, a third more time for a one-file count of a few MB, and there no loop waits."""
    global _RELEASE
    _RELEASE = True


def count_long(encode, text: str) -> int:
    """The count of a long `text` by the batch call of `encode`'s tokenizer, without the GIL
    (`encode(text)`'s length where its tokenizer has no such call)."""
    batch = getattr(getattr(encode, "__self__", None), "encode_batch", None)
    if batch is None:
        return len(encode(text))
    import awkward

    return int(awkward.num(batch([text], parallel=False), axis=1)[0])


class ReferenceGuarded:
    """A fast engine with a reference engine behind it for the texts it may count differently
    (needs_reference). Subclasses give `_reference_factory`, `_encoder` (a new instance of the fast
    engine's encode: each thread counts with one of its own, `Lent`) and may change `_count_fast`
    and `_encode_fast`; what the fast engine does not offer (offsets, decoding, the vocabulary) the
    reference gives."""

    _reference = None
    _patterns = ANY  # whose pre-tokenizer patterns the guard answers for (OPENAI: narrower)
    _encoders: Lent | None = None
    _early = None  # early_reference.EarlyReference: the reference loaded in a process of its own

    def _reference_factory(self):
        raise NotImplementedError

    def _encoder(self):
        """A new encode function of the fast engine (str -> an array of ids)."""
        raise NotImplementedError

    def _lend(self) -> Lent:
        if self._encoders is None:
            with _LOAD:
                if self._encoders is None:
                    # A large count's reference, in a process forked before the fast engine loads
                    # (early_reference: only within its started() block; else None).
                    self._early = early_reference.start(self._reference_factory)
                    self._encoders = Lent(self._encoder, self._encoder())
        return self._encoders

    @staticmethod
    def _count_fast(encode, text: str) -> int:
        return count_long(encode, text) if _RELEASE and len(text) > RELEASED_CHARS else len(encode(text))

    @staticmethod
    def _encode_fast(encode, text: str) -> list[int]:
        return encode(text).tolist()

    def prepare_for_fork(self) -> None:
        """Load the reference now (before the pipeline forks, or ahead of the texts that need it),
        not lazily in every worker. Safe from several threads: it is loaded once."""
        if self._reference is None:
            with _LOAD:
                if self._reference is None:
                    self._reference = self._reference_factory()

    def count_batch(self, texts) -> list[int]:
        # One call per text: gigatoken's per-text encode is faster than its batch calls once their
        # results are turned into Python objects; the pipeline uses processes for both cores.
        if type(texts) is list and len(texts) == 1:  # EngineStrategy.count: no loop
            return [self.count(texts[0])]
        out = []
        count = self._count_fast
        patterns = self._patterns
        lent = self._lend()
        encode = lent.take()
        try:
            for text in texts:
                if needs_reference(text, patterns):
                    if DEFER_REFERENCE:
                        out.append(DEFERRED)
                        continue
                    self.prepare_for_fork()
                    out.append(self._reference.count_batch([text])[0])
                else:
                    out.append(count(encode, text))
        finally:
            lent.give(encode)
        return out

    def count(self, text: str) -> int:
        """count_batch([text])[0], without the list (the server's one-text path)."""
        if needs_reference(text, self._patterns):
            if DEFER_REFERENCE:
                return DEFERRED
            self.prepare_for_fork()
            return self._reference.count_batch([text])[0]
        lent = self._encoders or self._lend()
        encode = lent.take()
        try:
            return self._count_fast(encode, text)
        finally:
            lent.give(encode)

    def encode(self, text: str) -> list[int]:
        if needs_reference(text, self._patterns):
            return self._ref().encode(text)
        lent = self._lend()
        encode = lent.take()
        try:
            return self._encode_fast(encode, text)
        finally:
            lent.give(encode)

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
