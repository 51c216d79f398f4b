"""`omnitok validate`: score compressed prompts against their originals and gate on thresholds."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from ..options import FAIL_ON, METRICS, ValidateOptions
from .metrics import RougeL, bleu, chrf, rouge_l

__all__ = [
    "FAIL_ON",
    "FIELDS",
    "METRICS",
    "Thresholds",
    "ValidateOptions",
    "ValidationResult",
    "add_bertscore",
    "aggregate",
    "failures",
    "score_pair",
    "validate",
    "validate_options",
    "with_gated",
]


# The scores each metric adds to a pair's row, in order.
FIELDS = {
    "rouge-l": ("rouge_l_precision", "rouge_l_recall", "rouge_l_f1"),
    "compression": ("original_tokens", "compressed_tokens", "ratio"),
    "bertscore": ("bertscore_precision", "bertscore_recall", "bertscore_f1"),
    "bleu": ("bleu",),
    "chrf": ("chrf",),
}


@dataclass
class Thresholds:
    """The gates. BLEU's and chrF's run 0-1, as their scores here do (sacrebleu's / 100)."""

    min_rouge_l: float | None = None
    max_ratio: float | None = None
    min_bertscore: float | None = None
    min_bleu: float | None = None
    min_chrf: float | None = None

    def __post_init__(self) -> None:
        from ..numbers import checked
        from ..options import share

        checked("--min-rouge-l", self.min_rouge_l, 0, 1)
        checked("--max-ratio", self.max_ratio, 0)
        checked("--min-bertscore", self.min_bertscore, -1, 1)
        share("--min-bleu", self.min_bleu)
        share("--min-chrf", self.min_chrf)

    @classmethod
    def of(cls, options: ValidateOptions) -> Thresholds:
        """The gates a ValidateOptions sets."""
        o = options
        return cls(o.min_rouge_l, o.max_ratio, o.min_bertscore, o.min_bleu, o.min_chrf)

    def metrics(self) -> tuple[str, ...]:
        """The metrics these thresholds need: a gate on a metric turns the metric on."""
        need = (
            ("rouge-l", self.min_rouge_l),
            ("compression", self.max_ratio),
            ("bertscore", self.min_bertscore),
            ("bleu", self.min_bleu),
            ("chrf", self.min_chrf),
        )
        return tuple(metric for metric, threshold in need if threshold is not None)


@dataclass
class ValidationResult:
    passed: bool
    rouge_l_score: float | None = None
    details: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def score_pair(original: str, compressed: str, metrics=("rouge-l",), counter=None, stem: bool = False) -> dict:
    """Per-pair scores: rouge_l_{precision,recall,f1}; original_tokens, compressed_tokens, ratio;
    bleu; chrf (FIELDS). BERTScore's are added by add_bertscore."""
    out: dict = {}
    for metric in metrics:
        if metric == "rouge-l":
            r: RougeL = rouge_l(original, compressed, stem)
            out.update(rouge_l_precision=r.precision, rouge_l_recall=r.recall, rouge_l_f1=r.f1)
        elif metric == "bleu":
            out["bleu"] = bleu(original, compressed)
        elif metric == "chrf":
            out["chrf"] = chrf(original, compressed)
        elif metric == "bertscore":
            continue  # scored in batches by add_bertscore (one model call for many pairs)
        elif metric == "compression":
            if counter is None:
                from ..counter import Counter

                counter = Counter()
            a, b = (x.tokens for x in counter.count_batch([original, compressed]))
            out.update(original_tokens=a, compressed_tokens=b, ratio=(b / a) if a else (0.0 if b == 0 else math.inf))
        else:
            from ..errors import UsageError

            raise UsageError(f"unknown metric {metric!r}; available: {', '.join(METRICS)}")
    return out


def add_bertscore(
    rows: list[dict],
    pairs: list[tuple[str, str]],
    model_dir=None,
    idf=False,
    rescale=False,
    cache: str = "auto",
    cache_dir: str | None = None,
) -> dict | None:
    """BERTScore precision/recall/F1 for many (original, compressed) pairs at once.

    Scores are cached through the three-tier cache by model, layer, rescaling and both texts
    (~300 ms a pair on CPU is dear); not with idf, whose weights depend on the whole set.
    Returns the cache's run statistics, if a cache was used."""
    import json

    from .bertscore import scorer

    s = scorer(model_dir, idf, rescale)
    tiered = keys = None
    found: list = [None] * len(pairs)
    if cache != "off" and not idf:
        from ..cache import TieredCache, settings_from
        from ..cache.keys import KeyMaker
        from ..cache.values import parse_scores

        tiered = TieredCache(settings_from(cache_dir))
        keys = KeyMaker(f"bertscore:{s.model_fingerprint}", f"rescale={int(rescale)}", tiered.algorithm)
        found = tiered.get_many([keys.key(o + "\0" + c) for o, c in pairs], decode=parse_scores)
    todo = [i for i, v in enumerate(found) if v is None]
    if todo:
        fresh = s.score([pairs[i][1] for i in todo], [pairs[i][0] for i in todo])
        for i, v in zip(todo, fresh, strict=True):
            found[i] = list(v)
        if tiered is not None:
            tiered.set_many({keys.key(pairs[i][0] + "\0" + pairs[i][1]): json.dumps(found[i]) for i in todo})
    for row, (p, r, f) in zip(rows, found, strict=True):
        row.update(bertscore_precision=p, bertscore_recall=r, bertscore_f1=f)
    if tiered is None:
        return None
    stats = tiered.run_stats()
    tiered.close()
    return stats


def with_gated(metrics, t: Thresholds) -> tuple[str, ...]:
    """`metrics` plus every metric a threshold gates on, in order, without repeats."""
    return tuple(dict.fromkeys((*metrics, *t.metrics())))


def failures(scores: dict, t: Thresholds) -> list[str]:
    """The gates `scores` fail; a gated score that is missing fails too (a gate never passes unread)."""
    out = []
    gates = (
        ("bertscore f1", "bertscore_f1", t.min_bertscore, "<"),
        ("rouge-l f1", "rouge_l_f1", t.min_rouge_l, "<"),
        ("ratio", "ratio", t.max_ratio, ">"),
        ("bleu", "bleu", t.min_bleu, "<"),
        ("chrf", "chrf", t.min_chrf, "<"),
    )
    for label, key, threshold, fails_when in gates:
        if threshold is None:
            continue
        value = scores.get(key)
        if value is None:
            out.append(f"{label} not scored")
        elif (value < threshold) if fails_when == "<" else (value > threshold):
            out.append(f"{label} {_beside(value, threshold)} {fails_when} {threshold}")
    return out


def _beside(value: float, threshold: float) -> str:
    """`value` to 4 decimals, or to as many more as it takes to differ from `threshold` as it
    does ("0.6667 < 0.66667" read as a pass; "0.666667 < 0.66667" does not)."""
    for digits in range(4, 17):
        shown = f"{value:.{digits}f}"
        if float(shown) != float(threshold) and (float(shown) < threshold) == (value < threshold):
            return shown
    return repr(value)


def validate_options(arguments: Mapping, **fixed) -> ValidateOptions:
    """The ValidateOptions of a front end's call (`validate`, `omnitok validate`, the Ray stage):
    its arguments named as ValidateOptions' fields (the others, about input, output and how it
    runs, left out), `fixed` over them. Made and checked in one place: ValidateOptions checks the
    metric names and each gate's range, with the command line's messages."""
    names = {f.name for f in fields(ValidateOptions)}
    return ValidateOptions(**{**{k: v for k, v in arguments.items() if k in names}, **fixed})


def validate(
    original: str,
    compressed: str,
    metrics=("rouge-l",),
    min_rouge_l: float | None = None,
    max_ratio: float | None = None,
    model: str | None = None,
    stem: bool = False,
    min_bertscore: float | None = None,
    bertscore_model: str | None = None,
    idf: bool = False,
    rescale: bool = False,
    min_bleu: float | None = None,
    min_chrf: float | None = None,
    *,
    options: ValidateOptions | None = None,
) -> ValidationResult:
    """The spec's Python form: `omnitok.validate(original, compressed, metrics=["rouge-l"])`.

    Metrics: rouge-l, compression, bertscore, bleu, chrf (sacrebleu's sentence scores / 100, the
    compressed text the hypothesis, the original its reference). `options` (a ValidateOptions)
    says how to validate in one object, in place of the keyword options (metrics, the gates,
    stem, bertscore_model, idf, rescale)."""
    arguments = dict(locals())  # first: the keyword options, before any other name is bound
    for name, text in (("original", original), ("compressed", compressed)):
        if not isinstance(text, str):
            raise TypeError(f"validate: {name} must be a string, not {type(text).__name__}")
    if options is None:
        options = validate_options(arguments)
    elif not isinstance(options, ValidateOptions):
        raise TypeError(f"options must be a ValidateOptions, not {type(options).__name__}")
    thresholds = Thresholds.of(options)
    metrics = options.scored
    counter = None
    if "compression" in metrics:
        from ..counter import Counter

        counter = Counter(model, options=options.count)
    scores = score_pair(original, compressed, metrics, counter, options.stem)
    if "bertscore" in metrics:
        add_bertscore(
            [scores],
            [(original, compressed)],
            options.bertscore_model,
            options.idf,
            options.rescale,
            options.cache,
            options.cache_dir,
        )
    fails = failures(scores, thresholds)
    return ValidationResult(not fails, scores.get("rouge_l_f1"), scores, fails)


def aggregate(values: list[float], lower_is_better: bool = False) -> dict:
    """mean, p10 and min of a metric over the pairs; for one where lower is better (the ratio)
    also p90 and max, its worse end, which `--fail-on p10` judges (`gate_point`)."""
    if not values:
        out = {"mean": None, "p10": None, "min": None}
        return {**out, "p90": None, "max": None} if lower_is_better else out
    ordered = sorted(values)
    n = len(ordered)
    out = {"mean": sum(values) / n, "p10": ordered[max(0, math.ceil(0.10 * n) - 1)], "min": ordered[0]}
    if lower_is_better:
        out.update(p90=ordered[min(n - 1, n - math.ceil(0.10 * n))], max=ordered[-1])
    return out


def gate_point(agg: dict, fail_on: str, lower_is_better: bool = False):
    """The aggregate a gate over the pairs judges: the mean, or for `p10` the worse 10% end (the
    10th percentile of a score, the 90th of the ratio: p10 of a ratio is its *best* end, and
    judging it passed a --max-ratio gate that half the pairs broke)."""
    if fail_on == "p10" and lower_is_better:
        return agg["p90"]
    return agg[fail_on]
