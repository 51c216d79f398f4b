"""Inputs as a shell hands them over: stdin, pipes, FIFOs, process substitution, /dev/stdin,
gzip streams; the one format-sniffing rule; damaged inputs reported record by record."""

from __future__ import annotations

import gzip
import os
import subprocess
import threading

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from omnitok.errors import EXIT_BAD_RECORDS, EXIT_ERROR, EXIT_OK

from .console import OMNITOK, omnitok

ROWS = [{"text": "alpha beta", "id": "a"}, {"text": "γάμμα"}, {"text": "third one here"}]
DATA = b"".join(orjson.dumps(r) + b"\n" for r in ROWS)
META = {"model": "gpt-4o", "encoding": "o200k_base", "strategy": "tiktoken", "exact": True}
# The engine is not compared: a small input that can be sized or read ahead (a pipe, a file) is
# counted by pybpe, others (a FIFO, /dev/stdin, .gz) by gigatoken; the counts are the same.


@pytest.fixture
def expected(ref_o200k):
    return [
        {
            "pos": i,
            **({"id": r["id"]} if "id" in r else {}),
            "tokens": len(ref_o200k.encode_ordinary(r["text"])),
            **META,
        }
        for i, r in enumerate(ROWS)
    ]


def rows(out: bytes) -> list[dict]:
    found = [orjson.loads(x) for x in out.splitlines()]
    for row in found:
        assert row.pop("engine", "pybpe") in ("pybpe", "gigatoken"), row
    return found


@pytest.mark.parametrize(
    "stdin",
    [DATA, b"\n\n" + DATA, b"\xef\xbb\xbf" + DATA, DATA.replace(b"\n", b"\r\n"), gzip.compress(DATA)],
    ids=["plain", "blank-lines-first", "bom", "crlf", "gzip"],
)
def test_stdin_jsonl_is_sniffed(cli, stdin, expected):
    r = cli("count", "-m", "gpt-4o", stdin=stdin)
    assert (r.code, r.err) == (0, "")
    assert rows(r.out) == expected


def test_malformed_first_line_is_the_jsonl_error_not_one_text(cli):
    r = cli("count", "-m", "gpt-4o", stdin=b'{"text": "a",}\n{"text": "b"}\n')
    assert r.code == EXIT_ERROR
    assert (
        r.err.splitlines()[0] == "omnitok: error: <stdin>:1: invalid JSON at column 13: trailing comma is not allowed"
    )


def test_a_pretty_printed_object_on_stdin_is_one_json_record(cli):
    r = cli("count", "-m", "gpt-4o", stdin=b'{\n  "pretty": "printed"\n}\n')
    assert r.code == EXIT_ERROR
    assert r.err.splitlines()[0] == (
        "omnitok: error: <stdin>:1: no 'text' or 'messages' field; pass --field (record has: pretty)"
    )


def test_text_that_starts_with_a_brace_but_is_no_json_stays_text(cli, ref_o200k):
    text = b'{\n  "not": json\n}\n'
    r = cli("count", "-m", "gpt-4o", stdin=text)
    assert (r.code, r.out) == (0, b"%d\n" % len(ref_o200k.encode_ordinary(text.decode())))


def test_bom_before_a_jsonl_files_first_record_is_skipped(cli, tmp_path, expected):
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + DATA)
    assert rows(cli("count", str(p)).out) == expected


def _bash(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], capture_output=True, timeout=120)


def test_process_substitution_and_dev_stdin(tmp_path, expected):
    p = tmp_path / "x.jsonl"
    p.write_bytes(DATA)
    r = _bash(f"'{OMNITOK}' count -m gpt-4o <(cat '{p}')")
    assert (r.returncode, r.stderr) == (0, b"")
    assert rows(r.stdout) == expected
    r = _bash(f"'{OMNITOK}' count -m gpt-4o /dev/stdin < '{p}'")
    assert (r.returncode, rows(r.stdout)) == (0, expected)
    r = _bash(f"cat '{p}' | '{OMNITOK}' count -m gpt-4o /dev/stdin")
    assert (r.returncode, rows(r.stdout)) == (0, expected)


def test_fifo_is_read_and_its_writer_finishes(tmp_path, expected):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    done = threading.Event()

    def write():
        with open(fifo, "wb") as f:
            f.write(DATA)
        done.set()

    t = threading.Thread(target=write, daemon=True)
    t.start()
    r = omnitok("count", "-m", "gpt-4o", str(fifo), timeout=60)
    assert (r.code, r.err) == (EXIT_OK, "")
    assert rows(r.out) == expected
    assert done.wait(10)


def test_parquet_on_stdin(tmp_path, expected):
    p = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": r["text"], "id": r.get("id")} for r in ROWS]), p)
    r = omnitok("count", "-m", "gpt-4o", stdin=p.read_bytes())
    assert r.code == EXIT_OK, r.err
    got = rows(r.out)
    assert [g["tokens"] for g in got] == [e["tokens"] for e in expected]
    assert got[0]["id"] == "a"


def test_truncated_gzip_error_names_the_line(cli, tmp_path, ref_o200k):
    body = b"".join(b'{"text": "record %d"}\n' % i for i in range(5000))
    z = gzip.compress(body)
    p = tmp_path / "cut.jsonl.gz"
    p.write_bytes(z[: len(z) // 2])
    r = cli("count", "--on-error", "record", str(p))
    assert r.code == EXIT_BAD_RECORDS
    got = r.jsonl()
    last = got[-1]
    assert [g["pos"] for g in got] == list(range(len(got)))  # every record read is counted
    assert len(got) > 100
    assert [g["tokens"] for g in got[:-1]] == [
        len(ref_o200k.encode_ordinary(f"record {i}")) for i in range(len(got) - 1)
    ]
    assert last["line"] == len(got) and last["error"].startswith(f"cannot read past line {len(got) - 1}: ")


def test_damaged_parquet_row_group_is_an_error_for_each_of_its_rows(cli, tmp_path, ref_o200k):
    p = tmp_path / "three.parquet"
    table = pa.Table.from_pylist([{"text": f"row number {i}"} for i in range(300)])
    pq.write_table(table, p, row_group_size=100, compression="NONE")
    meta = pq.ParquetFile(p).metadata
    col = meta.row_group(1).column(0)
    start = col.data_page_offset
    data = bytearray(p.read_bytes())
    data[start : start + 40] = b"\xff" * 40  # the middle group's page header and data
    p.write_bytes(bytes(data))
    r = cli("count", "--on-error", "record", str(p))
    assert r.code == EXIT_BAD_RECORDS
    got = r.jsonl()
    assert len(got) == 300  # every input row has a row out
    assert [g["pos"] for g in got] == list(range(300))
    assert [g["line"] for g in got[100:200]] == list(range(101, 201))  # error rows name their row
    assert all("error" not in g for g in got[:100] + got[200:])
    assert [g["tokens"] for g in got[200:]] == [
        len(ref_o200k.encode_ordinary(f"row number {i}")) for i in range(200, 300)
    ]
    assert all(g["error"].startswith("cannot read Parquet row group 1: ") for g in got[100:200])
    r = cli("count", "--on-error", "skip", "--summary", "-q", str(p))
    summary = orjson.loads(r.out)
    assert (summary["records"], summary["errors"]) == (300, 100)
