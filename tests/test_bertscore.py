"""BERTScore identical to bert-score's own result for the same model, offline by default."""

import os
import subprocess
import sys

import orjson
import pytest

from omnitok.errors import EXIT_GATE_FAILED
from omnitok.validation.bertscore import BASELINE, BERTScorer, default_model_dir

from .test_offline import BLOCK_SOCKETS

CANDS = [
    "the cat sat on the mat",
    "hello world",
    "a b c d",
    "中文 字符 and café",
    "Short.",
    "A much longer compressed passage that keeps the gist of the original text about tokenizers.",
]
REFS = [
    "a cat was sitting on the mat",
    "goodbye world",
    "a b c d",
    "some unicode text: 中文",
    "Completely unrelated.",
    "A much longer original passage, which talks at length about tokenizers, budgets and the gist of it all.",
]


@pytest.fixture(scope="module")
def ours():
    return BERTScorer()


@pytest.mark.parametrize("idf", [False, True])
def test_equals_bert_score(ours, idf):
    from bert_score import BERTScorer as Reference

    # nthreads=0: bert-score's get_idf_dict counts the references in this process (its own code path,
    # the same idf dict) instead of forking a pool of 4 processes of this torch-laden interpreter
    ref = Reference(
        model_type=str(default_model_dir()), num_layers=6, idf=idf, idf_sents=REFS if idf else None, nthreads=0
    )
    P, R, F = ref.score(CANDS, REFS)
    mine = BERTScorer(idf=idf).score(CANDS, REFS) if idf else ours.score(CANDS, REFS)
    for i, (p, r, f) in enumerate(mine):
        assert abs(p - P[i].item()) < 1e-4 and abs(r - R[i].item()) < 1e-4 and abs(f - F[i].item()) < 1e-4, i


def test_empty_side_scores_zero(ours):
    # bert-score sets P = R = F = 0 when a side is empty (its own code no longer runs on empty strings with
    # transformers 5: BertTokenizer lost build_inputs_with_special_tokens).
    assert ours.score(["", "x y"], ["some text", ""]) == [(0.0, 0.0, 0.0), (0.0, 0.0, 0.0)]


def test_rescale_uses_the_shipped_baseline(ours):
    rows = BASELINE.read_text().splitlines()
    assert rows[0] == "LAYER,P,R,F" and rows[1].startswith("6,")
    _, bp, br, bf = (float(x) for x in rows[1].split(","))
    raw = ours.score(CANDS[:2], REFS[:2])
    scaled = BERTScorer(rescale=True).score(CANDS[:2], REFS[:2])
    for (p, r, f), (sp, sr, sf) in zip(raw, scaled, strict=True):
        assert sp == pytest.approx((p - bp) / (1 - bp)) and sr == pytest.approx((r - br) / (1 - br))
        assert sf == pytest.approx((f - bf) / (1 - bf))


def test_cli_gate_offline(ours, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_SOCKETS)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": str(site),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "XDG_CACHE_HOME": str(tmp_path / "c"),
    }
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "omnitok",
            "validate",
            "--original",
            REFS[0],
            "--compressed",
            CANDS[0],
            "--metrics",
            "bertscore",
            "--min-bertscore",
            "0.99",
            "--format",
            "json",
        ],
        env=env,
        capture_output=True,
    )
    assert r.returncode == EXIT_GATE_FAILED, r.stderr.decode()[-800:]
    row = orjson.loads(r.stdout)["records"][0]
    expected = ours.score([CANDS[0]], [REFS[0]])[0]  # BERTScorer(), defaults
    assert row["bertscore_f1"] == pytest.approx(expected[2], abs=1e-6)
    assert b"Loading weights" not in r.stderr


def test_scores_cached_across_runs(cli, tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_bytes(
        b"".join(orjson.dumps({"original": r, "compressed": c}) + b"\n" for c, r in zip(CANDS, REFS, strict=True))
    )
    d = str(tmp_path / "cache")
    first = orjson.loads(cli("validate", str(f), "--metrics", "bertscore", "--format", "json", "--cache-dir", d).out)
    assert first["summary"]["cache"]["misses"] == len(CANDS)
    second = orjson.loads(cli("validate", str(f), "--metrics", "bertscore", "--format", "json", "--cache-dir", d).out)
    assert second["summary"]["cache"]["l2_hits"] == len(CANDS) and second["summary"]["cache"]["misses"] == 0
    assert [r["bertscore_f1"] for r in second["records"]] == [r["bertscore_f1"] for r in first["records"]]
    third = orjson.loads(cli("validate", str(f), "--metrics", "bertscore", "--format", "json", "--no-cache").out)
    assert "cache" not in third["summary"]
