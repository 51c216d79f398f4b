"""`-o` never destroys data: an output that is an input is refused before anything is read, and
a run that fails leaves an existing output byte-for-byte as it was. Through the real console
script, as a careless user would type it."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import orjson
import pytest

from omnitok.errors import EXIT_BAD_RECORDS, EXIT_ERROR, EXIT_OK, EXIT_USAGE

from .console import OMNITOK, omnitok

ROWS = b'{"text": "hello world"}\n{"text": "second record"}\n'


@pytest.fixture
def f(tmp_path):
    p = tmp_path / "f.jsonl"
    p.write_bytes(ROWS)
    return p


def _tree(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file() and not p.is_symlink()}


def test_add_field_onto_its_own_input_is_refused(f):
    r = omnitok("count", str(f), "--add-field", "n", "-o", str(f))
    assert r.code == EXIT_USAGE
    assert r.err == f"omnitok: error: -o {f} is also an input ({f}); write the results to another file\n"
    assert f.read_bytes() == ROWS


@pytest.mark.parametrize("how", ["symlink", "hardlink", "stdin"])
def test_same_file_by_another_name_is_refused(f, tmp_path, how):
    if how == "symlink":
        (tmp_path / "alias.jsonl").symlink_to(f)
        r = omnitok("count", str(tmp_path / "alias.jsonl"), "-o", str(f))
    elif how == "hardlink":
        os.link(f, tmp_path / "alias.jsonl")
        r = omnitok("count", str(tmp_path / "alias.jsonl"), "-o", str(f))
    else:
        with open(f, "rb") as fd:
            p = subprocess.run([OMNITOK, "count", "-o", str(f)], stdin=fd, capture_output=True)
        r = type("R", (), {"code": p.returncode, "err": p.stderr.decode()})
    assert r.code == EXIT_USAGE
    assert "is also an input" in r.err and "Traceback" not in r.err
    assert f.read_bytes() == ROWS


def test_missing_input_leaves_existing_output_untouched(tmp_path):
    prev = tmp_path / "prev.jsonl"
    prev.write_bytes(b"precious\n")
    r = omnitok("count", str(tmp_path / "missing.jsonl"), "-o", str(prev))
    assert r.code == EXIT_ERROR
    assert f"{tmp_path / 'missing.jsonl'}: no such file" in r.err
    assert prev.read_bytes() == b"precious\n"
    assert _tree(tmp_path) == {"prev.jsonl": b"precious\n"}  # no temp file left behind


def test_run_stopped_at_a_bad_record_leaves_output_untouched(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b'{"text": "fine"}\n{"text": \n')
    prev = tmp_path / "prev.jsonl"
    prev.write_bytes(b"precious\n")
    r = omnitok("count", str(src), "-o", str(prev))
    assert r.code == EXIT_ERROR
    assert f"{src}:2: invalid JSON" in r.err
    assert prev.read_bytes() == b"precious\n"
    assert sorted(_tree(tmp_path)) == ["bad.jsonl", "prev.jsonl"]


def test_bad_records_written_as_error_records_replace_the_output(tmp_path, ref_o200k):
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b'{"text": "fine"}\n{"text": \n')
    prev = tmp_path / "prev.jsonl"
    prev.write_bytes(b"old\n")
    os.chmod(prev, 0o640)
    r = omnitok("count", str(src), "--on-error", "record", "-o", str(prev))
    assert r.code == EXIT_BAD_RECORDS
    rows = [orjson.loads(x) for x in prev.read_bytes().splitlines()]
    assert rows[0]["tokens"] == len(ref_o200k.encode_ordinary("fine"))
    assert rows[1]["line"] == 2 and "invalid JSON" in rows[1]["error"]
    assert oct(prev.stat().st_mode & 0o777) == oct(0o640)  # an existing file keeps its mode


def test_new_output_gets_umask_mode_and_exact_bytes(f, tmp_path, ref_o200k):
    out = tmp_path / "new.jsonl"
    r = omnitok("count", str(f), "-o", str(out))
    assert r.code == EXIT_OK and r.out == b""
    assert [orjson.loads(x)["tokens"] for x in out.read_bytes().splitlines()] == [
        len(ref_o200k.encode_ordinary("hello world")),
        len(ref_o200k.encode_ordinary("second record")),
    ]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_device_output_is_written_in_place_not_replaced(f):
    before = os.stat("/dev/null")
    r = omnitok("count", str(f), "-o", "/dev/null")
    assert r.code == EXIT_OK
    after = os.stat("/dev/null")
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_directory_and_missing_parent_are_usage_errors(f, tmp_path):
    r = omnitok("count", str(f), "-o", str(tmp_path))
    assert (r.code, r.err) == (EXIT_USAGE, f"omnitok: error: cannot write {tmp_path}: it is a directory\n")
    r = omnitok("count", str(f), "-o", str(tmp_path / "no" / "x.jsonl"))
    assert r.code == EXIT_USAGE
    assert r.err == f"omnitok: error: cannot write {tmp_path / 'no' / 'x.jsonl'}: No such file or directory\n"


def test_interrupted_run_leaves_output_untouched(tmp_path):
    prev = tmp_path / "prev.jsonl"
    prev.write_bytes(b"precious\n")
    p = subprocess.Popen(
        [OMNITOK, "count", "-m", "gpt-4o", "--format", "jsonl", "-o", str(prev)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    p.stdin.write(ROWS * 60_000)  # 3 MB: past stdin's first block, so the output is open (.tmp) while stdin is
    p.stdin.flush()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(n.endswith(".tmp") for n in os.listdir(tmp_path)):
        time.sleep(0.02)
    assert any(n.endswith(".tmp") for n in os.listdir(tmp_path)), "the run never opened its output"
    p.send_signal(signal.SIGINT)
    p.stdin.close()
    p.wait(timeout=60)
    assert p.returncode == 130
    assert prev.read_bytes() == b"precious\n"
    assert os.listdir(tmp_path) == ["prev.jsonl"]


def test_compress_and_validate_refuse_their_input(tmp_path):
    ctx = tmp_path / "ctx.jsonl"
    ctx.write_bytes(b'{"context": "alpha beta gamma. delta epsilon.", "query": "alpha"}\n')
    r = omnitok("compress", str(ctx), "--budget", "5", "-o", str(ctx))
    assert r.code == EXIT_USAGE and "is also an input" in r.err
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(b'{"original": "a b c", "compressed": "a b"}\n')
    r = omnitok("validate", str(pairs), "-o", str(pairs))
    assert r.code == EXIT_USAGE and "is also an input" in r.err
    assert pairs.read_bytes() == b'{"original": "a b c", "compressed": "a b"}\n'
    r = omnitok("validate", "--original-file", str(ctx), "--compressed-file", str(pairs), "-o", str(pairs))
    assert r.code == EXIT_USAGE and "is also an input" in r.err


def test_compress_stopped_at_a_bad_record_leaves_output_untouched(tmp_path):
    ctx = tmp_path / "ctx.jsonl"
    ctx.write_bytes(b'{"context": "alpha beta gamma. delta epsilon.", "query": "alpha"}\n{"nope": 1}\n')
    prev = tmp_path / "prev.jsonl"
    prev.write_bytes(b"precious\n")
    r = omnitok("compress", str(ctx), "--budget", "5", "--method", "bm25", "-o", str(prev))
    assert r.code == EXIT_ERROR, r.err
    assert prev.read_bytes() == b"precious\n"
    assert sorted(os.listdir(tmp_path)) == ["ctx.jsonl", "prev.jsonl"]


def _sh(command: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, timeout=120)


def test_a_descriptor_named_by_o_is_written_through_not_replaced(f, tmp_path, ref_o200k):
    """`-o /dev/stdout >> log` renamed a file over log (what /proc/self/fd/1 pointed to): what log
    held was lost, a summary printed to stdout went to the old file, and into a pipe it was
    "No such file or directory". A descriptor's path is written through the descriptor."""
    counts = b"".join(b"%d\n" % len(ref_o200k.encode_ordinary(t)) for t in ("hello world", "second record"))
    (tmp_path / "log").write_bytes(b"kept\n")
    (tmp_path / "link").symlink_to("/dev/stderr")
    for command in (
        f"'{OMNITOK}' count f.jsonl --format number -o /dev/stdout >> log",
        f"'{OMNITOK}' count f.jsonl --format number -o /proc/self/fd/1 >> log",
        f"'{OMNITOK}' count f.jsonl --format number -o /dev/fd/3 3>> log",
        f"'{OMNITOK}' count f.jsonl --format number -o link 2>> log",
    ):
        r = _sh(command, tmp_path)
        assert (r.returncode, r.stderr) == (EXIT_OK, b""), command
    assert (tmp_path / "log").read_bytes() == b"kept\n" + counts * 4
    r = _sh(f"'{OMNITOK}' count f.jsonl --format number --summary -o /dev/stdout | cat", tmp_path)
    assert r.returncode == EXIT_OK and r.stdout.startswith(counts) and b'"total_tokens"' in r.stdout
    # Open on the input: refused before anything is read, the input as it was.
    r = _sh(f"'{OMNITOK}' count f.jsonl -o /dev/stdout >> f.jsonl", tmp_path)
    assert r.returncode == EXIT_USAGE and b"is also an input" in r.stderr and f.read_bytes() == ROWS
    r = _sh(f"'{OMNITOK}' count f.jsonl -o /dev/fd/9", tmp_path)
    assert (r.returncode, r.stderr) == (EXIT_USAGE, b"omnitok: error: cannot write /dev/fd/9: Bad file descriptor\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.jsonl", "link", "log"]  # no temporary file left
