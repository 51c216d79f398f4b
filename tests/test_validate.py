"""omnitok validate: ROUGE-L identical to rouge-score, gates, exit codes and reports."""

import xml.etree.ElementTree as ET

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import omnitok
from omnitok.errors import EXIT_BAD_RECORDS, EXIT_ERROR, EXIT_GATE_FAILED
from omnitok.validation.metrics import rouge_l

PAIRS = [
    ("", ""),
    ("", "something"),
    ("something", ""),
    ("identical text here", "identical text here"),
    ("completely disjoint words", "nothing in common"),
    ("The cat sat on the mat.", "the CAT is on a mat!"),
    ("running quickly, the runners ran", "runner runs quick"),
    ("café naïve résumé 中文 tokens", "cafe naive resume tokens"),
    ("a " * 500, "a " * 250),
    ("one two three four five six seven", "seven six five four three two one"),
]


@pytest.fixture(scope="module")
def scorers():
    from rouge_score import rouge_scorer

    return {stem: rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stem) for stem in (False, True)}


@pytest.mark.parametrize("stem", [False, True])
def test_rouge_l_equals_rouge_score(scorers, stem):
    for original, compressed in PAIRS:
        ref = scorers[stem].score(original, compressed)["rougeL"]
        ours = rouge_l(original, compressed, stem)
        assert abs(ours.precision - ref.precision) < 1e-9
        assert abs(ours.recall - ref.recall) < 1e-9
        assert abs(ours.f1 - ref.fmeasure) < 1e-9


words = st.lists(
    st.sampled_from(["the", "cat", "sat", "mat", "on", "a", "dog", "ran", "ran.", "Cats", "x1", "é"]), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(a=words, b=words)
def test_rouge_l_random_pairs(scorers, a, b):
    original, compressed = " ".join(a), " ".join(b)
    ref = scorers[False].score(original, compressed)["rougeL"]
    assert abs(rouge_l(original, compressed).f1 - ref.fmeasure) < 1e-9


def pairs_file(tmp_path, rows):
    p = tmp_path / "pairs.jsonl"
    p.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return str(p)


ROWS = [
    {"id": "good", "original": "the cat sat on the mat today", "compressed": "cat sat on mat"},
    {"id": "ok", "original": "one two three four five", "compressed": "one two three"},
    {"id": "bad", "original": "completely different words", "compressed": "nothing shared"},
]


@pytest.mark.parametrize(
    "fail_on,threshold,code",
    [
        ("any", "0.5", EXIT_GATE_FAILED),
        ("any", "0.0", 0),
        ("mean", "0.45", 0),
        ("mean", "0.6", EXIT_GATE_FAILED),
        ("p10", "0.1", EXIT_GATE_FAILED),
        ("p10", "0.0", 0),
    ],
)
def test_gates_and_exit_codes(cli, tmp_path, fail_on, threshold, code):
    r = cli(
        "validate", pairs_file(tmp_path, ROWS), "--min-rouge-l", threshold, "--fail-on", fail_on, "--format", "json"
    )
    assert r.code == code, r.err
    data = orjson.loads(r.out)
    f1 = [x["rouge_l_f1"] for x in data["records"]]
    assert data["summary"]["aggregate"]["rouge_l_f1"]["mean"] == pytest.approx(sum(f1) / 3)
    assert data["summary"]["passed"] is (code == 0)


def test_bad_input_codes(cli, tmp_path):
    f = pairs_file(tmp_path, [ROWS[0], {"id": "x", "original": "only one side"}])
    r = cli("validate", f)
    assert r.code == EXIT_ERROR and "field 'compressed' missing" in r.err
    r = cli("validate", f, "--on-error", "skip")
    assert r.code == EXIT_BAD_RECORDS


def test_junit_report(cli, tmp_path):
    out = tmp_path / "report.xml"
    r = cli("validate", pairs_file(tmp_path, ROWS), "--min-rouge-l", "0.5", "--format", "junit", "-o", str(out))
    assert r.code == EXIT_GATE_FAILED
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "3" and root.get("failures") == "1"
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["good", "ok", "bad"]
    assert all(c.get("classname") == "omnitok.validate" for c in cases)
    failure = cases[2].find("failure")
    assert (
        failure is not None
        and failure.get("message") == "rouge-l f1 0.0000 < 0.5"
        and failure.get("type") == "threshold"
    )
    assert cases[0].find("failure") is None


def test_github_and_markdown(cli, tmp_path):
    f = pairs_file(tmp_path, ROWS)
    r = cli("validate", f, "--min-rouge-l", "0.5", "--format", "github")
    lines = r.text.splitlines()
    assert lines[0] == f"::error title=omnitok validate::{f}:3: rouge-l f1 0.0000 < 0.5"
    assert lines[-1] == "::notice title=omnitok validate::3 pairs, gate FAILED (any)"
    r = cli("validate", f, "--min-rouge-l", "0.5", "--format", "markdown")
    assert r.text.startswith("### omnitok validate: **failed**") and "| bad | rouge-l f1 0.0000 < 0.5 |" in r.text


def test_compression_metric_and_single_pair(cli, ref_o200k):
    r = cli(
        "validate",
        "--original",
        "hello there world",
        "--compressed",
        "hello world",
        "--metrics",
        "rouge-l,compression",
        "-m",
        "gpt-4o",
        "--max-ratio",
        "0.5",
        "--format",
        "json",
    )
    row = orjson.loads(r.out)["records"][0]
    a, b = len(ref_o200k.encode_ordinary("hello there world")), len(ref_o200k.encode_ordinary("hello world"))
    assert (row["original_tokens"], row["compressed_tokens"], row["ratio"]) == (a, b, b / a)
    assert r.code == EXIT_GATE_FAILED and row["failures"] == [f"ratio {b / a:.4f} > 0.5"]


def test_python_api():
    r = omnitok.validate("The cat sat on the mat.", "the cat on the mat", metrics=["rouge-l"], min_rouge_l=0.5)
    assert r.passed and r.rouge_l_score == pytest.approx(rouge_l("The cat sat on the mat.", "the cat on the mat").f1)
    assert set(r.details) == {"rouge_l_precision", "rouge_l_recall", "rouge_l_f1"}


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(), st.text(alphabet="aAbB09 .,;-_\n\tİıéÉß中ﬁ", max_size=80)), stem=st.booleans())
def test_tokenizer_identical_to_rouge_score(text, stem):
    from rouge_score import tokenizers

    from omnitok.validation.metrics import tokenize

    assert tokenize(text, stem) == tokenizers.DefaultTokenizer(use_stemmer=stem).tokenize(text)


