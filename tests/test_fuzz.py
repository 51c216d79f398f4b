"""Issue 25, item 12: fuzzing through the console script. Hypothesis makes hostile records (one
file an example, many records a file), option values and damaged files; every run must end with
a documented exit code, one-line `omnitok: ...` messages on stderr (never a traceback), and
output that parses.

Cost: each console-script start is ~0.5 s of CPU, so examples are few and each packs many cases
(one JSONL file of up to 25 hostile records, three commands over it): ~50 starts in all. Runs are
reproducible (derandomize, no example database, no shrinking: check() prints the whole input).
OMNITOK_FUZZ_SCALE=N runs N times the examples, random ones, for a longer hunt by hand:
`OMNITOK_FUZZ_SCALE=20 .venv/bin/python -m pytest -n 0 -p no:cacheprovider tests/test_fuzz.py`.

Crashes found and not fixed yet are in KNOWN as one-line reproductions, each an xfail(strict)
test, so the suite passes today and says so when a fix lands (then move the case out of KNOWN)."""

from __future__ import annotations

import gzip
import io
import os
import struct
import xml.etree.ElementTree as ET

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests import fuzz_strategies as fs
from tests.console import Run, omnitok

SCALE = int(os.environ.get("OMNITOK_FUZZ_SCALE", "1") or 1)


