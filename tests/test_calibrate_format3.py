"""Calibration format 3 (estimator script-tokens-v3: the local tokens by rank as features): a
calibration written by the previous format (2, script-tokens-v2) is refused in one line that says
to calibrate again, and counting falls back to the built-in estimate with a warning."""

from __future__ import annotations

import json

from omnitok import calibration

from .console import omnitok

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


def test_a_format_2_calibration_is_refused_in_one_line(tmp_path):
    store = tmp_path / "assets" / "calibrations"
    store.mkdir(parents=True)
    old = {
        "id": "claude-sonnet-4-5-0123456789ab",
        "format": "omnitok-calibration",
        "format_version": 2,
        "model": MODEL,
        "provider": "anthropic",
        "created": "2026-12-01T00:00:00Z",
        "estimator": {"kind": "script-tokens-v2", "bases": ["o200k_base", "cl100k_base"], "features": []},
        "measured": {},
        "sample": {"texts": 200},
    }
    (store / f"{old['id']}.json").write_text(json.dumps(old))
    env = {"OMNITOK_HOME": str(tmp_path)}
    shown = omnitok("calibrate", "--show", old["id"], env=env)
    assert shown.code == 1 and shown.err.count("\n") == 1
    assert "format_version 2, an earlier omnitok's; run omnitok calibrate again" in shown.err
    c = omnitok("count", "-m", MODEL, "--text", "some words to count", "--format", "jsonl", env=env)
    assert c.code == 0 and json.loads(c.out)["encoding"] == "claude-3~o200k_base"
    assert "run omnitok calibrate again" in c.err