def test_two_files_aligned_by_line_and_id(cli, tmp_path):
    a = tmp_path / "orig.txt"
    b = tmp_path / "comp.txt"
    a.write_text("the cat sat on the mat\none two three four\n")
    b.write_text("cat on mat\none two\n")
    r = cli("validate", "--original-file", str(a), "--compressed-file", str(b), "--format", "json")
    rows = orjson.loads(r.out)["records"]
    assert [x["rouge_l_f1"] for x in rows] == [
        rouge_l("the cat sat on the mat", "cat on mat").f1,
        rouge_l("one two three four", "one two").f1,
    ]
    b.write_text("cat on mat\n")
    r = cli("validate", "--original-file", str(a), "--compressed-file", str(b))
    assert r.code == EXIT_ERROR and "has no record to pair with this one" in r.err
    ja, jb = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    ja.write_bytes(b'{"id": 1, "text": "alpha beta gamma"}\n{"id": 2, "text": "delta epsilon"}\n')
    jb.write_bytes(b'{"id": 2, "text": "delta"}\n{"id": 1, "text": "alpha gamma"}\n')
    r = cli(
        "validate",
        "--original-file",
        str(ja),
        "--compressed-file",
        str(jb),
        "--align",
        "id",
        "--original-field",
        "text",
        "--compressed-field",
        "text",
        "--format",
        "json",
    )
    rows = orjson.loads(r.out)["records"]
    assert [(x["id"], x["rouge_l_f1"]) for x in rows] == [
        (1, rouge_l("alpha beta gamma", "alpha gamma").f1),
        (2, rouge_l("delta epsilon", "delta").f1),
    ]


def test_align_id_never_drops_a_record(tmp_path):
    from .console import omnitok as run

    a = tmp_path / "a.jsonl"
    b = tmp_path / "b.jsonl"
    a.write_text(
        '{"id": 1, "original": "the cat sat"}\n{"id": 2, "original": "a dog ran"}\n'
        '{"id": 2, "original": "twice"}\n{"original": "no id"}\n'
    )
    b.write_text('{"id": 1, "compressed": "cat sat"}\nnot json\n{"compressed": "no id either"}\n')
    r = run(
        "validate",
        "--original-file",
        str(a),
        "--compressed-file",
        str(b),
        "--align",
        "id",
        "--on-error",
        "record",
        "--format",
        "jsonl",
    )
    assert r.code == 4, r.err
    rows = [orjson.loads(line) for line in r.out.splitlines()][:-1]  # the last line is the summary
    errors = sorted(row["error"] for row in rows if "error" in row)
    assert len(rows) == 6 and sum("error" not in row for row in rows) == 1  # only id 1 pairs
    assert any("no record with id 2 in" in e for e in errors)
    assert any("id 2 is given twice" in e for e in errors)
    assert sum("no id (field 'id')" in e for e in errors) == 2
    assert any("invalid JSON" in e for e in errors)
    r = run("validate", "--original-file", str(a), "--compressed-file", str(b), "--align", "id")
    assert r.code == 1 and "omnitok: error:" in r.err  # stop (the default) at the first bad record


def test_a_missing_only_input_gets_no_on_error_hint(tmp_path):
    from .console import omnitok as run

    r = run("validate", str(tmp_path / "missing.jsonl"))
    assert r.code == 1 and r.err == f"omnitok: error: {tmp_path / 'missing.jsonl'}: no such file\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--compressed", "x"), "give both --original and --compressed, or neither"),
        (("--compressed-file", "{f}"), "give both --original-file and --compressed-file, or neither"),
        (("--original-file", "{f}"), "give both --original-file and --compressed-file, or neither"),
        (("--original", "a", "--compressed", "b", "{f}"), "give files or --original/--compressed, not both"),
        (
            ("--original", "a", "--compressed", "b", "--original-file", "{f}", "--compressed-file", "{f}"),
            "give --original/--compressed or --original-file/--compressed-file, not both",
        ),
    ],
)
def test_a_half_given_pair_is_a_usage_error_before_stdin_is_read(tmp_path, args, message):
    """With the compression metric on, the small-input rule (cli/_small.py) must not read stdin
    ahead, nor look at a missing file, before the pair options are checked: a pipe left open
    (CI, a parent process) would block the run."""
    import subprocess

    from tests.console import OMNITOK

    f = tmp_path / "o.txt"
    f.write_text("o")
    argv = [OMNITOK, "validate", "--metrics", "compression", "-m", "gpt-4o", *(a.format(f=f) for a in args)]
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as o, open(err, "wb") as e:
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=o, stderr=e)
    try:  # stdin stays open: a run that reads it blocks, and the wait's timeout fails the test
        code = p.wait(timeout=60)
    finally:
        p.kill()
        p.stdin.close()
        p.wait()
    assert (code, out.read_bytes(), err.read_text()) == (2, b"", f"omnitok: error: {message}\n")
