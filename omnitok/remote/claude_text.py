"""A text's own tokens from Claude's count APIs, which answer for a whole framed request.

Anthropic's count_tokens (and Bedrock's CountTokens for Claude) count one user message as its
text plus the tokens that frame it. That framing is not a published constant: Claude 3 added 3
(Rando & Tramer 2024); ctoc (2026) saw count_tokens("a") = 8 on claude-sonnet-4, i.e. 7, with the
framing seen depending on the message's first character (the text merges with what precedes it).
So omnitok neither subtracts a constant nor lets the framing touch the text. Each text is sent
between a fixed head and tail, and the same request around a one-token probe is measured once:

    tokens(text) = api(HEAD + text + TAIL) - api(HEAD + PROBE + TAIL) + 1

- HEAD = "x\\n" ends on a line break, which byte-level BPE pretokenizers (o200k's, whose splits
  Claude 3's match on the published sample) never join to a following character other than more
  whitespace ending in a line break. The framing always meets the same first character, and the
  text starts on a token boundary.
- TAIL = " x" is a piece of its own after any character (the space joins the word after it, and
  a trailing space of the text stays the text's), so the text ends on a boundary, and whatever
  the framing adds after the message is identical in both requests.
- PROBE = "a" is one token. A text whose leading whitespace holds a line break (it would join
  HEAD's) goes behind HEAD_NL = "x" instead, against PROBE_NL = "\\n" (one token).

Checked offline against o200k_base and cl100k_base as stand-ins: 15,010 chunks of source, prose,
CJK, emoji and whitespace, plus 30,000 generated strings, all equal to the tokenizer's own count.

The base api(HEAD + PROBE + TAIL) is measured once per model, endpoint and variant in a process
(one request, under a lock while requests run concurrently) and kept in the persistent cache (L2
and L3 as the config file and environment place them) under the model's key tag, so a later run
does not measure it again and `omnitok cache clear --model M` forgets it; the key holds RULE, the
version of this method, which the strategy's fingerprint carries too.

Residual error, and what is checked:
- The method is exact when Claude's pretokenizer splits where o200k's does around HEAD and TAIL
  and "a" and "\\n" are single tokens; its vocabulary is unpublished, so that is an assumption.
  Where both variants' bases are known they must differ by one token (the probe "a"), else the
  measurement is inconsistent.
- Every answer must give a non-empty text 1 .. (its UTF-8 bytes) tokens. One outside that
  range has the base measured again: a different base means the framing changed during the run,
  anything else an answer the method cannot explain. Either is a RemoteError (the run falls back
  to the offline estimate, labelled `exact: false`, or fails under --strict) and the stored base
  is invalidated (stored as 0), never a silently shifted exact count. A change small enough to
  keep every answer in range is not seen; nor is a stored base gone stale between runs unless an
  answer falls out of range (`omnitok cache clear --model M` measures afresh).
- Anthropic calls count_tokens an estimate; omnitok reports it as the exact count it is for billing.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import re
import threading
from collections.abc import Callable

from ..errors import RemoteError
from ..redact import redact_url

RULE = 2  # 1: input_tokens - 3; 2: this module's measured sandwich
HEAD, TAIL, PROBE = "x\n", " x", "a"
HEAD_NL, PROBE_NL = "x", "\n"
PLAIN, NEWLINE = "plain", "newline"
_LEADS_WITH_LINE_BREAK = re.compile(r"\s*[\r\n]")

# (persistent cache's place, fingerprint, endpoint, variant) -> base, in this process: a memory in
# front of that cache (so a process that moves its cache directory reads the new one's)
_memo: dict[tuple, int] = {}
_memo_lock = threading.Lock()


def forget() -> None:
    """Drop the bases measured in this process (the persistent cache keeps its own)."""
    with _memo_lock:
        _memo.clear()


def variant_of(text: str) -> str:
    return NEWLINE if _LEADS_WITH_LINE_BREAK.match(text) else PLAIN


def wrap(text: str) -> str:
    """The message content sent to count `text`."""
    return (HEAD_NL if variant_of(text) == NEWLINE else HEAD) + text + TAIL


def probe(variant: str) -> str:
    """The message content whose count is the base of `variant`."""
    return (HEAD_NL + PROBE_NL if variant == NEWLINE else HEAD + PROBE) + TAIL


class ClaudeText:
    """Counts texts through `send` (message content -> the API's input tokens) for one provider
    and model; `fingerprint` is the strategy's (it holds the model)."""

    def __init__(self, provider: str, model: str, fingerprint: str, url: str, send: Callable[[str], int]):
        self.provider = provider
        self.model = model
        self.fingerprint = fingerprint
        self.endpoint = redact_url(url)
        self.send = send
        self.place = _place()
        self._lock = threading.Lock()  # one measurement at a time for this model
        self._failed: str | None = None  # why its counts stopped being trusted
        # The error of the last measurement that failed (the API unreachable, refusing, ...): the
        # threads that waited on it get it instead of each measuring again in turn.
        self._last_failure: RemoteError | None = None

    def count(self, text: str) -> int:
        if not text:
            return 0  # nothing to send: an empty message is refused, and has no tokens
        if self._failed is not None:  # this model's counts stopped adding up: no more of them
            raise RemoteError(self.provider, self._failed)
        variant = variant_of(text)
        base = self.base(variant)
        n = self.send(wrap(text)) - base + 1
        if not 1 <= n <= len(text.encode("utf-8", "surrogatepass")):
            self._recheck(variant, base, n, len(text))
        return n

    # --- the base of each variant --------------------------------------------------------------

    def _key(self, variant: str) -> tuple:
        return (self.place, self.fingerprint, self.endpoint, variant)

    def base(self, variant: str) -> int:
        key = self._key(variant)
        with _memo_lock:
            if key in _memo:
                return _memo[key]
        seen = self._last_failure
        with self._lock:
            if self._failed is not None:  # another thread found the counts untrustworthy while this one waited
                raise RemoteError(self.provider, self._failed)
            with _memo_lock:
                if key in _memo:  # another thread measured it while this one waited
                    return _memo[key]
            if self._last_failure is not seen:
                # the measurement this thread waited on failed after its retries: the same answer now,
                # not one more round of retries per waiting thread (8 in flight: 8 rounds in a row
                # before the run could fall back). A later call measures again.
                raise copy.copy(self._last_failure)
            base = _stored(self.fingerprint, self.endpoint, variant)
            if base is None:
                try:
                    base = self._measure(variant)
                except RemoteError as e:
                    self._last_failure = copy.copy(e)  # a new object each failure: waiters see it changed
                    raise
                self._check_pair(variant, base)
                _store(self.fingerprint, self.endpoint, variant, base)
            else:
                self._check_pair(variant, base)
            with _memo_lock:
                _memo[key] = base
            return base

    def _measure(self, variant: str) -> int:
        base = self.send(probe(variant))
        if base < 1:
            raise RemoteError(self.provider, f"counted {base} tokens for a one-word message to {self.model}")
        return base

    def _check_pair(self, variant: str, base: int) -> None:
        """With both bases known, the plain one counts the probe "a" on top of the other's."""
        other = NEWLINE if variant == PLAIN else PLAIN
        with _memo_lock:
            known = _memo.get(self._key(other))
        if known is None:
            return
        plain, newline = (base, known) if variant == PLAIN else (known, base)
        if plain - newline != 1:
            self._invalidate()
            self._failed = (
                f"the message framing measured for {self.model} is inconsistent (its two probes differ by "
                f"{plain - newline} tokens, not 1), so text counts cannot be separated from it"
            )
            raise RemoteError(self.provider, self._failed)

    def _recheck(self, variant: str, base: int, n: int, length: int) -> None:
        """An answer outside what any text of its length can count: measure the base again (once,
        whichever thread sees it first) and say what went wrong. Always a RemoteError."""
        with self._lock:
            if self._failed is None:
                fresh = self._measure(variant)
                self._invalidate()
                if fresh != base:
                    self._failed = (
                        f"the message framing of {self.model} changed during the run (its probe counted {base}, "
                        f"then {fresh}), so its text counts cannot be trusted as exact"
                    )
                else:
                    self._failed = (
                        f"an answer implies {n} tokens for a {length}-character text, with the message framing "
                        f"measured for {self.model} unchanged; the framing cannot be separated from its text counts"
                    )
            raise RemoteError(self.provider, self._failed)

    def _invalidate(self) -> None:
        with _memo_lock:
            for variant in (PLAIN, NEWLINE):
                _memo.pop(self._key(variant), None)
        for variant in (PLAIN, NEWLINE):
            _store(self.fingerprint, self.endpoint, variant, 0)


# --- the persistent cache ----------------------------------------------------------------------
# Opened for each read or write (once per model and run), with the tiers' own connections closed
# after; the run's statistics are not touched. Any failure only means measuring again.


def _place() -> tuple | None:
    """Where the persistent cache is, as the config file and environment say now."""
    try:
        from ..cache import settings_from

        s = settings_from()
    except Exception:
        return None
    return (str(s.directory), s.l3_url, s.l3_prefix, s.hash_algorithm)


def _open():
    from ..cache import settings_from
    from ..cache.tiered import TieredCache

    settings = settings_from()
    if settings.directory is None and not settings.l3_url:
        return None
    from dataclasses import replace

    return TieredCache(replace(settings, bloom=False))


def _close(cache) -> None:
    for tier in (cache.l2, cache.l3):
        if tier is not None:
            with contextlib.suppress(Exception):
                tier.close()


def cache_key(fingerprint: str, endpoint: str, variant: str, algorithm: str) -> str:
    """Under the model's tag (as `cache clear --model` computes it); the rest is no count key's."""
    from ..cache.keys import KeyMaker

    tag = KeyMaker(fingerprint, "", algorithm).tag
    digest = hashlib.sha256(f"claude-framing\0{RULE}\0{variant}\0{endpoint}".encode()).hexdigest()[:32]
    return f"{tag}:framing-{digest}"


def _stored(fingerprint: str, endpoint: str, variant: str) -> int | None:
    try:
        cache = _open()
        if cache is None:
            return None
        try:
            value = cache.get_many([cache_key(fingerprint, endpoint, variant, cache.algorithm)])[0]
        finally:
            _close(cache)
    except Exception:  # an unusable cache (bad config, missing blake3, a damaged database)
        return None
    return value or None  # 0: invalidated


def _store(fingerprint: str, endpoint: str, variant: str, base: int) -> None:
    try:
        cache = _open()
        if cache is None:
            return
        try:
            cache.set_many({cache_key(fingerprint, endpoint, variant, cache.algorithm): base})
        finally:
            _close(cache)
    except Exception:
        pass
