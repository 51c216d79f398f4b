"""Issue 25, item 4: ids keep their value and type. JSONL, JSON, CSV and table output write an id as
the input had it (an integer past 64 bits too, which orjson reads as a float); Parquet output keeps
the id column's Arrow type where the Parquet inputs all give it one integer or string type, and is
a string column (an integer as its exact digits) otherwise. All through the console script."""

from __future__ import annotations

import csv
import io
import json

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.console import omnitok

WIDE = [2**64, -(2**63) - 1, 10**30, -(10**30), 2**63 - 1, -(2**63), 2**64 - 1, 0]
STRINGS = ["18446744073709551616", "s-1", "007"]


def _line(rid, text: str = "hello world") -> bytes:
    # json.dumps, not orjson: the integers past 64 bits are written as digits
    return json.dumps({"id": rid, "text": text}).encode() + b"\n"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Every id kind, on the fast path ({"id", "text"}), on the chat path, and nested; one id that is
    a real float (not an id: left out, as before)."""
    d = tmp_path_factory.mktemp("ids")
    lines = [_line(rid) for rid in WIDE + STRINGS]
    lines.append(json.dumps({"id": 2**64 + 1, "messages": [{"role": "user", "content": "hi"}]}).encode() + b"\n")
    lines.append(b'{"id": 1.8446744073709552e19, "text": "a float id"}\n')
    path = d / "in.jsonl"
    path.write_bytes(b"".join(lines))
    return path


EXPECTED = [*WIDE, *STRINGS, 2**64 + 1, None]


def _jsonl_ids(out: bytes) -> list:
    # json.loads keeps every integer exact (orjson would round the wide ones)
    return [json.loads(line).get("id") for line in out.splitlines()]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_jsonl_output_writes_ids_as_read(mixed, jobs):
    r = omnitok("count", str(mixed), "--jobs", jobs)
    assert r.code == 0, r.err
    ids = _jsonl_ids(r.out)
    assert ids == EXPECTED
    assert [type(i) for i in ids] == [type(i) for i in EXPECTED]  # "18446744073709551616" stays a string
    assert b'"id":18446744073709551616,' in r.out and b'"id":"18446744073709551616"' in r.out


def test_json_csv_and_table_outputs_write_ids_exactly(mixed, tmp_path):
    r = omnitok("count", str(mixed), "--format", "json")
    assert r.code == 0, r.err
    assert [row.get("id") for row in json.loads(r.out)] == EXPECTED

    r = omnitok("count", str(mixed), "--format", "csv")
    assert r.code == 0, r.err
    rows = list(csv.DictReader(io.StringIO(r.out.decode())))
    assert [row["id"] for row in rows] == ["" if v is None else str(v) for v in EXPECTED]

    r = omnitok("count", str(mixed), "--format", "table")
    assert r.code == 0, r.err
    body = r.out.decode().splitlines()[3:]
    for line, rid in zip(body, EXPECTED, strict=True):
        if rid is not None:
            assert f"  {rid}  " in line, line


def test_error_rows_keep_wide_ids(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps({"id": 2**64, "body": "no text field"}).encode() + b"\n" + _line(10**30))
    r = omnitok("count", str(path), "--on-error", "record")
    assert r.code == 4, r.err  # finished, with a bad record
    assert "Traceback" not in r.err
    assert _jsonl_ids(r.out) == [2**64, 10**30]


def test_parquet_output_from_jsonl_is_strings_with_exact_digits(mixed, tmp_path):
    out = tmp_path / "o.parquet"
    r = omnitok("count", str(mixed), "-o", str(out))
    assert r.code == 0, r.err
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.string()
    assert table.column("id").to_pylist() == [None if v is None else str(v) for v in EXPECTED]


def _parquet(path, ids, type_):
    pq.write_table(pa.table({"id": pa.array(ids, type_), "text": ["hello world"] * len(ids)}), path)
    return str(path)


def test_parquet_output_keeps_the_inputs_id_type(tmp_path):
    i64 = [2**63 - 1, -(2**63), 0, None, 42]
    a = _parquet(tmp_path / "a.parquet", i64, pa.int64())
    b = _parquet(tmp_path / "b.parquet", [7], pa.int64())
    out = tmp_path / "o.parquet"
    r = omnitok("count", a, b, "-o", str(out), "--jobs", "2")  # two files that agree; row groups in workers
    assert r.code == 0, r.err
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.int64()
    assert table.column("id").to_pylist() == [*i64, 7]

    u64 = _parquet(tmp_path / "u.parquet", [2**64 - 1, 1], pa.uint64())
    r = omnitok("count", u64, "-o", str(out))
    assert r.code == 0, r.err
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.uint64()
    assert table.column("id").to_pylist() == [2**64 - 1, 1]

    r = omnitok("count", u64)  # JSONL output: the integers as they are
    assert r.code == 0, r.err
    assert _jsonl_ids(r.out) == [2**64 - 1, 1]


def test_parquet_output_is_strings_where_the_inputs_disagree(tmp_path):
    a = _parquet(tmp_path / "a.parquet", [2**63 - 1], pa.int64())
    b = _parquet(tmp_path / "b.parquet", [1], pa.int32())
    s = _parquet(tmp_path / "s.parquet", STRINGS, pa.string())
    j = tmp_path / "wide.jsonl"
    j.write_bytes(_line(2**64) + _line(-(10**30)))
    out = tmp_path / "o.parquet"
    r = omnitok("count", a, b, s, str(j), "-o", str(out))
    assert r.code == 0, r.err
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.string()
    assert table.column("id").to_pylist() == [str(2**63 - 1), "1", *STRINGS, str(2**64), str(-(10**30))]


def test_compress_and_validate_keep_wide_ids(tmp_path):
    contexts = tmp_path / "ctx.jsonl"
    text = "The fox jumps. The dog sleeps. It is sunny today."
    contexts.write_bytes(b"".join(json.dumps({"id": rid, "context": text}).encode() + b"\n" for rid in (2**64, "x")))
    r = omnitok("compress", str(contexts), "--budget", "10", "--quiet")
    assert r.code == 0, r.err
    assert _jsonl_ids(r.out) == [2**64, "x"]

    pairs = tmp_path / "pairs.jsonl"
    pair = {"original": "the fox jumps over the dog", "compressed": "fox jumps"}
    pairs.write_bytes(b"".join(json.dumps({"id": rid, **pair}).encode() + b"\n" for rid in (-(2**63) - 1, 10**30)))
    r = omnitok("validate", str(pairs), "--format", "json")
    assert r.code == 0, r.err
    assert [row["id"] for row in json.loads(r.out)["records"]] == [-(2**63) - 1, 10**30]
    assert orjson.loads(r.out)  # still JSON an ordinary parser takes


def test_integers_too_large_for_a_float_are_read_exactly(tmp_path):
    """An integer of 309 digits or more is infinity to orjson, which refused the line as invalid
    JSON (the README: ids are kept exactly past 64 bits). Such a line is read again by the
    standard library, as a JSON document is; it keeps orjson's other rules."""
    huge = 10**400
    lines = [_line(huge), _line(-huge, "second"), b'{"n": 1e400, "text": "a float past a double"}\n']
    lines.append(json.dumps({"id": huge + 1, "messages": [{"role": "user", "content": "hi"}]}).encode() + b"\n")
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(lines))
    expected = [huge, -huge, None, huge + 1]
    for args in ((str(path),), (str(path), "--jobs", "2"), ("-",)):
        r = omnitok("count", *args, stdin=path.read_bytes())
        assert r.code == 0, (args, r.err)
        assert _jsonl_ids(r.out) == expected, args
    doc = tmp_path / "in.json"
    doc.write_bytes(b"[" + b",".join(x.strip() for x in lines) + b"]")
    r = omnitok("count", str(doc))
    assert r.code == 0 and _jsonl_ids(r.out) == expected, r.err
    # orjson's other rules still hold on such a line: each is the error it was
    for bad in (
        b'{"n": 1e400, "text": NaN}\n',
        b'{"n": 1e400, "text": "x\\ud800"}\n',
        b'{"id": 1' + b"0" * 5000 + b', "text": "x"}\n',  # past Python's own limit on digits
    ):
        r = omnitok("count", "--on-error", "record", stdin=bad)
        assert r.code == 4 and orjson.loads(r.out)["error"].startswith("invalid JSON"), (bad[:30], r.out)
