"""omnitok validate's BLEU and chrF: sacrebleu's sentence scores (sentence_bleu / sentence_chrf
with their defaults, the compressed text the hypothesis, the original its one reference) divided
by 100, in the library, the command line's every report, and the Ray core; their gates
(--min-bleu, --min-chrf: 0-1) exit 6 when they fail and 2 when out of range."""

from __future__ import annotations

import json
import random

import orjson
import pytest

import omnitok
from omnitok import validation
from omnitok.errors import UsageError
from tests.console import omnitok as run

sacrebleu = pytest.importorskip("sacrebleu", reason="BLEU and chrF need sacrebleu (the validate extra)")

# Empty sides, unicode (accents, emoji, RTL, combining marks), CJK without spaces, tokenized
# periods, punctuation only, case, repeated n-grams, long texts.
PAIRS = [
    ("", ""),
    ("", "something"),
    ("something", ""),
    ("   ", " "),
    ("The quick brown fox jumps over the lazy dog.", "quick brown fox jumps over dog"),
    ("The quick brown fox jumps over the lazy dog.", "The quick brown fox jumps over the lazy dog."),
    ("The Quick Brown Fox", "the quick brown fox"),
    ("a b c d e f g h", "h g f e d c b a"),
    ("the the the the the the the", "the the"),
    ("Café déjà vu, naïve façade — résumé.", "Café naïve résumé"),
    ("emoji 🙂🙂 and 👩‍👩‍👧 family, ok?", "emoji 🙂 family"),
    ("مرحبا بالعالم هذا نص عربي طويل", "مرحبا بالعالم"),
    ("e\u0301te\u0301 combining marks", "été combining"),
    ("猫がマットの上に座った", "猫が座った"),
    ("我们今天在北京开会，讨论了压缩的质量。", "今天北京开会讨论压缩质量"),
    ("한국어 문장은 띄어쓰기가 있습니다 .", "한국어 문장 ."),
    ("It is tokenized . Like this , see ?", "It is tokenized ."),
    ("!!! ??? ...", "..."),
    ("x", "x"),
    ("tab\tseparated\nand\r\nnewlines here", "tab separated newlines"),
    (" ".join(f"word{i % 37}" for i in range(400)), " ".join(f"word{i % 37}" for i in range(0, 400, 3))),
]


def _random_pairs(n: int, seed: int = 11) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "mat", "中文", "字", "émoji", "🙂", ",", ".", "Prompt", "token", "42"]
    out = []
    for _ in range(n):
        original = [rng.choice(words) for _ in range(rng.randint(0, 30))]
        compressed = [w for w in original if rng.random() < 0.6] + [rng.choice(words) for _ in range(rng.randint(0, 3))]
        out.append((" ".join(original), " ".join(compressed)))
    return out


def _want(original: str, compressed: str) -> dict:
    return {
        "bleu": sacrebleu.sentence_bleu(compressed, [original]).score / 100,
        "chrf": sacrebleu.sentence_chrf(compressed, [original]).score / 100,
    }


def test_scores_are_sacrebleus_sentence_scores():
    for original, compressed in PAIRS + _random_pairs(200):
        want = _want(original, compressed)
        assert validation.score_pair(original, compressed, ("bleu", "chrf")) == want, (original, compressed)
        # 0-1, as sacrebleu's 0-100 (whose exp of summed logs may overshoot 100 by an ulp or so).
        assert 0 <= want["bleu"] <= 1 + 1e-12 and 0 <= want["chrf"] <= 1 + 1e-12
    # The original is the reference: the scores are not symmetric.
    o, c = PAIRS[4]
    assert validation.score_pair(o, c, ("bleu",)) != validation.score_pair(c, o, ("bleu",))


