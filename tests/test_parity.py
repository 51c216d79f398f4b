"""One rule per odd input, the same in every front end (issue 24): one corpus of odd records
counted by the command line (JSONL out), the server (`/count-tokens/batch`, a real `omnitok
serve`), Ray (a Parquet dataset) and the Python API (`omnitok.aio.acount_rows`) gives the same
tokens, ids and errors row for row. The rules are the README's ("Input rules")."""

from __future__ import annotations

import asyncio
import codecs

import httpx
import pytest

from omnitok import aio

from .console import omnitok
from .serve_server import Server

# (JSON text of the record, what it tests). Ids past 64 bits, lone surrogates, null and
# non-string texts, a chat with a role no API knows, an empty text, a missing id.
RECORDS = [
    (b'{"id": 1, "text": "hello world"}', "plain"),
    (b'{"id": 18446744073709551616, "text": "big id"}', "an id past 64 bits, kept exactly"),
    (b'{"id": -9223372036854775809, "text": ""}', "a negative id past 64 bits; an empty text"),
    (b'{"id": "s", "text": "\\ud800abc"}', "a lone surrogate: not Unicode text, an error (no id: unread)"),
    (b'{"id": "pair", "text": "\\ud83d\\ude00 ok"}', "a surrogate pair: the emoji"),
    (b'{"id": 3, "text": null}', "a null text: an error"),
    (b'{"id": 4, "text": 5}', "a number as text: an error"),
    (b'{"id": 7, "text": {}}', "an object as text: an error"),
    (b'{"id": 8, "text": []}', "a list as text: a chat, here empty (the reply's priming)"),
    (b'{"id": 9, "text": [1]}', "a list as text whose item is no message: an error"),
    (b'{"id": 5, "messages": [{"role": "wizard", "content": "hi"}]}', "an unknown role: counted as its text"),
    (b'{"id": 6, "messages": [{"role": 7, "content": "hi"}]}', "a role that is no string: an error"),
    (b'{"text": "no id"}', "no id"),
    (b'{"id": 1.5, "text": "a float id is left out"}', "a float id"),
]
MODEL = "gpt-4o"


def _key(row: dict) -> tuple:
    """What must agree: position, id (value and type), tokens, the error's reason."""
    return (row["pos"], row.get("id"), row.get("tokens"), row.get("error"))


def _jsonl(tmp_path):
    path = tmp_path / "odd.jsonl"
    # A BOM first and blank lines between records: not records (the command line and Ray read files).
    path.write_bytes(codecs.BOM_UTF8 + b"\n\n".join(line for line, _ in RECORDS) + b"\n\n  \n")
    return path


def _loads(line: bytes):
    import json

    return json.loads(line)  # the standard library keeps ids past 64 bits and lone surrogates


@pytest.fixture(scope="module")
def cli_rows(tmp_path_factory):
    path = _jsonl(tmp_path_factory.mktemp("parity"))
    r = omnitok("count", "-m", MODEL, str(path), "--on-error", "record")
    assert r.code == 4, r.err
    return [_key(_loads(line)) for line in r.out.splitlines()]


def test_the_python_api_counts_as_the_command_line(cli_rows):
    rows, _ = asyncio.run(aio.acount_rows([_loads(line) for line, _ in RECORDS], MODEL, on_error="record"))
    assert [_key(r) for r in rows] == cli_rows


def test_the_server_counts_as_the_command_line(cli_rows, tmp_path):
    server = Server(tmp_path)
    try:
        body = (
            b'{"model_id": "gpt-4o", "on_error": "record", "records": ['
            + b",".join(line for line, _ in RECORDS)
            + b"]}"
        )
        r = httpx.post(f"{server.url}/count-tokens/batch", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        assert [_key(row) for row in _loads(r.content)["results"]] == cli_rows
    finally:
        server.stop()


def test_the_rules_themselves(cli_rows, ref_o200k):
    by_id = {row[1]: row for row in cli_rows if row[1] is not None}
    assert by_id[18446744073709551616][2] == len(ref_o200k.encode_ordinary("big id"))
    assert by_id[-9223372036854775809][2] == 0
    lone = cli_rows[3]
    assert lone[:3] == (3, None, None) and "lone surrogate" in lone[3]
    assert by_id["pair"][2] == len(ref_o200k.encode_ordinary("\U0001f600 ok"))
    assert "null" in by_id[3][3] and "int" in by_id[4][3]
    assert by_id[5][2] is not None and by_id[6][3] is not None
    assert by_id[7][3] == "field 'text' is object, expected a string or a messages array"
    assert by_id[8][2] == 3  # an empty chat: <|start|>assistant<|message|>, the cookbook's priming
    assert by_id[9][3] == "text[0] is int, expected an object"
    assert [row[1] for row in cli_rows][-2:] == [None, None]  # no id; a float id is left out


def test_a_field_named_twice_is_refused_everywhere(tmp_path):
    path = _jsonl(tmp_path)
    r = omnitok("count", "-m", MODEL, str(path), "-f", "text,text")
    assert r.code == 2 and "given twice" in r.err, r.err
    with pytest.raises(Exception, match="twice"):
        asyncio.run(aio.acount_rows([{"text": "a"}], MODEL, fields=("text", "text")))
