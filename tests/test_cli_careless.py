"""What a careless user or a hostile input does to the command line, found by an adversarial
pass: each through the real console script, with its exit code and its one line."""

from __future__ import annotations

import os
import subprocess

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
