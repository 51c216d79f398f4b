"""Relevance of each unit: BM25 and dense similarity to the query, or salience without one.

Scores are computed per context (its units are the collection: BM25's IDF comes from the
context itself, so no corpus statistics are needed) at two levels: the unit, and the passage it
belongs to, which lends its relevance to every unit in it (an answer is often in a sentence next
to the one that repeats the question's words). Each signal is min-max normalised within the
context before signals are mixed, so weights mean the same thing for every context.
"""

from __future__ import annotations

import functools
import math
import re
from array import array
from collections import Counter

import numpy as np

from .segment import Unit

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)
K1, B = 1.2, 0.75


@functools.lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A light English suffix stripper: plurals, -ing, -ed (enough for BM25 matching)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def terms(text: str) -> list[str]:
    """Lower-cased, stemmed words without stop words; CJK text as single characters."""
    out = []
    for w in _WORD.findall(text.lower()):
        if _CJK.search(w):
            out.extend(_CJK.findall(w))
        elif w not in STOPWORDS:
            out.append(stem(w))
    return out


def _hits(doc_terms: list[str], qset) -> dict[str, int] | None:
    """How often each query term occurs in a doc, in order of first occurrence; None for none."""
    hits = [t for t in doc_terms if t in qset]
    return Counter(hits) if hits else None


def bm25(lengths: list[int], tfs: list[dict | None], qset: Counter) -> np.ndarray:
    """Okapi BM25 of each doc for the query terms `qset` (term -> count), IDF over the docs
    themselves (Lucene's idf form), from what it needs of a doc: its length in terms and its
    query-term counts in order of first occurrence (_hits), not its words."""
    n = len(lengths)
    if n == 0 or not qset:
        return np.zeros(n)
    df: Counter = Counter()
    for tf in tfs:
        if tf:
            df.update(tf.keys())
    avg = sum(lengths) / n or 1.0
    idf = {q: math.log(1 + (n - df[q] + 0.5) / (df[q] + 0.5)) for q in qset if df[q]}
    out = np.zeros(n)
    if not idf:
        return out
    for i, tf in enumerate(tfs):
        if not tf:
            continue
        norm = K1 * (1 - B + B * lengths[i] / avg)
        out[i] = sum(idf[q] * qset[q] * f * (K1 + 1) / (f + norm) for q, f in tf.items())
    return out


def minmax(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x, dtype=float)


def passages_of(units: list[Unit]) -> tuple[list[int], np.ndarray]:
    """(passage ids in order, index of each unit's passage in that list)."""
    ids = sorted({u.passage for u in units})
    where = {p: i for i, p in enumerate(ids)}
    return ids, np.array([where[u.passage] for u in units], dtype=int)


def lexical(units: list[Unit], query: str | None, passage_weight: float) -> np.ndarray:
    """BM25 relevance per unit (mixed with its passage's), or TF-IDF centrality without a query.

    A unit's terms are read once and reduced at once to what the scores need (its length and its
    query-term counts; without a query, its term frequencies by vocabulary id), so no word list
    is held for the whole context."""
    ids, owner = passages_of(units)
    if not query:
        return minmax(_centrality(units))
    qset = Counter(terms(query))
    lengths, tfs = [], []
    for u in units:
        t = terms(u.text)
        lengths.append(len(t))
        tfs.append(_hits(t, qset) if qset else None)
    unit_s = minmax(bm25(lengths, tfs, qset))
    p_lengths = [0] * len(ids)
    p_tfs: list[dict | None] = [None] * len(ids)
    for n, tf, o in zip(lengths, tfs, owner.tolist(), strict=True):
        p_lengths[o] += n
        if tf:  # the passage's counts in the order its terms first occur, as in its units joined
            merged = p_tfs[o]
            if merged is None:
                merged = p_tfs[o] = Counter()
            for q, f in tf.items():
                merged[q] += f
    passage_s = minmax(bm25(p_lengths, p_tfs, qset))
    return (1 - passage_weight) * unit_s + passage_weight * passage_s[owner]


