"""The closing step of a validate run over many pairs: BERTScore for the scored pairs (in one
batch), each pair's pass or fail, the aggregates, the gate (`fail_on`: any pair, the mean, or the
10th percentile: the worse 10% end of each metric, the 90th percentile of the ratio) and the summary every report ends with. `omnitok validate` calls it after
scoring; a Python user with rows from `score_pair` can too."""

from __future__ import annotations

from . import FAIL_ON, Thresholds, ValidateOptions, add_bertscore, aggregate, failures, gate_point

# The scores aggregated (mean, p10, min over the pairs: for BLEU and chrF the mean of sentence
# scores, not sacrebleu's corpus score; the ratio, where lower is better, also p90 and max).
AGGREGATED = ("rouge_l_f1", "bertscore_f1", "ratio", "bleu", "chrf")
LOWER_IS_BETTER = ("ratio",)


def judge(
    rows: list[dict],
    pairs: list[tuple[str, str]],
    metrics: tuple[str, ...] | ValidateOptions,
    thresholds: Thresholds | None = None,
    fail_on: str = "any",
    *,
    errors: int = 0,
    bertscore_model: str | None = None,
    idf: bool = False,
    rescale: bool = False,
    cache: str = "auto",
    cache_dir: str | None = None,
) -> tuple[dict, list]:
    """(summary, gate failures) for `rows`: score rows (from score_pair, with `pos`/`where`) and
    error rows (with `error`), in input order; `pairs` are the scored rows' (original,
    compressed) texts. Score rows gain `passed` and `failures` (and BERTScore's fields); the gate
    failures are the failing rows (fail_on any) or the failed thresholds of the aggregate.

    `judge(rows, pairs, options, errors=n)` with a ValidateOptions takes the metrics scored, the
    gates, fail_on, the BERTScore model, idf, rescale and the cache from it."""
    if isinstance(metrics, ValidateOptions):
        o = metrics
        metrics, thresholds, fail_on = o.scored, Thresholds.of(o), o.fail_on
        bertscore_model, idf, rescale, cache, cache_dir = o.bertscore_model, o.idf, o.rescale, o.cache, o.cache_dir
    elif thresholds is None:
        thresholds = Thresholds()
    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON)}, not {fail_on!r}")
    scored = [r for r in rows if "error" not in r]
    cache_stats = None
    if "bertscore" in metrics and scored:
        cache_stats = add_bertscore(scored, pairs, bertscore_model, idf, rescale, cache, cache_dir)
    for row in scored:
        fails = failures(row, thresholds) if fail_on == "any" else []
        row.update(passed=not fails, failures=fails)
    agg = {}
    for key in AGGREGATED:
        values = [r[key] for r in scored if key in r]
        if values:
            agg[key] = aggregate(values, key in LOWER_IS_BETTER)
    gate_fail = [r for r in scored if r["failures"]] if fail_on == "any" else []
    if fail_on in ("mean", "p10"):
        point = {k: gate_point(v, fail_on, k in LOWER_IS_BETTER) for k, v in agg.items()}
        gate_fail = failures(point, thresholds)
    summary = {
        "records": len(rows),
        "errors": errors,
        "fail_on": fail_on,
        "passed": not gate_fail and not errors,
        "aggregate": agg,
        "thresholds": {
            "min_rouge_l": thresholds.min_rouge_l,
            "max_ratio": thresholds.max_ratio,
            "min_bertscore": thresholds.min_bertscore,
            "min_bleu": thresholds.min_bleu,
            "min_chrf": thresholds.min_chrf,
        },
    }
    if fail_on != "any":
        summary["gate_failures"] = gate_fail
    if cache_stats is not None:
        summary["cache"] = cache_stats
    return summary, gate_fail
