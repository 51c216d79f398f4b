"""--add-field gives every input record back as it was written, plus its count."""

from __future__ import annotations

from .console import omnitok


def test_fields_come_back_byte_for_byte(tmp_path, ref_o200k):
    lines = [
        b'{"id": 123456789012345678901234567890, "text": "hi there", "f": 1.10, "u": "\\u00e9"}',
        b'{ "text" : "second" }',
        b'\xef\xbb\xbf{"text": "after a BOM on line 1"}',
    ]
    p = tmp_path / "in.jsonl"
    p.write_bytes(lines[2] + b"\n" + lines[0] + b"\r\n" + lines[1] + b"\n")
    r = omnitok("count", str(p), "--add-field", "n")
    assert (r.code, r.err) == (0, "")
    n = [len(ref_o200k.encode_ordinary(t)) for t in ("after a BOM on line 1", "hi there", "second")]
    assert r.out.splitlines() == [
        b'{"text": "after a BOM on line 1","n":%d}' % n[0],
        lines[0][:-1] + b',"n":%d}' % n[1],
        b'{ "text" : "second","n":%d}' % n[2],
    ]


def test_an_existing_field_is_replaced_numbers_as_written(tmp_path, ref_o200k):
    p = tmp_path / "in.jsonl"
    p.write_bytes(b'{"text": "y", "n": 5, "big": 123456789012345678901234567890, "g": 2.50}\n')
    r = omnitok("count", str(p), "--add-field", "n")
    assert r.code == 0
    n = len(ref_o200k.encode_ordinary("y"))
    assert r.out == b'{"text":"y","n":%d,"big":123456789012345678901234567890,"g":2.50}\n' % n
