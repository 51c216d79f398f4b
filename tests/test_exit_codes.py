"""Every row of the README's exit-code table, and the messages that go with them, through the
real console script."""

from __future__ import annotations

import signal
import subprocess
import time

import orjson
import pytest

from omnitok import errors

from .console import OMNITOK, omnitok

GOOD = b'{"text": "hello world"}\n{"text": "a longer record of several words"}\n'
BAD = b'{"text": "hello world"}\n{"text": \n{"text": "after"}\n'


@pytest.fixture
def files(tmp_path):
    (tmp_path / "good.jsonl").write_bytes(GOOD)
    (tmp_path / "bad.jsonl").write_bytes(BAD)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(b'{"original": "one two three four five six", "compressed": "one"}\n')
    return tmp_path


def test_0_all_counted(files):
    assert omnitok("count", str(files / "good.jsonl")).code == errors.EXIT_OK


def test_1_stopped_at_a_bad_record_with_the_hint(files):
    r = omnitok("count", str(files / "bad.jsonl"))
    assert r.code == errors.EXIT_ERROR
    assert r.err.splitlines() == [
        f"omnitok: error: {files / 'bad.jsonl'}:2: invalid JSON at column 1: unexpected end of data",
        "omnitok: hint: --on-error skip or --on-error record carries on past bad records",
    ]


def test_1_no_hint_where_on_error_cannot_help(files):
    r = omnitok("count", str(files / "missing.jsonl"))
    assert (r.code, r.err) == (errors.EXIT_ERROR, f"omnitok: error: {files / 'missing.jsonl'}: no such file\n")


def test_2_bad_command_line():
    r = omnitok("count", "-m", "gpt-4oo", stdin=b"x")
    assert r.code == errors.EXIT_USAGE and r.err.startswith("omnitok: error: unknown model 'gpt-4oo'")


def test_3_over_max_tokens(files):
    r = omnitok("count", str(files / "good.jsonl"), "--max-tokens", "3")
    assert r.code == errors.EXIT_OVER_LIMIT
    assert "1 of 2 records are over --max-tokens 3" in r.err


@pytest.mark.parametrize("mode", ["skip", "record"])
def test_4_finished_with_bad_records(files, mode):
    r = omnitok("count", str(files / "bad.jsonl"), "--on-error", mode)
    assert r.code == errors.EXIT_BAD_RECORDS


def test_5_strict_and_no_exact_strategy():
    r = omnitok("count", "--strict", "-m", "claude-sonnet-4-5", stdin=b"hello")
    assert r.code == errors.EXIT_NOT_EXACT and "--strict asks for exact counts" in r.err


def test_6_quality_gate(files):
    r = omnitok("validate", str(files / "pairs.jsonl"), "--min-rouge-l", "0.9")
    assert r.code == errors.EXIT_GATE_FAILED and "quality gate failed" in r.err


def test_order_1_before_3(files):
    # "When several apply, the first in this order wins: 1, 5, 4, 3."
    r = omnitok("count", str(files / "bad.jsonl"), "--max-tokens", "1")
    assert r.code == errors.EXIT_ERROR


def test_order_4_before_3(files):
    r = omnitok("count", str(files / "bad.jsonl"), "--max-tokens", "1", "--on-error", "skip")
    assert r.code == errors.EXIT_BAD_RECORDS


def test_130_interrupted_with_workers_says_so_without_tracebacks(tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"".join(orjson.dumps({"text": f"record {i} " * 20}) + b"\n" for i in range(1_000_000)))
    p = subprocess.Popen([OMNITOK, "count", "-j", "2", str(big)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    if p.returncode == 0:
        pytest.skip("the run finished before the signal")
    assert p.returncode == errors.EXIT_INTERRUPTED
    assert err.decode() == "omnitok: interrupted\n"


def test_reader_going_away_is_not_an_error(tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"".join(orjson.dumps({"text": f"record {i}"}) + b"\n" for i in range(100_000)))
    r = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"'{OMNITOK}' count '{big}' | head -1"], capture_output=True, timeout=120
    )
    assert (r.returncode, r.stderr) == (0, b"")
    assert orjson.loads(r.stdout)["pos"] == 0


def test_number_format_keeps_the_reason_of_an_error_record():
    r = omnitok("count", "--on-error", "record", "--format", "number", stdin=BAD)
    assert r.code == errors.EXIT_BAD_RECORDS
    assert r.out == b"2\n\n1\n"  # lines stay aligned with the records
    assert "omnitok: error: <stdin>:2: invalid JSON at column 1: unexpected end of data" in r.err


def test_openai_tools_hint_does_not_suggest_online():
    rec = {"messages": [{"role": "user", "content": "hi"}], "tools": [{"name": "f", "input_schema": {}}]}
    r = omnitok("count", "-m", "gpt-4o", stdin=orjson.dumps(rec) + b"\n")
    assert r.code == errors.EXIT_ERROR
    assert "--online" not in r.err and "leave the 'tools' field out" in r.err
