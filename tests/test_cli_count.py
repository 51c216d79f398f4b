import gzip

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from omnitok import pipeline
from omnitok.errors import EXIT_BAD_RECORDS, EXIT_ERROR, EXIT_OVER_LIMIT, EXIT_USAGE

META = {"model": "gpt-4o", "encoding": "o200k_base", "strategy": "tiktoken", "engine": "gigatoken", "exact": True}


def write_jsonl(path, rows):
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return str(path)


def test_stdin_text_bare_number(cli):
    r = cli("count", "-m", "gpt-4o", stdin=b"hello world")
    assert (r.code, r.out, r.err) == (0, b"2\n", "")


def test_stdin_text_counts_the_newline_too(cli, ref_o200k):
    r = cli("count", "-m", "gpt-4o", stdin=b"hello world\n")
    assert r.out == b"%d\n" % len(ref_o200k.encode_ordinary("hello world\n"))


def test_stdin_jsonl_detected(cli, ref_o200k):
    rows = [
        {"text": "alpha beta", "id": "x1"},
        {"text": "γάμμα δέλτα"},
        {"messages": [{"role": "user", "content": "hi"}]},
    ]
    r = cli("count", "-m", "gpt-4o", stdin=b"".join(orjson.dumps(x) + b"\n" for x in rows))
    assert r.code == 0
    chat = 3 + len(ref_o200k.encode("user")) + len(ref_o200k.encode("hi")) + 3
    assert r.jsonl() == [
        {"pos": 0, "id": "x1", "tokens": len(ref_o200k.encode_ordinary("alpha beta")), **META},
        {"pos": 1, "tokens": len(ref_o200k.encode_ordinary("γάμμα δέλτα")), **META},
        {"pos": 2, "tokens": chat, **META},
    ]


def test_dotted_and_several_fields(cli, tmp_path, ref_cl100k):
    f = write_jsonl(tmp_path / "a.jsonl", [{"meta": {"body": "one two"}, "title": "T"}])
    r = cli("count", "-m", "gpt-4", "--field", "meta.body", f)
    assert r.jsonl()[0]["tokens"] == len(ref_cl100k.encode_ordinary("one two"))
    r = cli("count", "-m", "gpt-4", "--field", "title,meta.body", f)
    row = r.jsonl()[0]
    assert row["fields"] == {"title": 1, "meta.body": len(ref_cl100k.encode_ordinary("one two"))}
    assert row["tokens"] == 1 + row["fields"]["meta.body"]


def test_several_files_gzip_and_order(cli, tmp_path, ref_o200k):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": f"doc {i} " * i} for i in range(3)])
    b = tmp_path / "b.jsonl.gz"
    b.write_bytes(gzip.compress(b'{"text": "zz top"}\n'))
    c = tmp_path / "c.txt"
    c.write_text("plain text file\n")
    r = cli("count", "-m", "gpt-4o", a, str(b), str(c))
    rows = r.jsonl()
    assert [(x["pos"], x["source"], x["line"]) for x in rows] == [
        (0, a, 1),
        (1, a, 2),
        (2, a, 3),
        (3, str(b), 1),
        (4, str(c), None),
    ]
    expected = [len(ref_o200k.encode_ordinary(f"doc {i} " * i)) for i in range(3)]
    expected += [
        len(ref_o200k.encode_ordinary("zz top")),
        len(ref_o200k.encode_ordinary("plain text file\n")),
    ]
    assert [x["tokens"] for x in rows] == expected


def test_lines_mode(cli, ref_o200k):
    r = cli("count", "-m", "gpt-4o", "--lines", "--input-format", "text", stdin=b"a b\n\nc d e\r\nlast")
    assert r.out.decode().split("\n")[:-1] and r.jsonl() == [
        {"pos": i, "tokens": len(ref_o200k.encode_ordinary(t)), **META}
        for i, t in enumerate(["a b", "", "c d e", "last"])
    ]


def test_order_preserved_across_workers(cli, tmp_path, monkeypatch, ref_o200k):
    monkeypatch.setattr(pipeline, "BATCH_RECORDS", 7)
    texts = [("word " * (i % 37)) + str(i) for i in range(500)]
    f = write_jsonl(tmp_path / "many.jsonl", [{"text": t, "id": i} for i, t in enumerate(texts)])
    r = cli("count", "-m", "gpt-4o", "--jobs", "2", f)
    assert r.code == 0
    assert [(x["id"], x["tokens"]) for x in r.jsonl()] == [
        (i, len(ref_o200k.encode_ordinary(t))) for i, t in enumerate(texts)
    ]


# --- bad input: exact messages, exit codes, nothing lost -------------------------------------


