"""Every usage error is one line on stderr and exit 2, through the real console script: a
typer or click upgrade that turns one back into a traceback fails here."""

from __future__ import annotations

import pytest

from omnitok.errors import EXIT_GATE_FAILED, EXIT_USAGE

from .console import omnitok

BAD = [
    (["count", "--bogus"], "No such option: --bogus"),
    (["count", "--max-tokens", "abc"], "Invalid value for '--max-tokens'"),
    (["count", "--max-tokens", "-5"], "--max-tokens must be a whole number"),
    (["count", "--max-tokens", "100000000000000000000000"], "--max-tokens must be a whole number from 0 to"),
    (["count", "-m"], "Option '-m' requires an argument"),
    (["count", "--jobs", "0"], "--jobs must be auto or a whole number from 1 to 1024, not '0'"),
    (["count", "-j", "nan"], "--jobs must be auto or a whole number from 1 to 1024, not 'nan'"),
    # an empty value (`-o "$OUT"`, OUT unset) was no value: results to stdout, the default field
    (["count", "-o", ""], "--output is empty; give a value or leave the option out"),
    (["count", "--output="], "--output is empty; give a value or leave the option out"),
    (["count", "-f", "text", "-f", ""], "--field is empty; give a value or leave the option out"),
    (["count", "--add-field", ""], "--add-field is empty; give a value or leave the option out"),
    (["validate", "--original", "a", "--compressed", "a", "-o", ""], "--output is empty"),
    (
        ["validate", "--jobs", "99999999999999999999"],
        "--jobs must be auto or a whole number from 1 to 1024, not '99999999999999999999'",
    ),
    (["count", "--timeout", "nan"], "--timeout must be a finite number from 0.1 to 3600, not nan"),
    (["count", "--timeout", "inf"], "--timeout must be a finite number"),
    (["count", "--retries", "-1"], "--retries must be a whole number from 0 to 100, not -1"),
    (["compress", "--budget", "nan"], "Invalid value for '--budget'"),
    (["compress", "--budget", "100000000000000000000000"], "--budget must be a whole number from 0 to"),
    (["compress", "--ratio", "nan"], "--ratio must be a finite number from 0 to 1, not nan"),
    (["compress", "--target-compression", "1.5"], "--target-compression must be a finite number from 0 to 1"),
    (["compress", "--budget", "5", "--min-quality", "nan"], "--min-quality must be a finite number from 0 to 1"),
    (["compress", "--budget", "5", "--min-quality", "2"], "--min-quality must be a finite number from 0 to 1"),
    (["validate", "--min-rouge-l", "nan"], "--min-rouge-l must be a finite number from 0 to 1, not nan"),
    (["validate", "--min-rouge-l", "2"], "--min-rouge-l must be a finite number from 0 to 1, not 2.0"),
    (["validate", "--min-rouge-l", "-1"], "--min-rouge-l must be a finite number from 0 to 1, not -1.0"),
    (["validate", "--max-ratio", "nan"], "--max-ratio must be a finite number at least 0, not nan"),
    (["validate", "--max-ratio", "-1"], "--max-ratio must be a finite number at least 0, not -1.0"),
    (["validate", "--min-bertscore", "inf"], "--min-bertscore must be a finite number from -1 to 1"),
    (["bogus"], "No such command 'bogus'"),
    (["count", "--on-error", "bogus"], "--on-error must be stop, skip or record, not 'bogus'"),
    (["compress", "--budget", "5", "--on-error", "bogus"], "--on-error must be stop, skip or record, not 'bogus'"),
    (["validate", "--on-error", "bogus"], "--on-error must be stop, skip or record, not 'bogus'"),
    (["compress", "--budget", "5", "--cache", "sometimes"], "--cache must be auto, on or off, not 'sometimes'"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_usage_error_is_one_line_and_exit_2(args, message):
    r = omnitok(*args, stdin=b"hello")
    assert r.code == EXIT_USAGE, r.err
    assert r.out == b""
    assert r.err.startswith("omnitok: error: ") and r.err.endswith("\n")
    assert r.err.count("\n") == 1, r.err
    assert message in r.err


@pytest.mark.parametrize("args", [[], ["cache"], ["bundle"]])
def test_a_group_without_a_command_shows_its_help_and_exits_2(args):
    r = omnitok(*args)
    assert r.code == EXIT_USAGE
    assert b"Usage: omnitok" in r.out + r.err.encode()
    assert "Traceback" not in r.err and "Error" not in r.err


def test_a_gate_turns_its_metric_on():
    # Without --metrics compression, --max-ratio used to be dropped silently (exit 0).
    r = omnitok(
        "validate", "--original", "one two three four five six", "--compressed", "one two", "--max-ratio", "0.1"
    )
    assert r.code == EXIT_GATE_FAILED
    assert b'"failures":["ratio 0.3333 > 0.1"]' in r.out


def test_jobs_auto_is_the_default_spelled_out(tmp_path):
    """The help and README give `auto` as --jobs' default; `-j auto` was refused as not an
    integer. Each command that takes --jobs writes the same bytes with it as without."""
    f = tmp_path / "in.jsonl"
    f.write_bytes(b'{"id": 1, "text": "hello world"}\n{"id": 2, "text": "second record"}\n')
    for args in (
        ["count", "-m", "gpt-4o", str(f)],
        ["count", "-m", "gpt-4o", "--format", "json", str(f)],  # not the plain command line: click reads it
        ["validate", "--original", "a cat sat", "--compressed", "a cat", "--format", "jsonl"],
        ["compress", "--context", str(f), "--budget", "5", "--format", "text"],
    ):
        default = omnitok(*args)
        assert default.code == 0, (args, default.err)
        for spelled in (["-j", "auto"], ["--jobs=auto"]):
            r = omnitok(*args, *spelled)
            assert (r.code, r.out, r.err) == (0, default.out, default.err), (args, spelled)
