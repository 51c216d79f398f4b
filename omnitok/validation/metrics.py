"""Quality metrics of a compressed text against its original.

ROUGE-L is `rouge-score`'s `RougeScorer(["rougeL"]).score(original, compressed)` (the original
is the reference): the same tokenizer (rouge-score's own, optional Porter stemming) and the same
formulas, with the longest common subsequence computed bit-parallel by rapidfuzz instead of
rouge-score's pure-Python O(n*m) table (identical integer LCS, so identical scores).

BLEU and chrF are sacrebleu's sentence scores, the compressed text the hypothesis and the
original its one reference: `sentence_bleu(compressed, [original])` (13a tokenization, case kept,
exponential smoothing, effective order) and `sentence_chrf(compressed, [original])` (chrF:
character 6-grams, no word n-grams, beta 2, whitespace removed, no epsilon smoothing), each
divided by 100, so that they run 0-1 as omnitok's other scores do. One metric object of each is
made per process and reused (sacrebleu's functions make one a call; the scores are the same).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_ALNUM = re.compile(r"[a-z0-9]+")
_VALID = re.compile(r"^[a-z0-9]+$")


@dataclass(frozen=True, slots=True)
class RougeL:
    precision: float
    recall: float
    f1: float


@functools.lru_cache(maxsize=2)
def _tokenizer(stem: bool):
    try:
        from rouge_score import tokenizers
    except ImportError:
        from ..errors import UsageError

        raise UsageError("ROUGE-L needs rouge-score (pip install 'omnitok[validate]')") from None
    return tokenizers.DefaultTokenizer(use_stemmer=stem)


@functools.lru_cache(maxsize=1)
def _sacrebleu():
    """sacrebleu's BLEU and chrF, made as its sentence_bleu and sentence_chrf make them."""
    try:
        from sacrebleu.metrics import BLEU, CHRF
    except ImportError:
        from ..errors import UsageError

        raise UsageError("BLEU and chrF need sacrebleu (pip install 'omnitok[validate]')") from None
    b = BLEU(
        lowercase=False,
        tokenize=BLEU.TOKENIZER_DEFAULT,
        force=False,
        smooth_method="exp",
        smooth_value=None,
        effective_order=True,
    )
    c = CHRF(
        char_order=CHRF.CHAR_ORDER, word_order=CHRF.WORD_ORDER, beta=CHRF.BETA, whitespace=False, eps_smoothing=False
    )
    return b, c


def bleu(original: str, compressed: str) -> float:
    """sacrebleu's `sentence_bleu(compressed, [original]).score / 100`."""
    return _sacrebleu()[0].sentence_score(compressed, [original]).score / 100


def chrf(original: str, compressed: str) -> float:
    """sacrebleu's `sentence_chrf(compressed, [original]).score / 100`."""
    return _sacrebleu()[1].sentence_score(compressed, [original]).score / 100


def tokenize(text: str, stem: bool = False) -> list[str]:
    """rouge-score's DefaultTokenizer, token for token: lowercase, runs of [a-z0-9], and with
    stemming its Porter stemmer on tokens longer than 3 characters (then its validity filter).
    One findall instead of its sub + split + per-token regex, which is most of its cost."""
    tokens = _ALNUM.findall(text.lower())
    if stem:
        stemmer = _tokenizer(True)._stemmer
        tokens = [stemmer.stem(t) if len(t) > 3 else t for t in tokens]
        tokens = [t for t in tokens if _VALID.match(t)]
    return tokens


def _lcs_length(a: list[str], b: list[str]) -> int:
    try:
        from rapidfuzz.distance import LCSseq
    except ImportError:  # the reference algorithm, slower
        prev = [0] * (len(b) + 1)
        for x in a:
            cur = [0]
            for j, y in enumerate(b, 1):
                cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
            prev = cur
        return prev[-1]
    return LCSseq.similarity(a, b)  # lists of tokens directly: faster than mapping them to chars


def rouge_l(original: str, compressed: str, stem: bool = False) -> RougeL:
    target, prediction = tokenize(original, stem), tokenize(compressed, stem)
    if not target or not prediction:
        return RougeL(0, 0, 0)
    lcs = _lcs_length(target, prediction)
    precision = lcs / len(prediction)
    recall = lcs / len(target)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return RougeL(precision, recall, f1)
