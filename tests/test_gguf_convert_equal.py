"""GGUF read in bulk and converted fast (omnitok/tokenizers/gguf.py): arrays of strings are cut out
of chunks of the file and arrays of numbers become lists in one call, with every length still
checked before it is used, the same one-line errors at the same byte offsets; tokenizer.json is
written compact (orjson) as the same JSON value the standard library would write.

Small files written here, in-process: the byte offsets in the messages come from the bytes built.
"""

import json
import struct

import pytest

from omnitok.errors import AssetError
from omnitok.tokenizers import gguf


def _s(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def _kv(key: str, kind: int, payload: bytes) -> bytes:
    return _s(key) + struct.pack("<I", kind) + payload


def _strings(key: str, items: list) -> bytes:
    return _kv(key, 9, struct.pack("<IQ", 8, len(items)) + b"".join(map(_s, items)))


def _gguf(*kvs: bytes) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)


def _write(tmp_path, data: bytes, name: str = "v.gguf"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _read_error(tmp_path, data: bytes, name: str = "v.gguf") -> tuple[object, str]:
    """The file written, and the AssetError message read_vocab gives for it."""
    path = _write(tmp_path, data, name)
    with pytest.raises(AssetError) as e:
        gguf.read_vocab(path)
    return path, str(e.value)


# Strings past several chunks, one longer than a chunk, empty ones, and bytes that are not UTF-8
# (kept as surrogate escapes, as the item-by-item reader kept them).
LONG = "L" * (3 * gguf._CHUNK + 5)
ITEMS = [f"t{i}-" * (i % 37 + 1) for i in range(60_000)] + ["", "é", b"\xff\xfe", LONG, "a b", "\n"]


def test_string_arrays_across_chunks(tmp_path):
    assert sum(len(_s(t)) for t in ITEMS) > 4 * gguf._CHUNK
    after = _kv("after", 8, _s("read from where the array ends"))
    meta = gguf.read_metadata(_write(tmp_path, _gguf(_strings("tokens", ITEMS), _strings("empty", []), after)))
    expected = [t.decode("utf-8", errors="surrogateescape") if isinstance(t, bytes) else t for t in ITEMS]
    assert meta == {"tokens": expected, "empty": [], "after": "read from where the array ends"}


@pytest.mark.parametrize(("kind", "fmt"), sorted(gguf._SCALARS.items()))
def test_number_arrays_read_as_struct_reads_them(tmp_path, kind, fmt):
    size = struct.calcsize(fmt)
    raw = bytes(range(256)) * size + b"\x00" * size  # every byte value in every position
    meta = gguf.read_metadata(_write(tmp_path, _gguf(_kv("x", 9, struct.pack("<IQ", kind, len(raw) // size) + raw))))
    expected = [v[0] for v in struct.iter_unpack(fmt, raw)]
    got = meta["x"]
    assert [type(v) for v in got] == [type(v) for v in expected]
    assert [struct.pack(fmt, v) for v in got] == [struct.pack(fmt, v) for v in expected]  # NaNs: bit for bit


def _lying(position: int, length: int, cut: int | None = None) -> tuple[bytes, int]:
    """A token array whose item `position` says `length` bytes; the file, and where that length is."""
    items = [f"token{i}" * 40 for i in range(position)] + ["here", "tail"]
    data = _gguf(_kv("tokenizer.ggml.model", 8, _s("gpt2")), _strings("tokenizer.ggml.tokens", items))
    at = data.rindex(_s("here"))
    data = data[:at] + struct.pack("<Q", length) + data[at + 8 :]
    return (data if cut is None else data[:cut]), at


@pytest.mark.parametrize("position", [1, 9_000])  # in the first chunk; far past it (~3 MB in)
def test_lying_string_lengths_are_the_same_errors(tmp_path, position):
    data, at = _lying(position, gguf.MAX_STRING + 1)
    path, said = _read_error(tmp_path, data, "huge.gguf")
    assert said == (
        f"{path}: malformed GGUF header: a string of {gguf.MAX_STRING + 1:,} bytes at byte {at:,} "
        f"(at most {gguf.MAX_STRING:,} are read)"
    )

    data, at = _lying(position, 1000)
    path, said = _read_error(tmp_path, data, "past.gguf")
    assert said == (
        f"{path}: truncated GGUF header: a string of 1,000 bytes at byte {at + 8:,} runs past the end of the "
        f"file ({len(data):,} bytes)"
    )

    for cut in (at, at + 3, at + 10):  # before the length, inside it, inside the string
        data, at = _lying(position, 4, cut)
        path, said = _read_error(tmp_path, data, f"cut{cut}.gguf")
        what, where = ("a value", at) if cut < at + 8 else ("a string of 4 bytes", at + 8)
        assert said == (
            f"{path}: truncated GGUF header: {what} at byte {where:,} runs past the end of the file ({cut:,} bytes)"
        )


def test_every_cut_of_a_vocabulary_is_one_error(tmp_path):
    data = _gguf(
        _kv("tokenizer.ggml.model", 8, _s("gpt2")),
        _strings("tokenizer.ggml.tokens", ["a", "b", "ab", "é"]),
        _kv("tokenizer.ggml.scores", 9, struct.pack("<IQ4f", 6, 4, 0, -1, -2, -3)),
        _kv("tokenizer.ggml.token_type", 9, struct.pack("<IQ4i", 5, 4, 1, 1, 1, 1)),
        _strings("tokenizer.ggml.merges", ["a b"]),
    )
    assert gguf.read_vocab(_write(tmp_path, data)).tokens == ["a", "b", "ab", "é"]
    for cut in range(len(data)):
        path, said = _read_error(tmp_path, data[:cut])
        kind = "not a GGUF file" if cut < 4 else "truncated GGUF header: "
        assert said.startswith(f"{path}: {kind}"), (cut, said)


def _vocab(tmp_path, tokens: list, merges: list[str], model: str = "gpt2"):
    kvs = [_kv("tokenizer.ggml.model", 8, _s(model)), _strings("tokenizer.ggml.tokens", tokens)]
    if merges:
        kvs.append(_strings("tokenizer.ggml.merges", merges))
    return _write(tmp_path, _gguf(*kvs))


def test_tokens_not_utf8_are_one_error_and_leave_nothing(tmp_path, monkeypatch):
    """A tokenizer.json holds text: a token that is not UTF-8 is said (it was a UnicodeEncodeError
    traceback), and no half-written directory stays in the cache. SentencePiece keeps the bytes."""
    monkeypatch.setenv("OMNITOK_HOME", str(tmp_path / "home"))
    path = _vocab(tmp_path, ["a", "b", b"\xff"], ["a b"])
    with pytest.raises(AssetError) as e:
        gguf.converted_dir(path)
    assert str(e.value) == f"{path}: malformed GGUF tokenizer: token 2 is not UTF-8 text ('\\udcff')"
    assert list((tmp_path / "home" / "assets" / "gguf").iterdir()) == []

    spm = gguf.convert(gguf.read_vocab(_vocab(tmp_path, ["<unk>", "a", b"\xff"], [], "llama")), tmp_path / "spm")
    assert b"\n\x01\xff" in (spm / "tokenizer.model").read_bytes()  # the piece field: 1 byte, 0xff


def test_merge_without_a_space(tmp_path):
    path = _vocab(tmp_path, ["a", "b", "ab"], ["a b", "ab"])
    with pytest.raises(AssetError) as e:
        gguf.convert(gguf.read_vocab(path), tmp_path / "out")
    assert str(e.value) == f"{path}: malformed merge 'ab'"


def test_compact_tokenizer_json_is_the_stdlib_value(tmp_path):
    """Quotes, backslashes, control characters, U+2028, astral and combining characters: the file
    written with orjson parses to the document the standard library writes, and loads in tokenizers
    to the same ids."""
    from tokenizers import Tokenizer

    odd = ['"', "\\", "\x00", "\x1f", "\x7f", "\u2028", "😀", "e\u0301", "\t", "Ġ", "a", "b", "ab", "abĠ"]
    vocab = gguf.read_vocab(_vocab(tmp_path, odd, ["a b", "ab Ġ"]))
    doc, _ = gguf._bpe_json(vocab)
    out = gguf.convert(vocab, tmp_path / "out")
    text = (out / "tokenizer.json").read_text(encoding="utf-8")
    assert json.loads(text) == json.loads(json.dumps(doc, ensure_ascii=False))
    assert json.loads(text)["model"]["merges"] == [["a", "b"], ["ab", "Ġ"]]
    fast, reference = Tokenizer.from_str(text), Tokenizer.from_str(json.dumps(doc, ensure_ascii=False))
    sample = 'ab ab"\\\x00 😀 é a b'
    assert fast.encode(sample).ids == reference.encode(sample).ids
