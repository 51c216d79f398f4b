"""Calibration format 3 (estimator script-tokens-v3: the local tokens by rank as features): a
calibration written by the previous format (2, script-tokens-v2) is refused in one line that says
to calibrate again, and counting falls back to the built-in estimate with a warning."""

from __future__ import annotations

from omnitok import calibration

MODEL = "claude-sonnet-4-5"


def test_the_format_names_its_estimator_and_its_rank_features():
    assert (calibration.FORMAT_VERSION, calibration.ESTIMATOR) == (3, "script-tokens-v3")
    assert [f for f in calibration.FEATURES if ":rank" in f] == [
        "o200k:rank256",
        "o200k:rank5000",
        "o200k:rank20000",
        "o200k:rank50000",
        "o200k:rank100000",
        "o200k:rank150000",
        "cl100k:rank256",
        "cl100k:rank5000",
        "cl100k:rank20000",
        "cl100k:rank50000",
        "cl100k:rank80000",
    ]
    assert calibration.FEATURES[-1] == "one"
