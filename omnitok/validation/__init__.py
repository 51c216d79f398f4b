"""`omnitok validate`: score compressed prompts against their originals and gate on thresholds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .metrics import RougeL, rouge_l

METRICS = ("rouge-l", "compression")
FAIL_ON = ("any", "mean", "p10")


@dataclass
class Thresholds:
    min_rouge_l: float | None = None
    max_ratio: float | None = None


@dataclass
class ValidationResult:
    passed: bool
    rouge_l_score: float | None = None
    details: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def score_pair(original: str, compressed: str, metrics=("rouge-l",), counter=None, stem: bool = False) -> dict:
    """Per-pair scores: rouge_l_{precision,recall,f1}; original_tokens, compressed_tokens, ratio."""
    out: dict = {}
    for metric in metrics:
        if metric == "rouge-l":
            r: RougeL = rouge_l(original, compressed, stem)
            out.update(rouge_l_precision=r.precision, rouge_l_recall=r.recall, rouge_l_f1=r.f1)
        elif metric == "compression":
            if counter is None:
                from ..api import Counter

                counter = Counter()
            a, b = (x.tokens for x in counter.count_batch([original, compressed]))
            out.update(original_tokens=a, compressed_tokens=b, ratio=(b / a) if a else (0.0 if b == 0 else math.inf))
        else:
            from ..errors import UsageError

            raise UsageError(f"unknown metric {metric!r}; available: {', '.join(METRICS)} (bertscore: not yet)")
    return out


def failures(scores: dict, t: Thresholds) -> list[str]:
    out = []
    if t.min_rouge_l is not None and "rouge_l_f1" in scores and scores["rouge_l_f1"] < t.min_rouge_l:
        out.append(f"rouge-l f1 {scores['rouge_l_f1']:.4f} < {t.min_rouge_l}")
    if t.max_ratio is not None and "ratio" in scores and scores["ratio"] > t.max_ratio:
        out.append(f"ratio {scores['ratio']:.4f} > {t.max_ratio}")
    return out


def validate(
    original: str,
    compressed: str,
    metrics=("rouge-l",),
    min_rouge_l: float | None = None,
    max_ratio: float | None = None,
    model: str | None = None,
    stem: bool = False,
) -> ValidationResult:
    """The spec's Python form: `omnitok.validate(original, compressed, metrics=["rouge-l"])`."""
    counter = None
    if "compression" in metrics:
        from ..api import Counter

        counter = Counter(model)
    scores = score_pair(original, compressed, tuple(metrics), counter, stem)
    fails = failures(scores, Thresholds(min_rouge_l, max_ratio))
    return ValidationResult(not fails, scores.get("rouge_l_f1"), scores, fails)


def aggregate(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "p10": None, "min": None}
    ordered = sorted(values)
    p10 = ordered[max(0, math.ceil(0.10 * len(ordered)) - 1)]
    return {"mean": sum(values) / len(values), "p10": p10, "min": ordered[0]}