def bad_inputs(tmp_path):
    j = tmp_path / "bad.jsonl"
    j.write_bytes(
        b'{"text": "ok one"}\n{"text": 5}\n{"txt": "x", "id": 7}\n{bad json\n{"text": "caf\xff"}\n{"text": "ok two"}\n'
    )
    return str(j)


def test_bad_input_stops_at_first(cli, tmp_path):
    f = bad_inputs(tmp_path)
    r = cli("count", "-m", "gpt-4o", f)
    assert r.code == EXIT_ERROR
    assert len(r.jsonl()) == 1  # the good record before the bad one was written
    assert r.err.splitlines()[0] == f"omnitok: error: {f}:2: field 'text' is int, expected a string or a messages array"


def test_bad_input_skip_reports_each(cli, tmp_path):
    f = bad_inputs(tmp_path)
    r = cli("count", "-m", "gpt-4o", "--on-error", "skip", f)
    assert r.code == EXIT_BAD_RECORDS
    assert [x["pos"] for x in r.jsonl()] == [0, 5]
    lines = r.err.splitlines()
    assert lines[0] == f"omnitok: error: {f}:2: field 'text' is int, expected a string or a messages array"
    assert lines[1] == f"omnitok: error: {f}:3: no 'text' or 'messages' field; pass --field (record has: txt, id)"
    assert lines[2].startswith(f"omnitok: error: {f}:4: invalid JSON at column 2: ")
    assert lines[3] == f"omnitok: error: {f}:5: invalid UTF-8 (byte 0xff at column 14)"
    assert lines[4] == "omnitok: warning: 4 of 6 records had errors (skipped: 2 counted + 4 errors = 6 records in)"


