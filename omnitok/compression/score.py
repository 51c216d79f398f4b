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


def bm25(docs: list[list[str]], query: list[str]) -> np.ndarray:
    """Okapi BM25 of each doc for the query, IDF over the docs themselves (Lucene's idf form)."""
    n = len(docs)
    if n == 0 or not query:
        return np.zeros(n)
    df: Counter = Counter()
    for d in docs:
        df.update(set(d))
    avg = sum(len(d) for d in docs) / n or 1.0
    qset = Counter(query)
    idf = {q: math.log(1 + (n - df[q] + 0.5) / (df[q] + 0.5)) for q in qset if df[q]}
    out = np.zeros(n)
    if not idf:
        return out
    for i, d in enumerate(docs):
        tf = Counter(t for t in d if t in idf)
        if not tf:
            continue
        norm = K1 * (1 - B + B * len(d) / avg)
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
    """BM25 relevance per unit (mixed with its passage's), or TF-IDF centrality without a query."""
    unit_terms = [terms(u.text) for u in units]
    ids, owner = passages_of(units)
    if not query:
        return minmax(_centrality(unit_terms))
    q = terms(query)
    unit_s = minmax(bm25(unit_terms, q))
    passage_terms: list[list[str]] = [[] for _ in ids]
    for t, o in zip(unit_terms, owner, strict=True):
        passage_terms[o].extend(t)
    passage_s = minmax(bm25(passage_terms, q))
    return (1 - passage_weight) * unit_s + passage_weight * passage_s[owner]


def _centrality(unit_terms: list[list[str]]) -> np.ndarray:
    """Cosine of each unit's TF-IDF vector with the context's centroid: salience without a query."""
    n = len(unit_terms)
    df: Counter = Counter()
    for t in unit_terms:
        df.update(set(t))
    vocab = {w: i for i, w in enumerate(df)}
    if not vocab:
        return np.zeros(n)
    m = np.zeros((n, len(vocab)))
    for i, t in enumerate(unit_terms):
        for w, f in Counter(t).items():
            m[i, vocab[w]] = (1 + math.log(f)) * math.log(1 + n / df[w])
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    m = np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)
    centroid = m.mean(axis=0)
    c = np.linalg.norm(centroid)
    return m @ (centroid / c) if c > 0 else np.zeros(n)


def dense(units: list[Unit], query: str | None, embed, passage_weight: float) -> np.ndarray:
    """Cosine similarity of unit embeddings (a passage: the mean of its units') to the query's;
    without a query, to the centroid of the units. `embed(texts) -> (n, d)` unit-norm rows.
    A sentence is embedded with its passage's title in front, as retrievers embed passages."""
    ids, owner = passages_of(units)
    titles = {u.passage: u.text for u in units if u.kind == "title"}
    texts = [f"{titles[u.passage]}: {u.text}" if u.passage in titles and u.kind != "title" else u.text for u in units]
    vecs = embed(texts + ([query] if query else []))
    unit_v = vecs[: len(units)]
    passage_v = np.zeros((len(ids), unit_v.shape[1]))
    np.add.at(passage_v, owner, unit_v)
    passage_v /= np.maximum(np.linalg.norm(passage_v, axis=1, keepdims=True), 1e-9)
    if query:
        q = vecs[-1]
    else:
        centroid = unit_v.mean(axis=0)
        q = centroid / (np.linalg.norm(centroid) or 1.0)
    unit_s = minmax(unit_v @ q)
    passage_s = minmax(passage_v @ q)
    return (1 - passage_weight) * unit_s + passage_weight * passage_s[owner]