def test_python_api_scores_and_gates():
    o, c = PAIRS[4]
    want = _want(o, c)
    r = omnitok.validate(o, c, metrics=["rouge-l", "bleu", "chrf"])
    assert r.passed and {k: r.details[k] for k in want} == want and r.rouge_l_score == r.details["rouge_l_f1"]
    # A gate turns its metric on, and fails below its threshold.
    r = omnitok.validate(o, c, min_bleu=0.9, min_chrf=0.1)
    assert not r.passed and r.failures == [f"bleu {want['bleu']:.4f} < 0.9"]
    assert r.details["chrf"] == want["chrf"] and "rouge_l_f1" in r.details
    opts = omnitok.ValidateOptions(metrics="bleu,chrf", min_chrf=0.99)
    assert opts.scored == ("bleu", "chrf") and omnitok.ValidateOptions.from_dict(opts.to_dict()) == opts
    assert omnitok.validate(o, c, options=opts).failures == [f"chrf {want['chrf']:.4f} < 0.99"]
    for bad in ({"min_bleu": 30}, {"min_chrf": -0.01}, {"min_bleu": float("nan")}):
        with pytest.raises(UsageError, match=r"must be a finite number from 0 to 1.*sacrebleu's score / 100"):
            omnitok.ValidateOptions(**bad)
    with pytest.raises(UsageError, match="--min-chrf"):
        validation.Thresholds(min_chrf=2)


def test_aio_validate():
    import asyncio

    from omnitok import aio

    o, c = PAIRS[13]
    r = asyncio.run(aio.avalidate(o, c, metrics=["chrf"], min_chrf=0.5))
    assert r.details == {"chrf": _want(o, c)["chrf"]} and not r.passed


def _pairs_file(tmp_path, pairs):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"p{i}", "original": o, "compressed": c}) + "\n" for i, (o, c) in enumerate(pairs))
    )
    return path


def test_cli_jsonl_scores_equal_sacrebleu(tmp_path):
    path = _pairs_file(tmp_path, PAIRS)
    r = run("validate", str(path), "--metrics", "rouge-l,bleu,chrf", "--format", "jsonl")
    assert r.code == 0, r.err
    *rows, last = [orjson.loads(line) for line in r.out.splitlines()]
    for row, (o, c) in zip(rows, PAIRS, strict=True):
        assert {k: row[k] for k in ("bleu", "chrf")} == _want(o, c), row
    summary = last["summary"]
    bleus = [_want(o, c)["bleu"] for o, c in PAIRS]
    assert summary["aggregate"]["bleu"] == {"mean": sum(bleus) / len(bleus), "p10": sorted(bleus)[2], "min": 0.0}
    assert summary["thresholds"]["min_bleu"] is None and summary["thresholds"]["min_chrf"] is None


def test_cli_gates_exit_6(tmp_path):
    pairs = [PAIRS[5], PAIRS[4], PAIRS[13]]  # identical; a partial English one; a partial Japanese one
    path = _pairs_file(tmp_path, pairs)
    want = [_want(o, c) for o, c in pairs]
    r = run("validate", str(path), "--min-bleu", "0.3", "--format", "jsonl")
    assert r.code == 6, r.err
    rows = [orjson.loads(line) for line in r.out.splitlines()][:-1]
    assert [row["failures"] for row in rows] == [[], [], [f"bleu {want[2]['bleu']:.4f} < 0.3"]]
    assert r.err.strip().splitlines() == ["omnitok: error: quality gate failed (any): 1 of 3 pairs below threshold"]
    assert [row["bleu"] for row in rows] == [w["bleu"] for w in want] and "chrf" not in rows[0]
    r = run("validate", str(path), "--min-chrf", "0.15", "--format", "jsonl")
    assert r.code == 0, r.err
    mean_chrf = sum(w["chrf"] for w in want) / 3
    r = run("validate", str(path), "--min-chrf", f"{mean_chrf + 1e-9}", "--fail-on", "mean", "--format", "json")
    assert r.code == 6
    ((label, shown, op, threshold),) = [m.split() for m in json.loads(r.out)["summary"]["gate_failures"]]
    assert (label, op, threshold) == ("chrf", "<", f"{mean_chrf + 1e-9}")
    # the score to the digits that show it below the threshold (0.6161 read as a pass of 0.616057...)
    assert float(shown) < mean_chrf + 1e-9 and abs(float(shown) - mean_chrf) < 1e-4 and len(shown) > 6
    r = run(
        "validate", "--original", pairs[1][0], "--compressed", pairs[1][1], "--min-bleu", "0.2", "--min-chrf", "0.5"
    )
    assert r.code == 0, r.err