def test_bad_input_record_mode(cli, tmp_path):
    f = bad_inputs(tmp_path)
    r = cli("count", "-m", "gpt-4o", "--on-error", "record", "--summary", "-o", str(tmp_path / "out.jsonl"), f)
    assert r.code == EXIT_BAD_RECORDS
    rows = [orjson.loads(x) for x in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert len(rows) == 6 and [("error" in x) for x in rows] == [False, True, True, True, True, False]
    assert rows[2] == {
        "pos": 2,
        "id": 7,
        "source": f,
        "line": 3,
        "record": {"txt": "x", "id": 7},
        "error": "no 'text' or 'messages' field; pass --field (record has: txt, id)",
    }
    assert rows[3]["record"] == "{bad json"
    summary = r.jsonl()[0]
    assert (summary["records"], summary["counted"], summary["errors"]) == (6, 2, 4)


def test_missing_field(cli, tmp_path):
    f = write_jsonl(tmp_path / "m.jsonl", [{"text": "a", "id": 1}])
    r = cli("count", "--field", "body", f)
    assert r.code == EXIT_ERROR
    assert r.err.splitlines()[0] == f"omnitok: error: {f}:1: field 'body' missing (record has: text, id)"


def test_invalid_utf8_text(cli, tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"line one\nline two\nab\xfecd\n")
    r = cli("count", str(p))
    assert (r.code, r.err.splitlines()[0]) == (
        EXIT_ERROR,
        f"omnitok: error: {p}:3: invalid UTF-8 (byte 0xfe at column 3)",
    )


@pytest.mark.parametrize("name", ["empty.jsonl", "blank.jsonl"])
def test_records_input_with_no_records_is_no_rows_and_a_warning(cli, tmp_path, name):
    # The one rule for empty input (README "Input formats"): no records, no rows, said on stderr.
    p = tmp_path / name
    p.write_bytes(b"" if name == "empty.jsonl" else b"\n  \n")
    r = cli("count", str(p))
    assert (r.code, r.out, r.err) == (0, b"", f"omnitok: warning: {p}: no records (the input is empty or blank)\n")


def test_empty_text_is_zero_tokens(cli, tmp_path):
    # As tiktoken (len(enc.encode(""))) and ttok count it, and as {"text": ""} counts.
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    assert (cli("count", str(p)).code, cli("count", str(p)).out) == (0, b"0\n")
    assert cli("count", "-m", "gpt-4o", stdin=b"").out == b"0\n"
    assert cli("count", stdin=b'{"text": ""}\n').jsonl()[0]["tokens"] == 0


def test_empty_parquet_file_is_not_a_parquet_file(cli, tmp_path):
    p = tmp_path / "empty.parquet"
    p.write_bytes(b"")
    r = cli("count", str(p))
    assert r.code == EXIT_ERROR
    assert r.err.startswith(f"omnitok: error: {p}: not a readable Parquet file")


def test_missing_file_and_directory(cli, tmp_path):
    r = cli("count", str(tmp_path / "nope.jsonl"))
    assert (r.code, r.err.splitlines()[0]) == (
        EXIT_ERROR,
        f"omnitok: error: {tmp_path / 'nope.jsonl'}: no such file",
    )
    r = cli("count", str(tmp_path))
    assert r.code == EXIT_ERROR and "Traceback" not in r.err


def test_parquet_without_column(cli, tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a"], "id": [1]}), p)
    r = cli("count", "--field", "body", str(p))
    assert (r.code, r.err.splitlines()[0]) == (
        EXIT_ERROR,
        f"omnitok: error: {p}: no column 'body' (columns: text, id)",
    )


def test_unknown_model_is_usage_error(cli):
    r = cli("count", "-m", "gpt-4oo", stdin=b"x")
    assert r.code == EXIT_USAGE
    assert "unknown model 'gpt-4oo'" in r.err and "did you mean: gpt-4o" in r.err and "Traceback" not in r.err


# --- formats ----------------------------------------------------------------------------------


def test_parquet_round_trip(cli, tmp_path, ref_o200k):
    texts = ["first row", None, "third row ünïcode", ""]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c", "d"], "text": texts}), src, row_group_size=2)
    out = tmp_path / "out.parquet"
    r = cli("count", "-m", "gpt-4o", "--on-error", "record", str(src), "-o", str(out))
    assert r.code == EXIT_BAD_RECORDS
    table = pq.read_table(out).to_pylist()
    assert [(x["id"], x["line"], x["tokens"], x["error"]) for x in table] == [
        ("a", 1, len(ref_o200k.encode_ordinary("first row")), None),
        ("b", 2, None, "field 'text' is null, expected a string or a messages array"),
        ("c", 3, len(ref_o200k.encode_ordinary("third row ünïcode")), None),
        ("d", 4, 0, None),
    ]


def test_add_field(cli, tmp_path, ref_o200k):
    rows = [{"id": 1, "text": "keep me", "extra": [1, 2]}, {"id": 2, "text": "and me too"}]
    f = write_jsonl(tmp_path / "a.jsonl", rows)
    r = cli("count", "-m", "gpt-4o", "--add-field", "n_tokens", f)
    assert r.jsonl() == [{**x, "n_tokens": len(ref_o200k.encode_ordinary(x["text"]))} for x in rows]


def test_csv_and_json_formats(cli, ref_o200k):
    r = cli("count", "--format", "csv", stdin=b'{"text":"a b c","id":"q"}\n')
    assert r.text.splitlines() == [
        "pos,id,source,line,tokens,model,encoding,strategy,engine,exact,error_band,error",
        f"0,q,<stdin>,1,{len(ref_o200k.encode_ordinary('a b c'))},gpt-4o,o200k_base,tiktoken,gigatoken,true,,",
    ]
    r = cli("count", "--format", "json", stdin=b"a b c")
    assert orjson.loads(r.out) == {"pos": 0, "tokens": len(ref_o200k.encode_ordinary("a b c")), **META}
    r = cli("count", "--format", "json", "--lines", "--input-format", "text", stdin=b"a\nb\n")
    assert [x["tokens"] for x in orjson.loads(r.out)] == [1, 1]


def test_table_format(cli):
    r = cli("count", "--format", "table", stdin=b'{"text":"a b c","id":"q"}\n')
    assert (
        r.code == 0
        and "gpt-4o (o200k_base, tiktoken, engine gigatoken, exact=True)" in r.text
        and "<stdin>:1" in r.text
    )


def test_summary_exact_percentiles(cli):
    # counts 1..20 (n words of "a" -> n tokens? no: use distinct words separated by spaces)
    rows = b"".join(orjson.dumps({"text": " ".join(["x"] * n)}) + b"\n" for n in range(1, 21))
    r = cli("count", "--summary", "--format", "json", stdin=rows)
    s = orjson.loads(r.out)
    assert (s["records"], s["min"], s["max"], s["p50"], s["p95"], s["errors"]) == (20, 1, 20, 10, 19, 0)
    assert s["total_tokens"] == sum(range(1, 21)) and s["mean"] == 10.5


def test_max_tokens_gate(cli):
    rows = b"".join(orjson.dumps({"id": f"r{n}", "text": " ".join(["x"] * n)}) + b"\n" for n in (3, 12, 5, 40))
    r = cli("count", "--max-tokens", "10", stdin=rows)
    assert r.code == EXIT_OVER_LIMIT
    assert len(r.jsonl()) == 4
    assert r.err.splitlines() == [
        "omnitok: error: 2 of 4 records are over --max-tokens 10:",
        "  <stdin>:2 (id r12): 12 tokens",
        "  <stdin>:4 (id r40): 40 tokens",
    ]
    assert cli("count", "--max-tokens", "40", stdin=rows).code == 0
