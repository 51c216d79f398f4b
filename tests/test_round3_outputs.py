"""Issue 25, items 1 and 10: an output appears whole or not at all, whatever fails (a write, the
writer's close, flush, fsync) on a full disk, under a file-size limit or on /dev/full; and a
--format that contradicts -o's suffix is refused. All through the console script."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import tempfile

import orjson
import pytest

from tests.console import OMNITOK, omnitok

FORMATS = ["jsonl", "json", "csv", "parquet"]
PREVIOUS = b"previous results, kept\n"


def _records(n: int) -> bytes:
    return b"".join(
        orjson.dumps({"id": i, "text": f"hello world, this is sentence number {i}"}) + b"\n" for i in range(n)
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "in.jsonl"
    # 10,000 records, 0.65 MB in: every output is over the 100,000-byte file-size limit and the
    # 64 KiB disk (Parquet's, the smallest, is ~180 KB, written at close; JSONL's ~1.3 MB), and
    # stdout's over a pipe's 64 KiB (`| head`).
    path.write_bytes(_records(10_000))
    return path


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rows = [
        {"id": i, "original": f"the quick brown fox jumps over the lazy dog {i}", "compressed": f"fox dog {i}"}
        for i in range(3000)
    ]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def _contexts(tmp_path_factory, n: int):
    path = tmp_path_factory.mktemp("ctx") / "ctx.jsonl"
    text = "The quick brown fox jumps. It was sunny today. We went to the park. The dog barked at night. {}"
    path.write_bytes(b"".join(orjson.dumps({"id": i, "context": text.format(i)}) + b"\n" for i in range(n)))
    return path


@pytest.fixture(scope="module")
def contexts(tmp_path_factory):
    return _contexts(tmp_path_factory, 300)  # compress writes ~95 KB: over the 64 KiB disk


@pytest.fixture(scope="module")
def few_contexts(tmp_path_factory):
    """For stdout on /dev/full, where the first write fails: 60 contexts, ~19 KB of JSONL and a
    25 KB JSON document, both over the stdout buffer's 8 KiB as the 300's are (--format json
    compresses every context before its one write: 300 were ~0.8 s of CPU more)."""
    return _contexts(tmp_path_factory, 60)


@pytest.fixture
def full_disk():
    """A 64 KiB tmpfs (root only; skipped where it cannot be mounted)."""
    directory = tempfile.mkdtemp(prefix="omnitok-full-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", directory], capture_output=True).returncode:
        os.rmdir(directory)
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield directory
    finally:
        subprocess.run(["umount", directory], check=False)
        os.rmdir(directory)


def _limited(args, limit: int):
    """The console script with RLIMIT_FSIZE set (SIGXFSZ ignored, so writes fail with EFBIG)."""

    def limit_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    p = subprocess.run(
        [OMNITOK, *args], preexec_fn=limit_size, capture_output=True, stdin=subprocess.DEVNULL, timeout=120
    )
    return p.returncode, p.stderr.decode()


def _to_dev_full(args):
    with open("/dev/full", "wb") as full:
        p = subprocess.run([OMNITOK, *args], stdout=full, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=120)
    return p.returncode, p.stderr.decode()


def _temporaries(directory) -> list[str]:
    return [n for n in os.listdir(directory) if n.endswith(".tmp")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_file_size_limit_leaves_previous_file(tmp_path, corpus, fmt):
    # Parquet is written at the writer's close: a failed close used to commit a cut, unreadable file.
    target = tmp_path / f"good.{fmt}"
    target.write_bytes(PREVIOUS)
    code, err = _limited(["count", str(corpus), "-o", str(target)], 100_000)
    assert (code, err) == (1, f"omnitok: error: {target}: File too large\n")
    assert target.read_bytes() == PREVIOUS
    assert _temporaries(tmp_path) == []


def test_file_size_limit_new_file_not_created(tmp_path, corpus):
    target = tmp_path / "new.parquet"
    code, err = _limited(["count", str(corpus), "-o", str(target)], 100_000)
    assert (code, err) == (1, f"omnitok: error: {target}: File too large\n")
    assert os.listdir(tmp_path) == []
    # Under a limit it fits, the same run writes the whole file.
    import pyarrow.parquet as pq

    assert _limited(["count", str(corpus), "-o", str(target)], 50_000_000) == (0, "")
    assert pq.read_table(target).num_rows == 10_000


@pytest.mark.parametrize("fmt", FORMATS)
def test_full_disk_count(full_disk, corpus, fmt):
    target = os.path.join(full_disk, f"x.{fmt}")
    with open(target, "wb") as f:
        f.write(PREVIOUS)
    r = omnitok("count", str(corpus), "-o", target)
    assert (r.code, r.err) == (1, f"omnitok: error: {target}: No space left on device\n")
    with open(target, "rb") as f:
        assert f.read() == PREVIOUS
    assert _temporaries(full_disk) == []


def test_full_disk_validate_and_compress(full_disk, pairs, contexts):
    for name, args in (
        ("v.jsonl", ["validate", str(pairs)]),
        ("c.jsonl", ["compress", str(contexts), "--budget", "10"]),
    ):
        target = os.path.join(full_disk, name)
        with open(target, "wb") as f:
            f.write(PREVIOUS)
        r = omnitok(*args, "-o", target)
        assert (r.code, r.err) == (1, f"omnitok: error: {target}: No space left on device\n"), args
        with open(target, "rb") as f:
            assert f.read() == PREVIOUS
        assert _temporaries(full_disk) == []


@pytest.mark.parametrize(
    "args",
    [
        ["count", "{corpus}"],
        ["count", "{corpus}", "--summary"],
        ["count", "{corpus}", "--format", "csv"],
        ["validate", "{pairs}"],
        ["compress", "{contexts}", "--budget", "10"],
        ["compress", "{contexts}", "--budget", "10", "--format", "json"],
    ],
)
def test_stdout_on_a_full_device(args, corpus, pairs, few_contexts):
    args = [a.format(corpus=corpus, pairs=pairs, contexts=few_contexts) for a in args]
    assert _to_dev_full(args) == (1, "omnitok: error: stdout: No space left on device\n")


def test_output_to_dev_full_in_place(corpus):
    r = omnitok("count", str(corpus), "-o", "/dev/full")
    assert (r.code, r.err) == (1, "omnitok: error: /dev/full: No space left on device\n")
    # A reader that goes away (`| head`) is still no error.
    p = subprocess.run(f"'{OMNITOK}' count '{corpus}' | head -c 10", shell=True, capture_output=True, timeout=120)
    assert (p.stdout, p.stderr) == (b'{"pos":0,"', b"")


# --- item 10 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "name", "named"),
    [
        ("json", "x.parquet", "parquet"),
        ("csv", "x.jsonl", "jsonl"),
        ("parquet", "x.csv", "csv"),
        ("jsonl", "x.json", "json"),
    ],
)
def test_format_contradicting_suffix_is_usage_error(tmp_path, fmt, name, named):
    target = tmp_path / name
    r = omnitok("count", "--format", fmt, "-o", str(target), stdin=b'{"text": "a b"}\n')
    assert r.code == 2
    assert r.err == (
        f"omnitok: error: --format {fmt} contradicts -o {target}, whose suffix says {named}; "
        "drop --format or rename the file\n"
    )
    assert os.listdir(tmp_path) == []


def test_format_contradicting_suffix_compress_and_validate(tmp_path, pairs, contexts):
    r = omnitok("compress", str(contexts), "--budget", "10", "--format", "text", "-o", str(tmp_path / "c.jsonl"))
    assert r.code == 2 and r.err.startswith("omnitok: error: --format text contradicts -o ") and r.err.count("\n") == 1
    r = omnitok("validate", str(pairs), "--format", "junit", "-o", str(tmp_path / "v.json"))
    assert r.code == 2 and r.err.startswith("omnitok: error: --format junit contradicts -o ") and r.err.count("\n") == 1
    assert os.listdir(tmp_path) == []
    # A --format the suffix agrees with is written.
    import pyarrow.parquet as pq

    for fmt, name in (("parquet", "x.parquet"), ("jsonl", "x.ndjson"), ("json", "x.JSON"), ("number", "x.txt")):
        r = omnitok("count", "--format", fmt, "-o", str(tmp_path / name), stdin=b'{"text": "a b"}\n')
        assert (r.code, r.err) == (0, ""), fmt
    assert pq.read_table(tmp_path / "x.parquet").num_rows == 1


def test_csv_booleans_as_in_jsonl():
    stdin = b'{"text": "a b c"}\n'
    r = omnitok("count", "--format", "csv", stdin=stdin)
    assert r.code == 0
    header, row = r.out.decode().splitlines()
    assert dict(zip(header.split(","), row.split(","), strict=True))["exact"] == "true"
    assert orjson.loads(omnitok("count", stdin=stdin).out)["exact"] is True
