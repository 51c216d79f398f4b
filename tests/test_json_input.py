"""JSON documents as input (issue 27, item 2): a .json file holding an array of records, one record,
or {"messages": [...]} is read as records; stdin is sniffed by content; --input-format json; a
document is read whole, so it is capped (readers.JSON_DOC_MAX). Through the console script."""

from __future__ import annotations

import json

import orjson
import pytest

from omnitok.errors import EXIT_BAD_RECORDS, EXIT_ERROR
from tests.console import omnitok

META = {
    "model": "gpt-4o",
    "encoding": "o200k_base",
    "strategy": "tiktoken",
    "engine": "pybpe",
    "exact": True,
}  # small input
CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]}


def rows(out: bytes) -> list[dict]:
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


def chat_tokens(enc, messages) -> int:
    # OpenAI's cookbook framing for gpt-4o: 3 a message, the role and content, 3 to prime the reply.
    return sum(3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in messages) + 3


def test_pretty_printed_array_is_records(tmp_path, ref_o200k):
    p = tmp_path / "req.json"
    p.write_text(json.dumps([{"text": "Hello, world!", "id": "a"}, CHAT, {"text": "γάμμα δέλτα"}], indent=2))
    r = omnitok("count", "-m", "gpt-4o", str(p))
    assert (r.code, r.err) == (0, "")
    assert rows(r.out) == [
        {"pos": 0, "id": "a", "tokens": len(ref_o200k.encode_ordinary("Hello, world!")), **META},
        {"pos": 1, "tokens": chat_tokens(ref_o200k, CHAT["messages"]), **META},
        {"pos": 2, "tokens": len(ref_o200k.encode_ordinary("γάμμα δέλτα")), **META},
    ]


def test_one_record_document(tmp_path, ref_o200k):
    p = tmp_path / "chat.json"
    p.write_text(json.dumps(CHAT, indent=4))
    r = omnitok("count", "-m", "gpt-4o", str(p))
    assert (r.code, r.err) == (0, "")
    assert rows(r.out) == [{"pos": 0, "tokens": chat_tokens(ref_o200k, CHAT["messages"]), **META}]


def test_jsonl_named_json_is_still_jsonl(tmp_path, ref_o200k):
    p = tmp_path / "lines.json"
    p.write_bytes(b'{"text": "alpha beta"}\n{"text": "gamma"}\n')
    r = omnitok("count", "-m", "gpt-4o", str(p))
    assert r.code == 0
    assert [x["tokens"] for x in rows(r.out)] == [len(ref_o200k.encode_ordinary(t)) for t in ("alpha beta", "gamma")]


@pytest.mark.parametrize(
    "doc",
    [
        json.dumps([{"text": "alpha beta"}, {"text": "gamma"}], indent=2),  # an array
        '[{"text": "alpha beta"}, {"text": "gamma"}]',  # an array on one line
    ],
)
def test_stdin_sniffed_array(doc, ref_o200k):
    r = omnitok("count", "-m", "gpt-4o", stdin=doc.encode())
    assert (r.code, r.err) == (0, "")
    assert [x["tokens"] for x in rows(r.out)] == [len(ref_o200k.encode_ordinary(t)) for t in ("alpha beta", "gamma")]


def test_stdin_sniffed_multiline_record(ref_o200k):
    r = omnitok("count", "-m", "gpt-4o", stdin=json.dumps(CHAT, indent=2).encode())
    assert (r.code, r.err) == (0, "")
    assert rows(r.out) == [{"pos": 0, "tokens": chat_tokens(ref_o200k, CHAT["messages"]), **META}]


@pytest.mark.parametrize("text", ["[INST] hi [/INST]\n", "{ not json\n}\n", "[1, 2\n"])
def test_stdin_text_that_starts_like_json_is_text(text, ref_o200k):
    r = omnitok("count", "-m", "gpt-4o", stdin=text.encode())
    assert (r.code, r.out, r.err) == (0, b"%d\n" % len(ref_o200k.encode_ordinary(text)), "")


