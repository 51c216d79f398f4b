"""How an `omnitok` process starts and ends around its command (cli/app.py): descriptors closed
at start (`>&-`, `<&-`, `2>&-`), and the end without tearing down the interpreter's modules.
Fresh processes of the real console script: the test zygote starts with its descriptors open."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

OMNITOK = str(Path(sys.executable).with_name("omnitok"))


def _run(args, closed=(), env=None, cwd=None):
    def close():
        for fd in closed:
            os.close(fd)

    r = subprocess.run(
        [OMNITOK, *args],
        preexec_fn=close,  # noqa: PLW1509 - a shell's `>&-`: the descriptor closed before exec
        stdin=subprocess.DEVNULL,
        stdout=None if 1 in closed else subprocess.PIPE,
        stderr=None if 2 in closed else subprocess.PIPE,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    return r.returncode, r.stdout, (r.stderr or b"").decode()


def test_a_closed_stdout_is_one_error_line_and_exit_1_as_a_full_device(tmp_path):
    for args in (["count", "-m", "gpt-4o", "--text", "hi"], ["--version"], ["models"], ["--help"]):
        assert _run(args, closed=(1,)) == (1, None, "omnitok: error: stdout: Bad file descriptor\n"), args
    # Nothing for stdout to take: the run is whole, and no file opened took descriptor 1.
    out = tmp_path / "out.jsonl"
    assert _run(["count", "-m", "gpt-4o", "--text", "hi", "-o", str(out)], closed=(1,)) == (0, None, "")
    assert [row["tokens"] for row in map(orjson.loads, out.read_bytes().splitlines())] == [1]


def test_help_to_a_full_device_is_one_error_line():
    """Help is written by rich inside click's parse, where io/output does not write: a failed
    write there is the same one line and exit 1 (was a rich traceback)."""
    for args in (["--help"], ["count", "--help"]):
        with open("/dev/full", "wb") as full:
            r = subprocess.run([OMNITOK, *args], stdout=full, stderr=subprocess.PIPE, timeout=120)
        assert (r.returncode, r.stderr) == (1, b"omnitok: error: stdout: No space left on device\n"), args


def test_a_closed_stdin_is_a_read_error_and_a_closed_stderr_takes_no_file(tmp_path):
    code, out, err = _run(["count", "-m", "gpt-4o"], closed=(0,))
    assert (code, out) == (
        1,
        b"",
    ) and err == "omnitok: error: <stdin>: cannot read: OSError: [Errno 9] Bad file descriptor\n"
    # stderr closed: a warning goes nowhere, not into the output file opened after it.
    out = tmp_path / "out.jsonl"
    code, _, _ = _run(["count", "-m", "gpt-4o", "--text", "hi", "--text", "", "-o", str(out)], closed=(2,))
    assert code == 0 and out.read_bytes().count(b"\n") == 2 and b"omnitok:" not in out.read_bytes()


SITE = """
import atexit, os
class _TornDown:
    def __del__(self):
        os.write(2, b"torn down\\n")
_kept = _TornDown()  # a module global: its __del__ runs only when the modules are torn down
atexit.register(lambda: os.write(2, b"atexit ran\\n"))
"""


def test_the_process_ends_after_atexit_without_tearing_down_its_modules(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SITE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    for args, code, out in (
        (["count", "-m", "gpt-4o", "--text", "hello world"], 0, b"2\n"),
        (["count", "-m", "no-such-model", "--text", "x"], 2, b""),
        (["validate", "--original", "a cat", "--compressed", "a cat", "--format", "jsonl"], 0, None),
    ):
        c, o, err = _run(args, env=env)
        assert c == code and (out is None or o.endswith(out)), (args, c, o, err)
        assert err.endswith("atexit ran\n") and "torn down" not in err, (args, err)
    # An in-process caller of main(argv) keeps its interpreter: the same exit code as SystemExit.
    r = subprocess.run(
        [sys.executable, "-c", "from omnitok.cli.app import main; main(['count', '-m', 'gpt-4o', '--text', 'hi'])"],
        env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == b"1" and b"torn down" in r.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_with_stdout_closed_writes_its_access_lines_to_stderr(tmp_path, workers):
    """uvicorn's access lines go to stdout: with stdout closed at start (a write to it fails) they
    go to stderr, with uvicorn's other lines, instead of a logging error a request; --workers'
    spawned processes start too (their log formatters asked stdout whether it was a terminal)."""
    import signal
    import time
    import urllib.request

    from tests.serve_server import free_port

    port = free_port()
    err = tmp_path / "err"
    with open(err, "wb") as f:
        proc = subprocess.Popen(
            [OMNITOK, "serve", "--port", str(port), "--workers", workers],
            preexec_fn=lambda: os.close(1),  # noqa: PLW1509
            stdin=subprocess.DEVNULL,
            stderr=f,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
                time.sleep(0.1)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/count-tokens", data=b'{"text": "hello world"}', method="POST",
            headers={"content-type": "application/json"},
        )  # fmt: skip
        assert orjson.loads(urllib.request.urlopen(req, timeout=30).read())["token_count"] == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    log = err.read_text()
    assert code in (0, -signal.SIGTERM) and "Logging error" not in log, log  # uvicorn re-raises the signal
    assert '"POST /count-tokens HTTP/1.1" 200' in log, log


# A thread still running when the command ends, and an atexit function that takes its time.
SLOW_END = """
import atexit, sys, threading, time
threading.Thread(target=time.sleep, args=(60,), name="slow").start()
_shutdown = threading._shutdown
def shutdown():  # the threads are waited for from here on
    sys.stderr.write("joining\\n"); sys.stderr.flush(); _shutdown()
threading._shutdown = shutdown
def slow_cleanup():
    sys.stderr.write("cleaning up\\n"); sys.stderr.flush(); time.sleep(60)
atexit.register(slow_cleanup)
"""


def test_ctrl_c_while_threads_are_waited_for_at_the_end_is_an_interruption(tmp_path):
    """An error ends the command while a thread still runs: the process waits for it, as the
    interpreter does. A Ctrl-C then was a KeyboardInterrupt traceback; it is "omnitok:
    interrupted" and 130, the atexit clean-up still runs, and another Ctrl-C ends that at once."""
    import queue
    import signal
    import threading

    (tmp_path / "sitecustomize.py").write_text(SLOW_END)
    p = subprocess.Popen(
        [OMNITOK, "count", "-m", "no-such-model", "--text", "x"],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x.decode()) for x in p.stderr], daemon=True).start()
    try:
        seen = [lines.get(timeout=60), lines.get(timeout=60)]
        assert seen[0].startswith("omnitok: error: ") and "no-such-model" in seen[0] and seen[1] == "joining\n"
        p.send_signal(signal.SIGINT)  # while the thread is waited for
        seen += [lines.get(timeout=30), lines.get(timeout=30)]
        assert seen[2:] == ["omnitok: interrupted\n", "cleaning up\n"]
        p.send_signal(signal.SIGINT)  # during the clean-up
        assert p.wait(timeout=30) == 130
    finally:
        p.kill()
        p.wait()
    assert p.stdout.read() == b""
