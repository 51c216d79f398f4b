"""A usage error is said at once, before stdin is read: `tail -f log | omnitok count ...` with a
typo must not wait for the small-input read-ahead (cli/_small.py: up to 64 KiB or end of input)."""

from __future__ import annotations

import subprocess

import pytest

from omnitok import errors

from .console import OMNITOK


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--on-error", "bogus"],
            "omnitok: error: --on-error must be stop, skip or record, not 'bogus'\n",
        ),
        (["--field", "text,text"], "omnitok: error: --field 'text' is given twice; give each field once\n"),
    ],
)
def test_usage_errors_do_not_wait_for_an_open_stdin(tmp_path, args, message):
    err = tmp_path / "err"
    with open(err, "wb") as e:
        p = subprocess.Popen([OMNITOK, "count", "-m", "gpt-4o", *args], stdin=subprocess.PIPE, stderr=e)
        try:
            p.stdin.write(b'{"text": "a slow producer"}\n')
            p.stdin.flush()  # and nothing more, the pipe left open
            code = p.wait(timeout=60)  # before: waited for 64 KiB of stdin or its end
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdin.close()
    assert code == errors.EXIT_USAGE
    assert err.read_text() == message
