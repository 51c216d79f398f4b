"""A JSON document's record holding a lone surrogate escape is that record's error, and a BOM
after blank lines is its line's error, read from a file or from stdin alike. Found by an
adversarial parity pass: such a document on stdin was counted as one text (exit 0), and named
as a file it was one error for the whole file; a BOM after a blank line was an error in a file
and the sign of text on stdin."""

from __future__ import annotations

import json

import omnitok
from omnitok.records import LONE_SURROGATE
from tests.console import omnitok as console

DOC = b'[{"id": 1, "text": "hello world"},\n {"id": 2, "text": "\\ud800"},\n {"id": 3, "text": "abc"}]\n'


def _rows(r) -> list[dict]:
    return [json.loads(line) for line in r.out.splitlines()]


def test_a_documents_record_with_a_lone_surrogate_is_that_records_error(tmp_path):
    path = tmp_path / "doc.json"
    path.write_bytes(DOC)
    named = console("count", "-m", "gpt-4o", "--format", "jsonl", "--on-error", "record", str(path))
    piped = console("count", "-m", "gpt-4o", "--format", "jsonl", "--on-error", "record", stdin=DOC)
    for r in (named, piped):
        assert r.code == 4, r.err
        rows = _rows(r)
        assert [row.get("id") for row in rows] == [1, None, 3]
        assert rows[0]["tokens"] == 2 and rows[2]["tokens"] == 1
        assert rows[1]["error"] == f"[1]: invalid JSON: {LONE_SURROGATE}" and rows[1]["line"] == 2
    counted = list(omnitok.count_files([str(path)], model="gpt-4o"))
    assert [c.record.error for c in counted] == [None, f"[1]: invalid JSON: {LONE_SURROGATE}", None]


def test_a_bom_after_blank_lines_is_its_lines_error_from_a_file_or_stdin(tmp_path):
    data = b'\n\xef\xbb\xbf{"id": 1, "text": "a"}\n{"id": 2, "text": "b"}\n'
    path = tmp_path / "r.jsonl"
    path.write_bytes(data)
    named = console("count", "-m", "gpt-4o", "--format", "jsonl", "--on-error", "record", str(path))
    piped = console("count", "-m", "gpt-4o", "--format", "jsonl", "--on-error", "record", stdin=data)
    assert named.code == piped.code == 4
    for r in (named, piped):
        rows = _rows(r)
        assert rows[0]["line"] == 2 and "byte order mark (BOM) is not supported" in rows[0]["error"]
        assert rows[1]["id"] == 2 and rows[1]["tokens"] == 1


def test_a_json_file_holding_jsonl_with_a_lone_surrogate_first_is_read_as_jsonl(tmp_path):
    """The twin of the document case, found by rereading the change: a file named .json whose
    first line is a JSONL record holding a lone surrogate was taken for one JSON document (its
    first line did not parse for orjson), and the whole file was one error; the local reader and
    Ray's shards (io.shards._json_kind) now decide as the stdin sniffer does."""
    import pyarrow.fs

    from omnitok.io.shards import _json_kind

    path = tmp_path / "r.json"
    path.write_bytes(b'{"id": 1, "text": "\\ud800"}\n{"id": 2, "text": "ab"}\n')
    r = console("count", "-m", "gpt-4o", "--format", "jsonl", "--on-error", "record", str(path))
    rows = _rows(r)
    assert r.code == 4 and [row.get("id") for row in rows] == [None, 2]
    assert rows[0]["error"] == f"invalid JSON: {LONE_SURROGATE}" and rows[0]["line"] == 1
    assert _json_kind(pyarrow.fs.LocalFileSystem(), str(path)) == "jsonl"
