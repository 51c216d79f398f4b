"""What a careless user or a hostile input does to the command line, found by an adversarial
pass: each through the real console script, with its exit code and its one line."""

from __future__ import annotations

import os
import subprocess

import orjson
import pytest

from .console import OMNITOK
from .console import omnitok as run


def _sh(script: str, cwd, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OMNITOK": OMNITOK, **(env or {})},
    )


@pytest.mark.parametrize(
    "redirect", ['"$OMNITOK" count --add-field n in.jsonl >> in.jsonl', '"$OMNITOK" count < in.jsonl >> in.jsonl']
)
def test_stdout_appended_onto_an_input_is_refused_before_anything_is_read(tmp_path, redirect):
    """`count f.jsonl >> f.jsonl` read back what it wrote: 2.9 MB grew past 105 MB in 20 s."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"text": "a"}\n{"text": "b"}\n')
    r = _sh(f"timeout 30 {redirect}", tmp_path)
    name = "stdin" if "<" in redirect else "in.jsonl"
    assert (r.returncode, r.stderr) == (
        2,
        f"omnitok: error: stdout is also an input ({name}); write the results to another file\n",
    )
    assert src.read_bytes() == b'{"text": "a"}\n{"text": "b"}\n'


@pytest.mark.parametrize("command", ["encode", "decode", "truncate -t 1"])
def test_a_closed_stdin_is_a_read_error_for_the_token_commands(tmp_path, command):
    r = _sh(f'"$OMNITOK" {command} <&-', tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("omnitok: error: <stdin>: cannot read: "), r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_an_id_past_python_s_4300_digits_is_a_usage_error_in_every_spelling():
    huge = "9" * 5000
    for args, stdin in (((huge,), None), ((), huge.encode()), ((f"[{huge}]",), None)):
        r = run("decode", "-m", "gpt-4o", *args, stdin=stdin)
        assert (r.code, r.err) == (
            2,
            "omnitok: error: token ids: an id of more than 4,300 digits (no vocabulary has one)\n",
        )


def test_a_bad_id_is_shown_cut_in_the_message():
    r = run("decode", "-m", "gpt-4o", "a" * 100_000)
    assert r.code == 2 and "(100,000 characters)" in r.err and len(r.err) < 400, r.err[:300]


@pytest.mark.parametrize("command", [("encode", "hi"), ("decode", "3686"), ("truncate", "-t", "1", "hi")])
@pytest.mark.parametrize(
    "env,said",
    [
        ({"OMNITOK_CONFIG": "/nonexistent/omnitok.toml"}, "OMNITOK_CONFIG=/nonexistent/omnitok.toml: no such file"),
        ({"OMNITOK_PREFER_OFFLINE": "maybe"}, "OMNITOK_PREFER_OFFLINE must be one of"),
    ],
)
def test_the_token_commands_check_the_config_as_count_does(command, env, said):
    """encode, decode and truncate never read the config for an OpenAI model: a missing
    OMNITOK_CONFIG file was a silent fall-back to the defaults, which the README rules out."""
    for argv in (command, ("count", "--text", "hi")):
        r = run(*argv, env=env)
        assert r.code == 2 and said in r.err, (argv, r.err)


@pytest.mark.parametrize(
    "typo,meant",
    [
        ("claud-sonnet-4-5", "claude-sonnet-4-5"),  # no hint at all before: Claude's ids are patterns
        ("cluade-3-opus", "claude-3-opus"),
        ("claude-sonet-4-5", "claude-sonnet-4-5"),  # suggested "claude-*-4-7 and later" before
        ("claude-hiaku-4-5", "claude-haiku-4-5"),
        ("gemni-2.5-pro", "gemini-2.5-pro"),
    ],
)
def test_a_misspelled_model_id_suggests_the_id_meant_first(typo, meant):
    r = run("count", "-m", typo, "--text", "hi")
    assert r.code == 2 and f"did you mean: {meant}" in r.err and "*" not in r.err, r.err
    assert run("count", "-m", meant, "--text", "hi").code == 0


def test_bytes_that_are_not_utf8_in_decode_s_arguments_are_the_error_stdin_gives():
    r = run("decode", "-m", "gpt-4o", "\udcff")  # b"\xff" on the command line
    assert (r.code, r.err) == (1, "omnitok: error: <argument>: invalid UTF-8 (byte 0xff at column 1)\n")


@pytest.mark.parametrize("what", ["fifo", "device", "directory", "huge"])
def test_a_config_file_that_is_no_small_regular_file_is_refused_in_one_line(tmp_path, what):
    """A FIFO or /dev/null was "not a file (a directory?)"; a 100 MB file took 18 s and 776 MB."""
    path = {"fifo": tmp_path / "fifo", "device": "/dev/null", "directory": tmp_path, "huge": tmp_path / "big.toml"}[
        what
    ]
    if what == "fifo":
        os.mkfifo(path)
    if what == "huge":
        path.write_text("a = 1\n" + "# padding\n" * 120_000)
    said = {
        "fifo": "a FIFO, not a file",
        "device": "a device or socket, not a file",
        "directory": "a directory, not a file",
        "huge": "over 1,048,576 bytes; a config file is at most 1 MiB",
    }[what]
    r = run("count", "--text", "hi", env={"OMNITOK_CONFIG": str(path)}, timeout=30)
    assert (r.code, r.err) == (
        2,
        f"omnitok: error: OMNITOK_CONFIG={path}: {said}" + ("\n" if what == "huge" else "; a TOML file is expected\n"),
    )


def test_a_failed_gate_keeps_its_exit_code_when_the_reader_goes_away(tmp_path):
    """validate judges every pair before it writes a row: `| head` cutting the output short had
    turned a failed gate into exit 0, so a CI step with set -o pipefail passed it."""
    pairs = tmp_path / "pairs.jsonl"
    with open(pairs, "w") as f:
        for i in range(20_000):
            f.write(f'{{"id": {i}, "original": "the cat sat on the mat number {i}", "compressed": "the cat"}}\n')
    r = _sh('set -o pipefail; "$OMNITOK" validate pairs.jsonl --format jsonl --min-rouge-l 0.9 | head -1', tmp_path)
    assert r.returncode == 6, (r.returncode, r.stderr)
    assert "quality gate failed" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout.startswith('{"pos":0')
    r = _sh('set -o pipefail; "$OMNITOK" validate pairs.jsonl --format jsonl --min-rouge-l 0.1 | head -1', tmp_path)
    assert (r.returncode, r.stderr) == (0, "")  # a gate that passed: the reader going away is no error


def test_fail_on_p10_judges_the_ratio_at_its_worse_end(tmp_path):
    """For a score the 10th percentile is the strict end; for the ratio (lower is better) it is
    the lenient one: ten pairs of ratios 0.1 .. 1.0 passed --max-ratio 0.5 --fail-on p10."""
    pairs = tmp_path / "rr.jsonl"
    with open(pairs, "wb") as f:
        for k in range(1, 11):
            words = " ".join(f"w{j}" for j in range(10))
            f.write(orjson.dumps({"original": words, "compressed": " ".join(words.split()[:k])}) + b"\n")
    r = run(
        "validate", str(pairs), "--metrics", "compression", "--max-ratio", "0.5", "--fail-on", "p10", "--format", "json"
    )
    assert r.code == 6, r.err
    agg = orjson.loads(r.out)["summary"]["aggregate"]["ratio"]
    assert agg["p90"] == agg["max"] > 0.5 and agg["p10"] == agg["min"] < 0.5
    r = run(
        "validate", str(pairs), "--metrics", "compression", "--max-ratio", "1.0", "--fail-on", "p10", "--format", "json"
    )
    assert r.code == 0, r.err


def test_a_gap_marker_that_is_not_utf8_is_the_error_every_text_argument_gives(tmp_path):
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("Hello world. This is a test. Another sentence here.\n")
    r = run("compress", "--method", "bm25", "--context", str(ctx), "--budget", "5", "--gap-marker", "\udcff")
    assert (r.code, r.err) == (1, "omnitok: error: --gap-marker: invalid UTF-8 (byte 0xff at column 1)\n")


@pytest.mark.parametrize("fmt", ["markdown", "github"])
def test_the_summary_reports_list_bad_records_too(tmp_path, fmt):
    pairs = tmp_path / "w.jsonl"
    pairs.write_text('{"original": "the cat sat", "compressed": "the cat sat"}\n{"original": "no compressed field"}\n')
    r = run("validate", str(pairs), "--min-rouge-l", "0.9", "--on-error", "record", "--format", fmt)
    assert r.code == 4, r.err
    text = r.out.decode()
    line = [ln for ln in text.splitlines() if "field 'compressed' missing" in ln]
    assert len(line) == 1, text
    assert line[0].startswith("::error title=omnitok validate::") if fmt == "github" else line[0].startswith("| 1 |")


def test_a_blank_line_of_crlf_text_separates_passages_as_an_lf_one_does():
    from omnitok.compression import Compressor

    comp = Compressor("gpt-4o", method="bm25")
    lf = "First passage about cats. Cats purr.\n\nSecond passage about dogs. Dogs bark.\n"
    for text in (lf, lf.replace("\n", "\r\n")):
        assert comp.compress(text, "dogs", budget=8).kept_passages == [0, 1]


def test_validate_with_nothing_to_score_is_a_usage_error():
    """`--metrics ""` scored nothing and passed (exit 0)."""
    r = run("validate", "--original", "a b c", "--compressed", "a b", "--metrics", "")
    assert r.code == 2 and "--metrics names no metric" in r.err, r.err
    assert (
        run("validate", "--original", "a b c", "--compressed", "a b", "--metrics", "", "--min-rouge-l", "0.1").code == 0
    )


def test_a_failed_threshold_shows_the_score_to_the_digits_that_make_it_fail():
    """ "rouge-l f1 0.6667 < 0.66667" read as a pass."""
    r = run(
        "validate", "--original", "the cat sat on the mat", "--compressed", "the cat sat", "--min-rouge-l", "0.66667"
    )
    assert r.code == 6 and '"failures":["rouge-l f1 0.666667 < 0.66667"]' in r.out.decode(), r.out
    r = run("validate", "--original", "the cat sat on the mat", "--compressed", "the cat sat", "--min-rouge-l", "0.9")
    assert '"failures":["rouge-l f1 0.6667 < 0.9"]' in r.out.decode()


def test_a_bad_pair_s_error_row_keeps_its_id(tmp_path):
    """compress's and count's error rows carry the id read; validate's left it out."""
    pairs = tmp_path / "p.jsonl"
    pairs.write_text('{"id": "x", "original": "a b"}\n{"id": "y", "original": "a b", "compressed": "a"}\n')
    r = run("validate", str(pairs), "--on-error", "record", "--format", "jsonl")
    rows = [orjson.loads(line) for line in r.out.splitlines()]
    assert r.code == 4 and [row.get("id") for row in rows[:2]] == ["x", "y"] and "error" in rows[0]


def test_the_markdown_report_shows_each_metric_s_worse_end(tmp_path):
    """Its p10 column showed the ratio's best end while --fail-on p10 judges its 90th percentile."""
    pairs = tmp_path / "rr.jsonl"
    with open(pairs, "wb") as f:
        for k in (1, 5, 10):
            words = " ".join(f"w{j}" for j in range(10))
            f.write(orjson.dumps({"original": words, "compressed": " ".join(words.split()[:k])}) + b"\n")
    r = run("validate", str(pairs), "--metrics", "compression", "--format", "markdown")
    lines = r.out.decode().splitlines()
    assert "| metric | mean | worse 10% | worst |" in lines
    (row,) = [ln for ln in lines if ln.startswith("| ratio")]
    assert row.startswith("| ratio (p90, max) |") and row.endswith("| 1.0000 | 1.0000 |"), row