def fuzz_settings(n: int):
    return settings(
        max_examples=n * SCALE,
        deadline=None,
        derandomize=SCALE == 1,
        database=None,
        # No shrinking: an example costs process starts and shrinking one takes minutes.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# Exit codes each command may give (README, "Exit codes"); 130 (interrupted) never here.
CODES = {
    "count": {0, 1, 2, 3, 4, 5},
    "compress": {0, 1, 2, 4, 6},
    "validate": {0, 1, 2, 4, 6},
    "bundle": {0, 1, 2},
}


# Tracebacks of the crashes in KNOWN (below): the fuzz tests let them pass, so that the suite
# passes until they are fixed; KNOWN's strict xfails say when they are. Remove both together.
# Each is the start of the traceback's last line (the exception).
KNOWN_SIGNATURES: tuple[str, ...] = ()  # none left


def check(
    run: Run, command: str, *, jsonl_out: bool = True, given=None, error_line: bool = True, known_ok: bool = True
) -> None:
    """The oracle: a documented exit code, no traceback, every stderr line one of omnitok's own
    (`omnitok: error|warning|hint|...`, or an indented line under one, as --max-tokens lists
    records), an error line whenever the run failed, and JSONL on stdout that parses line by line."""
    what = f"input: {given!r}\nexit {run.code}\n--- stderr ---\n{run.err[-3000:]}\n--- stdout ---\n{run.out[-1000:]!r}"
    last = run.err.strip().splitlines()[-1] if run.err.strip() else ""
    if known_ok and "Traceback" in run.err and last.startswith(KNOWN_SIGNATURES):
        return
    assert "Traceback" not in run.err, what
    assert run.code in CODES[command], what
    for line in run.err.splitlines():
        assert line.startswith(("omnitok: ", "  ")) or not line.strip(), f"stray stderr line {line!r}\n{what}"
    if run.code in (1, 2) and error_line:
        assert "omnitok: error: " in run.err, what
    if jsonl_out:
        for line in run.out.splitlines():
            if line.strip():
                try:
                    orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise AssertionError(f"stdout line is not JSON: {line[:300]!r}\n{what}") from None


# --- (a) hostile records: one file an example, count / compress / validate over it --------------


@fuzz_settings(6)
@given(
    body=fs.jsonl_file(),
    on_error=st.sampled_from(["stop", "skip", "record"]),
    via_stdin=st.booleans(),
    budget=st.sampled_from(["1", "10", "37", "400"]),
)
def test_hostile_records(tmp_path_factory, body, on_error, via_stdin, budget):
    """Records with lone surrogates, huge and non-finite numbers, nested ids, null/number/list
    texts, messages with bad roles and parts, BOMs, blank lines, CRLF, invalid UTF-8 and NUL, from
    a file or sniffed from stdin, through all three record commands."""
    path = tmp_path_factory.mktemp("rec") / "records.jsonl"
    path.write_bytes(body)
    source = ["-"] if via_stdin else [str(path)]
    stdin = body if via_stdin else b""
    # --format jsonl: a stdin sniffed as text would otherwise give a bare number or the text.
    common = [*source, "--format", "jsonl", "-q"]
    # Records in = rows out: with --on-error record every non-blank line of a .jsonl file is a row
    # (a result or an error row); validate adds its summary line.
    text = body[3:] if body.startswith(b"\xef\xbb\xbf") else body
    records = sum(1 for line in text.split(b"\n") if line.strip(b" \t\r"))
    for command, extra in (
        # count of a file always records errors, so that each example checks the accounting once
        ("count", ["--max-tokens", "50", "--on-error", "record" if not via_stdin else on_error]),
        ("compress", ["--budget", budget, "--method", "bm25", "--on-error", on_error]),
        ("validate", ["--metrics", "rouge-l,compression", "--on-error", on_error]),
    ):
        args = [command, *common, *extra]
        run = omnitok(*args, stdin=stdin)
        check(run, command, given=(args, body))
        if args[-1] == "record" and not via_stdin and "Traceback" not in run.err:
            rows = [row for row in map(orjson.loads, run.out.splitlines()) if "summary" not in row]
            assert len(rows) == records, (args, body, run.out[-2000:], run.err[-2000:])


REPORTS = ["count csv", "count parquet", "count table", "count add-field", "validate junit", "validate markdown"]


@fuzz_settings(6)
@given(lines=st.lists(fs.record_line(), min_size=1, max_size=30), report=st.sampled_from(REPORTS))
def test_hostile_records_in_every_output(tmp_path_factory, lines, report):
    """The same records through the other writers (CSV, Parquet, table, --add-field) and
    validate's reports: every writer takes every value, and the files parse."""
    where = tmp_path_factory.mktemp("fmt")
    path = where / "records.jsonl"
    body = b"\n".join(lines) + b"\n"
    path.write_bytes(body)
    command, fmt = report.split()
    out = where / {"table": "out.txt", "add-field": "out.jsonl", "junit": "out.xml", "markdown": "out.md"}.get(
        fmt, f"out.{fmt}"
    )
    args = [command, str(path), "--on-error", "record", "-o", str(out), "-q"]
    args += ["--add-field", "n_tokens"] if fmt == "add-field" else ["--format", fmt]
    if command == "validate":
        args += ["--min-rouge-l", "0.5"]
    run = omnitok(*args)
    check(run, command, jsonl_out=False, given=(args, body))
    if run.code in (0, 3, 4, 6) and out.exists():
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.read_table(out)
        elif fmt == "junit":
            ET.fromstring(out.read_bytes())
        elif fmt == "add-field":
            for line in out.read_bytes().splitlines():
                if line.strip():
                    orjson.loads(line)


@fuzz_settings(2)
@given(data=st.binary(min_size=1, max_size=400), lines=st.booleans())
def test_binary_text_input(tmp_path_factory, data, lines):
    """Any bytes as a text file (`--lines` or whole), with NULs, CR and invalid UTF-8."""
    path = tmp_path_factory.mktemp("txt") / "input.txt"
    path.write_bytes(data)
    args = ["count", str(path), "--format", "jsonl", "-q", *(["--lines", "--on-error", "record"] if lines else [])]
    check(omnitok(*args), "count", given=(args, data))


# --- (b) option values --------------------------------------------------------------------------


@fuzz_settings(10)
@given(args=fs.argv())
def test_option_values(tmp_path_factory, args):
    """Fuzzed values for options that take one (nan, inf, -0, 1e309, huge ints, empty strings,
    control and bidi characters, fullwidth digits, typos of flags): a result or one usage line."""
    where = tmp_path_factory.mktemp("opt")
    pairs = where / "in.jsonl"
    pairs.write_bytes(
        b'{"id": 1, "text": "the cat sat on the mat. it was happy.", "query": "cat",'
        b' "original": "the cat sat on the mat", "compressed": "the cat"}\n'
    )
    command = args[0]
    extra = ["--budget", "5"] if command == "compress" and not any(a.startswith("--budget") for a in args) else []
    argv = [*args, *extra, "--cache-dir", "none", "-q", str(pairs)]
    check(omnitok(*argv, timeout=60), command, jsonl_out=False, given=argv)


# --- (c) damaged files --------------------------------------------------------------------------


def _jsonl(n: int = 40) -> bytes:
    return b"".join(
        orjson.dumps({"id": i, "text": f"record {i} says hello to the world", "original": "a b c", "compressed": "a c"})
        + b"\n"
        for i in range(n)
    )


def _parquet(n: int = 40) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": list(range(n)), "text": [f"row {i} of the table, hello" for i in range(n)]})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=10)
    return buf.getvalue()


def _tokenizer_json() -> bytes:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "the": 3, "cat": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok.to_str().encode()


def _gguf_string(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def _gguf(key_len: int | None = None, value_len: int | None = None, count: int | None = None) -> bytes:
    """A small GGUF header (v3: no tensors, two keys: the architecture, a token array), with one of
    its length fields replaced when asked."""
    key = b"general.architecture"
    kv = struct.pack("<Q", len(key) if key_len is None else key_len) + key
    kv += struct.pack("<I", 8) + struct.pack("<Q", 5 if value_len is None else value_len) + b"llama"
    tokens = [b"<unk>", b"<s>", b"</s>", b"hello"]
    kv += _gguf_string(b"tokenizer.ggml.tokens") + struct.pack("<II", 9, 8)
    kv += struct.pack("<Q", len(tokens) if count is None else count) + b"".join(map(_gguf_string, tokens))
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + kv


KINDS = ["parquet", "jsonl.gz", "tokenizer.json", "tar.gz", "gguf"]


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """The intact files the damage is done to (a bundle made once, offline: gpt-4o's encoding)."""
    where = tmp_path_factory.mktemp("orig")
    bundle = where / "b.tar.gz"
    run = omnitok("bundle", "create", "--models", "gpt-4o", "-o", str(bundle), env={"OMNITOK_HOME": str(where / "h")})
    assert run.code == 0, run.err
    return {
        "parquet": _parquet(),
        "jsonl.gz": gzip.compress(_jsonl(), mtime=0),
        "tokenizer.json": _tokenizer_json(),
        "tar.gz": bundle.read_bytes(),
        "gguf": _gguf(),
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """An OMNITOK_HOME apart from the user's, shared by this module's runs of damaged files and
    known crashes: none of them installs or stores anything there (no bundle is installed, a
    --tokenizer file is read where it lies), so a home of their own would only make each run derive
    o200k's rank tables into it again (~0.2 s of CPU a run) before reading its damaged input."""
    return tmp_path_factory.mktemp("home") / "home"


def _run_damaged(kind: str, damaged: bytes, where, how, home) -> None:
    path = where / ("tokenizer.json" if kind == "tokenizer.json" else f"input.{kind}")
    path.write_bytes(damaged)
    home = {"OMNITOK_HOME": str(home)}
    if kind in ("parquet", "jsonl.gz"):
        args = ["count", str(path), "--on-error", "record", "-q"]
    elif kind in ("tokenizer.json", "gguf"):
        args = ["count", "-m", "local/fuzz", "--tokenizer", str(path), "--text", "hello the cat", "-q"]
    else:
        args = ["bundle", "verify", str(path)]
    run = omnitok(*args, env=home)
    command = args[0]
    # bundle verify's answer is its JSON ({"ok": false, "problems": [...]}, exit 1), not a line.
    check(run, command, given=(args, how, damaged[:200]), error_line=command != "bundle")
    if command == "bundle" and run.code == 1:
        assert orjson.loads(run.out)["ok"] is False, run.out


@fuzz_settings(5)
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_damaged_files(originals, home, tmp_path_factory, data, kind):
    """A Parquet file, a JSONL.gz, a tokenizer.json, a bundle and a GGUF header, cut short, with
    bits flipped, overwritten or extended: an error naming the file, or a result."""
    damaged = data.draw(fs.damage(originals[kind]), label="damage")
    _run_damaged(kind, damaged.data, tmp_path_factory.mktemp("dmg"), damaged, home)


@pytest.mark.parametrize("kind", KINDS)
def test_each_file_cut_in_half(originals, home, tmp_path, kind):
    """Every kind at least once a run, whatever the draw above took."""
    data = originals[kind]
    _run_damaged(kind, data[: len(data) // 2], tmp_path, "truncate", home)


@pytest.mark.parametrize(("field", "value"), [("key_len", 2**64 - 1), ("value_len", 2**62), ("count", 2**63)])
def test_gguf_length_fields(home, tmp_path, field, value):
    """A GGUF length field past any file (MemoryError / OverflowError before issue 25)."""
    _run_damaged("gguf", _gguf(**{field: value}), tmp_path, (field, value), home)


# --- crashes found by this suite, not fixed yet: one-line reproductions --------------------------


def _corrupt_gz(tmp_path, suffix: str):
    data = bytearray(gzip.compress(_jsonl(), mtime=0))
    for i in range(12, 28):  # inside the deflate stream: zlib.error, not EOFError/OSError
        data[i] ^= 0xFF
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(bytes(data))
    return path


def _known_gz_jsonl(tmp_path):
    return ["count", str(_corrupt_gz(tmp_path, ".jsonl.gz"))], b""


def _known_gz_text(tmp_path):
    return ["count", str(_corrupt_gz(tmp_path, ".txt.gz"))], b""


def _known_gz_stdin(tmp_path):
    return ["count"], _corrupt_gz(tmp_path, ".jsonl.gz").read_bytes()


def _known_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    return ["count", "--tokenizer", str(tmp_path / "tokenizer.json"), "--text", "hi"], b""


def _known_align_id_drops_records(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": 1, "original": "a b"}\n')
    (tmp_path / "b.jsonl").write_text('{"id": 1, "compressed": "a"}\nnot json\n{"compressed": "no id"}\n')
    files = ["--original-file", str(tmp_path / "a.jsonl"), "--compressed-file", str(tmp_path / "b.jsonl")]
    return ["validate", *files, "--align", "id"], b""


KNOWN = [
    # Fixed, each once a traceback: a .gz whose deflate data is damaged (zlib.error is no OSError:
    # io/readers.GzipReader), from a file, as text, on stdin; a tokenizer.json the tokenizers
    # library cannot load (tokenizers/hf.py _Tokenizers).
    pytest.param(_known_gz_jsonl, id="corrupt-gz-jsonl"),
    pytest.param(_known_gz_text, id="corrupt-gz-text"),
    pytest.param(_known_gz_stdin, id="corrupt-gz-stdin"),
    pytest.param(_known_tokenizer_json, id="tokenizer-json-without-model"),
    # Fixed: validate --align id once dropped B's bad records and those without an id (exit 0).
    pytest.param(_known_align_id_drops_records, id="align-id-drops-bad-records"),
]

# Cases that must fail the run (a bad record under --on-error stop), not only not crash.
MUST_FAIL = {_known_align_id_drops_records}


@pytest.mark.parametrize("case", KNOWN)
def test_known_crashes(home, tmp_path, case):
    args, stdin = case(tmp_path)
    run = omnitok(*args, stdin=stdin, env={"OMNITOK_HOME": str(home)})
    check(run, args[0], given=args, known_ok=False)
    if case in MUST_FAIL:
        assert run.code == 1 and "omnitok: error: " in run.err, (run.code, run.out, run.err)