def _centrality(units: list[Unit]) -> np.ndarray:
    """Cosine of each unit's TF-IDF vector with the context's centroid: salience without a query.

    Sparse: a unit's vector is its distinct terms' weights, held as flat arrays for the whole
    context (a dense (units, vocabulary) matrix grows with the square of the context). A unit's
    sums run in vocabulary order, as along a dense row, so units with the same terms in another
    order score exactly the same (a tie, broken by position)."""
    n = len(units)
    vocab: dict[str, int] = {}
    cols, counts = array("i"), array("i")  # each unit's distinct terms, and how often it uses them
    sizes = np.zeros(n, dtype=np.int64)
    for i, u in enumerate(units):
        tf = Counter(terms(u.text))
        sizes[i] = len(tf)
        cols.extend([vocab.setdefault(w, len(vocab)) for w in tf])
        counts.extend(tf.values())
    if not vocab:
        return np.zeros(n)
    col = np.frombuffer(cols, dtype=np.int32)
    by_term = np.lexsort((col, np.repeat(np.arange(n, dtype=np.int32), sizes)))  # each unit's own run
    col = col[by_term]
    df = np.bincount(col, minlength=len(vocab))
    w = np.log(np.frombuffer(counts, dtype=np.int32)[by_term])
    del by_term, cols, counts
    w += 1
    w *= np.log(1 + n / df)[col]
    has = sizes > 0
    starts = (np.cumsum(sizes) - sizes)[has]  # strictly increasing, all inside w

    def row_sums(x: np.ndarray) -> np.ndarray:
        out = np.zeros(n)
        out[has] = np.add.reduceat(x, starts)
        return out

    norms = np.sqrt(row_sums(w * w))
    w /= np.repeat(np.where(norms > 0, norms, 1.0), sizes)
    centroid = np.bincount(col, weights=w, minlength=len(vocab)) / n
    c = float(np.linalg.norm(centroid))
    if not c > 0:
        return np.zeros(n)
    w *= (centroid / c)[col]
    return row_sums(w)


def passage_sums(rows: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Each passage's sum of its units' rows, in float64, added in unit order (what np.add.at
    into zeros gives, bit for bit). Units come in passage order, so one reduceat over runs does
    it; np.add.at (unbuffered, slow) only for an owner array out of order."""
    out = np.zeros((n, rows.shape[1]))
    if len(owner) == 0:
        return out
    if np.all(owner[1:] >= owner[:-1]):
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        out[owner[starts]] = np.add.reduceat(rows.astype(np.float64), starts, axis=0)
    else:
        np.add.at(out, owner, rows)
    return out


def dense(units: list[Unit], query: str | None, embed, passage_weight: float) -> np.ndarray:
    """Cosine similarity of unit embeddings (a passage: the mean of its units') to the query's;
    without a query, to the centroid of the units. `embed(texts) -> (n, d)` unit-norm rows.
    A sentence is embedded with its passage's title in front, as retrievers embed passages."""
    ids, owner = passages_of(units)
    titles = {u.passage: u.text for u in units if u.kind == "title"}
    texts = [f"{titles[u.passage]}: {u.text}" if u.passage in titles and u.kind != "title" else u.text for u in units]
    vecs = embed(texts + ([query] if query else []))
    unit_v = vecs[: len(units)]
    passage_v = passage_sums(unit_v, owner, len(ids))
    passage_v /= np.maximum(np.linalg.norm(passage_v, axis=1, keepdims=True), 1e-9)
    if query:
        q = vecs[-1]
    else:
        centroid = unit_v.mean(axis=0)
        q = centroid / (np.linalg.norm(centroid) or 1.0)
    unit_s = minmax(unit_v @ q)
    passage_s = minmax(passage_v @ q)
    return (1 - passage_weight) * unit_s + passage_weight * passage_s[owner]