def test_input_format_json_on_stdin(ref_o200k):
    r = omnitok("count", "-m", "gpt-4o", "--input-format", "json", stdin=b'{"text": "alpha beta"}')
    assert r.code == 0 and [x["tokens"] for x in rows(r.out)] == [len(ref_o200k.encode_ordinary("alpha beta"))]
    r = omnitok("count", "-m", "gpt-4o", "--input-format", "json", stdin=b"[1,\n")
    assert (r.code, r.err) == (
        EXIT_ERROR,
        "omnitok: error: <stdin>: invalid JSON at line 2, column 1: unexpected end of data\n",
    )


def test_errors_name_the_line_and_the_index(tmp_path):
    p = tmp_path / "req.json"
    p.write_text('[\n  {"text": "a"},\n  {\n    "body": "b"\n  }\n]\n')
    r = omnitok("count", "-m", "gpt-4o", str(p))
    assert r.code == EXIT_ERROR
    assert r.err.splitlines()[0] == (
        f"omnitok: error: {p}:3: [1]: no 'text' or 'messages' field; pass --field (record has: body)"
    )
    r = omnitok("count", "-m", "gpt-4o", "--on-error", "skip", str(p))
    assert r.code == EXIT_BAD_RECORDS and len(rows(r.out)) == 1


def test_invalid_document(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{\n  "text": "a",\n}\n')
    r = omnitok("count", "-m", "gpt-4o", str(p))
    assert r.code == EXIT_ERROR
    assert r.err == f"omnitok: error: {p}: invalid JSON at line 2, column 14: trailing comma is not allowed\n"


def test_empty_array_is_no_records(tmp_path):
    p = tmp_path / "empty.json"
    p.write_text("[\n]\n")
    r = omnitok("count", "-m", "gpt-4o", str(p))
    assert (r.code, r.out, r.err) == (0, b"", f"omnitok: warning: {p}: no records (the input is empty or blank)\n")


def test_document_over_the_cap_is_one_line(tmp_path):
    # 64 MiB of whitespace inside a valid array: written in ~0.1 s, refused before it is parsed.
    p = tmp_path / "big.json"
    with open(p, "wb") as f:
        f.write(b"[\n")
        f.write(b" " * (64 << 20))
        f.write(b'{"text": "a"}]\n')
    r = omnitok("count", "-m", "gpt-4o", str(p))
    assert (r.code, r.out) == (EXIT_ERROR, b"")
    assert r.err == (
        f"omnitok: error: {p}: a JSON document over 64 MiB (it is read whole): "
        "give it as JSONL, one record a line (jq -c '.[]')\n"
    )


def test_add_field_writes_one_line_a_record(tmp_path, ref_o200k):
    p = tmp_path / "req.json"
    p.write_text(json.dumps([{"text": "alpha beta", "n": 10**30}, CHAT], indent=2))
    r = omnitok("count", "-m", "gpt-4o", "--add-field", "tokens", str(p))
    assert r.code == 0
    lines = r.out.splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])  # the stdlib keeps the integer past 64 bits exact
    assert first == {"text": "alpha beta", "n": 10**30, "tokens": len(ref_o200k.encode_ordinary("alpha beta"))}
    assert json.loads(lines[1]) == {**CHAT, "tokens": chat_tokens(ref_o200k, CHAT["messages"])}


def test_max_tokens_lists_json_records_by_line(tmp_path, ref_o200k):
    p = tmp_path / "req.json"
    p.write_text(json.dumps([{"text": "a"}, {"text": "word " * 50}], indent=2))
    r = omnitok("count", "-m", "gpt-4o", "--quiet", "--summary", "--max-tokens", "10", str(p))
    assert r.code == 3
    assert f"  {p}:5: {len(ref_o200k.encode_ordinary('word ' * 50))} tokens" in r.err.splitlines()