@pytest.mark.parametrize(
    "fmt, shows",
    [
        ("json", ['"bleu": ', '"chrf": ', '"min_bleu": 0.5']),
        ("junit", ['failure message="bleu 0.0000 &lt; 0.5"', "bleu=0.0000, chrf=0.1960"]),
        ("github", ["::error title=omnitok validate::", ": bleu 0.0000 < 0.5"]),
        (
            "markdown",
            [
                "| bleu (p10, min) | 0.2042 | 0.0000 | 0.0000 |",
                "| chrf (p10, min) | 0.4241 | 0.1960 | 0.1960 |",
                "| p1 | bleu 0.0000 < 0.5 |",
            ],
        ),
        ("table", ["bleu", "chrf", "0.4083", "0.6521", "0.1960"]),
    ],
)
def test_every_report_format_shows_them(tmp_path, fmt, shows):
    path = _pairs_file(tmp_path, [PAIRS[4], PAIRS[13]])
    r = run(
        "validate", str(path), "--metrics", "bleu,chrf", "--min-bleu", "0.5", "--format", fmt, env={"COLUMNS": "200"}
    )
    assert r.code == 6, r.err
    text = r.out.decode()
    for want in shows:
        assert want in text, (want, text)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--min-bleu", "30"], "--min-bleu must be a finite number from 0 to 1, not 30.0"),
        (["--min-chrf", "-0.1"], "--min-chrf must be a finite number from 0 to 1, not -0.1"),
        (["--min-chrf", "1.5"], "--min-chrf must be a finite number from 0 to 1, not 1.5"),
        (["--min-bleu", "nan"], "--min-bleu must be a finite number from 0 to 1, not nan"),
    ],
)
def test_out_of_range_gates_are_usage_errors(args, message):
    r = run("validate", "--original", "a b", "--compressed", "a", *args)
    assert r.code == 2 and r.out == b""
    assert r.err.strip() == f"omnitok: error: {message} (BLEU and chrF run 0-1 here: sacrebleu's score / 100)"


def test_without_sacrebleu_one_line_naming_the_extra(tmp_path):
    stub = tmp_path / "hide" / "sacrebleu"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('no sacrebleu here')\n")
    env = {"PYTHONPATH": str(tmp_path / "hide")}
    for args in (["--metrics", "rouge-l,chrf"], ["--min-bleu", "0.1"]):
        r = run("validate", "--original", "a b", "--compressed", "a", *args, env=env)
        assert r.code == 2 and r.out == b""
        assert r.err.strip() == "omnitok: error: BLEU and chrF need sacrebleu (pip install 'omnitok[validate]')"
    r = run("validate", "--original", "a b", "--compressed", "a", "--format", "jsonl", env=env)
    assert r.code == 0 and b"rouge_l_f1" in r.out  # ROUGE-L does not need it


def test_ray_core_scores_them():
    """The core Ray's workers run (engine_core.ValidateCore): the same scores, as Arrow columns."""
    pa = pytest.importorskip("pyarrow")
    from omnitok import engine_core

    pairs = PAIRS[:8]
    spec = engine_core.Spec(
        "validate", None, omnitok.ValidateOptions(metrics=("bleu", "chrf"), min_chrf=0.5, cache="off")
    )
    core = engine_core.build(json.loads(json.dumps(spec.to_dict())))
    table = core.table(pa.table({"original": [o for o, _ in pairs], "compressed": [c for _, c in pairs]}))
    want = [_want(o, c) for o, c in pairs]
    assert table.column("bleu").to_pylist() == [w["bleu"] for w in want]
    assert table.column("chrf").to_pylist() == [w["chrf"] for w in want]
    assert table.column("passed").to_pylist() == [w["chrf"] >= 0.5 for w in want]
    # The loose form (a mapping of options, the gates in params) carries the new gates too.
    loose = engine_core.Spec("validate", None, {}, params={"metrics": ["bleu"], "min_chrf": 0.25})
    assert loose.options.min_chrf == 0.25 and loose.options.scored == ("bleu", "chrf")
