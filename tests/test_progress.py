"""Progress goes to stderr only when it is a terminal, and never with --quiet."""

import os
import pty
import subprocess
import sys

import orjson


def corpus(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_bytes(b"".join(orjson.dumps({"text": f"record {i} " * 50}) + b"\n" for i in range(3000)))
    return str(p)


def run_with_tty_stderr(args):
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "COLUMNS": "100"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read()
    proc.wait()
    os.close(master)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


def test_progress_on_a_terminal(tmp_path):
    code, out, err = run_with_tty_stderr([sys.executable, "-m", "omnitok", "count", corpus(tmp_path), "--summary"])
    assert code == 0
    assert orjson.loads(out)["records"] == 3000
    assert "counting" in err and "records" in err


def test_no_progress_with_quiet(tmp_path):
    code, _, err = run_with_tty_stderr([sys.executable, "-m", "omnitok", "count", "-q", corpus(tmp_path), "--summary"])
    assert code == 0 and err == ""


def test_nothing_on_stderr_when_piped(tmp_path):
    r = subprocess.run([sys.executable, "-m", "omnitok", "count", corpus(tmp_path), "--summary"], capture_output=True)
    assert r.returncode == 0 and r.stderr == b""
