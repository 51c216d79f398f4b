"""Tokenizers inside GGUF files (llama.cpp's model format), converted for exact offline counts.

A GGUF file carries its model's vocabulary in its metadata (`tokenizer.ggml.*`). This module
reads that metadata only (the header; tensors are never touched, so a multi-GB model file costs
what its vocabulary costs) and writes the equivalent files the Hugging Face strategy reads:

- `gpt2` (byte-level BPE: Llama 3, Qwen2, GPT-2 style) -> tokenizer.json, with the
  pre-tokenizer regex the `tokenizer.ggml.pre` name stands for in llama.cpp;
- `llama` (SentencePiece BPE: Llama 2, Mistral v1, Phi-3) -> tokenizer.model, a SentencePiece
  model built from the pieces, scores and types, counted by `sentencepiece` itself;
- `gemma4` (SentencePiece-style BPE with merges and byte fallback) -> tokenizer.json.

Plus tokenizer_config.json with the BOS/EOS tokens, whether BOS is added, and the chat template.
Counts equal llama.cpp's `llama_tokenize` (checked against llama.cpp's own test vectors).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import BinaryIO

import orjson

from ..errors import AssetError, shown

CONVERTER_VERSION = 3  # 3: tokenizer.json written compact (orjson); the same JSON value as 2
MAGIC = b"GGUF"

# GGUF value types -> struct format (None: variable length).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# The same formats as memoryview codes, where the host's byte order is GGUF's (little-endian): a
# whole array of them becomes a list in one call. Booleans stay with struct (any nonzero byte).
_NATIVE = (
    {f: f[1] for f in _SCALARS.values() if f != "<?" and struct.calcsize(f[1]) == struct.calcsize(f)}
    if sys.byteorder == "little"
    else {}
)
_U64 = struct.Struct("<Q")
_CHUNK = 1 << 20  # bytes read at a time for an array of strings
# What one header value may hold: far above any real tokenizer (vocabularies of ~260k tokens, chat
# templates of kilobytes), and far below what would exhaust memory.
MAX_STRING = 16 << 20  # bytes of one string
MAX_ARRAY = 1 << 24  # items of one array
MAX_DEPTH = 4  # arrays within arrays

# llama.cpp pre-tokenizer names -> the regex of the model's original tokenizer.json.
_LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_QWEN2 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# name -> (regex, ignore_merges, add_bos by default)
PRE_TOKENIZERS = {
    "llama-bpe": (_LLAMA3, True, True),
    "llama3": (_LLAMA3, True, True),
    "smaug-bpe": (_LLAMA3, True, True),
    "qwen2": (_QWEN2, False, False),
    "gpt-2": (_GPT2, False, False),
    "default": (_GPT2, False, False),
}
MODELS = ("gpt2", "llama", "gemma4")

# GGUF token types (the same numbering as SentencePiece's piece types).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class GGUFVocab:
    path: Path
    model: str
    pre: str | None
    tokens: list[str]
    types: list[int]
    scores: list[float] = field(default_factory=list)
    merges: list[str] = field(default_factory=list)
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    add_bos: bool | None = None
    add_eos: bool | None = None
    add_space_prefix: bool | None = None
    chat_template: str | None = None


# --- reading --------------------------------------------------------------------------------


class _Reader:
    """Reads the header of one GGUF file. Every length in it (strings, arrays, the key count) comes
    from the file and is checked against what is left of the file and against the limits above
    before anything is read or allocated for it: a damaged or hostile file is one AssetError,
    never a MemoryError, OverflowError or RecursionError."""

    def __init__(self, fh: BinaryIO, path: Path):
        self.fh, self.path = fh, path
        self.size = os.fstat(fh.fileno()).st_size

    def left(self) -> int:
        return self.size - self.fh.tell()

    def truncated(self, what: str, offset: int) -> AssetError:
        return AssetError(
            f"{self.path}: truncated GGUF header: {what} at byte {offset:,} runs past the end of the file "
            f"({self.size:,} bytes)"
        )

    def malformed(self, what: str) -> AssetError:
        return AssetError(f"{self.path}: malformed GGUF header: {what}")

    def take(self, n: int, what: str = "a value") -> bytes:
        offset = self.fh.tell()
        if n > self.size - offset:
            raise self.truncated(what, offset)
        data = self.fh.read(n)
        if len(data) != n:  # the file shrank while it was read
            raise self.truncated(what, offset)
        return data

    def scalar(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        offset = self.fh.tell()
        n = self.scalar("<Q")
        if n > MAX_STRING:
            raise self.malformed(f"a string of {n:,} bytes at byte {offset:,} (at most {MAX_STRING:,} are read)")
        return self.take(n, f"a string of {n:,} bytes").decode("utf-8", errors="surrogateescape")

    def value(self, kind: int, depth: int = 0):
        if kind == _STRING:
            return self.string()
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind != _ARRAY:
            raise AssetError(f"{self.path}: unknown GGUF value type {kind}")
        offset = self.fh.tell()
        item, n = self.scalar("<I"), self.scalar("<Q")
        if depth >= MAX_DEPTH:
            raise self.malformed(f"arrays nested more than {MAX_DEPTH} deep at byte {offset:,}")
        if item not in _SCALARS and item not in (_STRING, _ARRAY):
            raise AssetError(f"{self.path}: unknown GGUF value type {item}")
        if n > MAX_ARRAY:
            raise self.malformed(f"an array of {n:,} items at byte {offset:,} (at most {MAX_ARRAY:,} are read)")
        # the fewest bytes each item takes: no count can promise more items than the file holds
        least = struct.calcsize(_SCALARS[item]) if item in _SCALARS else (8 if item == _STRING else 12)
        if n * least > self.left():
            raise self.truncated(f"an array of {n:,} items", offset)
        if item in _SCALARS:
            fmt = _SCALARS[item]
            data = self.take(n * struct.calcsize(fmt))
            if fmt in _NATIVE:  # one C pass: memoryview reads the host's order, which is little-endian
                return memoryview(data).cast(_NATIVE[fmt]).tolist()
            return [v[0] for v in struct.iter_unpack(fmt, data)]
        if item == _STRING:
            return self.strings(n)
        return [self.value(item, depth + 1) for _ in range(n)]

    def strings(self, n: int) -> list[str]:
        """`n` strings in a row (a vocabulary, its merges), read a chunk at a time and cut out of
        each chunk: the checks of string() for each string, with the same errors, without two file
        reads and two tell()s per token."""
        out: list[str] = []
        append, unpack = out.append, _U64.unpack_from
        buf, pos, end = b"", 0, 0  # buf holds the file from byte `base`; pos: the next string's length
        base = self.fh.tell()
        for _ in range(n):
            if pos + 8 > end:
                buf, base, end = self.refill(buf, pos, base, 8, "a value")
                pos = 0
            (k,) = unpack(buf, pos)
            if k > MAX_STRING:
                raise self.malformed(
                    f"a string of {k:,} bytes at byte {base + pos:,} (at most {MAX_STRING:,} are read)"
                )
            start = pos + 8
            pos = start + k
            if pos > end:
                buf, base, end = self.refill(buf, start, base, k, f"a string of {k:,} bytes")
                start, pos = 0, k
            try:
                append(buf[start:pos].decode())
            except UnicodeDecodeError:
                append(buf[start:pos].decode("utf-8", errors="surrogateescape"))
        self.fh.seek(base + pos)
        return out

    def refill(self, buf: bytes, keep: int, base: int, need: int, what: str) -> tuple[bytes, int, int]:
        """buf from `keep` on, followed by the next chunk of the file: at least `need` bytes from
        `keep`, or the error take() gives for them (`what` at that offset). Returns the new buffer,
        the file offset of its first byte and its length."""
        offset = base + keep
        have = len(buf) - keep
        if need > self.size - offset:
            raise self.truncated(what, offset)
        want = min(max(need - have, _CHUNK), self.size - offset - have)
        self.fh.seek(offset + have)
        more = self.fh.read(want)
        if have + len(more) < need:  # the file shrank while it was read
            raise self.truncated(what, offset)
        buf = buf[keep:] + more if have else more
        return buf, offset, len(buf)


def read_metadata(path: Path) -> dict:
    """The key/value metadata of a GGUF file (its header; tensor data is not read)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return _read_header(_Reader(fh, path))
    except OSError as e:
        raise AssetError(f"{path}: cannot read: {e.strerror}") from None


def _read_header(r: _Reader) -> dict:
    path, fh = r.path, r.fh
    if fh.read(4) != MAGIC:
        raise AssetError(f"{path}: not a GGUF file (no GGUF magic)")
    version = r.scalar("<I")
    if version not in (2, 3):
        raise AssetError(f"{path}: GGUF version {version} is not supported (2 and 3 are)")
    r.scalar("<Q")  # tensor count
    offset = fh.tell()
    n_kv = r.scalar("<Q")
    if n_kv * 13 > r.left():  # a key (8 + 1 bytes at least), its type (4)
        raise r.truncated(f"{n_kv:,} metadata entries", offset)
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.scalar("<I"))
    return meta


_STR, _INT, _NUMBER = frozenset({str}), frozenset({int}), frozenset({int, float})  # bool is not a number here


def read_vocab(path: Path) -> GGUFVocab:
    meta = read_metadata(path)
    g = lambda key, default=None: meta.get(f"tokenizer.ggml.{key}", default)  # noqa: E731
    model = g("model")
    if model is None or "tokenizer.ggml.tokens" not in meta:
        raise AssetError(f"{path}: this GGUF file carries no tokenizer (no tokenizer.ggml.model / tokens)")
    if model not in MODELS:
        raise AssetError(
            f"{path}: GGUF tokenizer model {shown(repr(model), quote=False)} is not supported (supported: {', '.join(MODELS)})",
            hint="count with the model's Hugging Face tokenizer files instead (--tokenizer DIR)",
        )

    def bad(key: str, what: str) -> AssetError:
        return AssetError(f"{path}: malformed GGUF tokenizer: tokenizer.ggml.{key} {what}")

    def array(key: str, kinds: frozenset[type], what: str, length: int | None = None) -> list:
        value = g(key)
        if value is None:
            return []
        # the reader makes only the exact types (str, int, float, bool, list): one C pass over them
        if not isinstance(value, list) or not set(map(type, value)) <= kinds:
            raise bad(key, f"is not an array of {what}")
        if length is not None and len(value) != length:
            raise bad(key, f"has {len(value):,} items for {length:,} tokens")
        return value

    tokens = array("tokens", _STR, "strings")
    n = len(tokens)

    def token_id(key: str) -> int | None:
        value = g(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n:
            raise bad(key, f"is {shown(repr(value), quote=False)}, not a token id (the vocabulary has {n:,} tokens)")
        return value

    def text(key: str, value) -> str | None:
        if value is not None and not isinstance(value, str):
            raise bad(key, "is not a string")
        return value

    chat_template = meta.get("tokenizer.chat_template")
    if chat_template is not None and not isinstance(chat_template, str):
        raise AssetError(f"{path}: malformed GGUF tokenizer: tokenizer.chat_template is not a string")
    return GGUFVocab(
        path=Path(path),
        model=model,
        pre=text("pre", g("pre")),
        tokens=tokens,
        types=array("token_type", _INT, "integers", n) or [NORMAL] * n,
        scores=array("scores", _NUMBER, "numbers", n),
        merges=array("merges", _STR, "strings"),
        bos_id=token_id("bos_token_id"),
        eos_id=token_id("eos_token_id"),
        unk_id=token_id("unknown_token_id"),
        add_bos=g("add_bos_token"),
        add_eos=g("add_eos_token"),
        add_space_prefix=g("add_space_prefix"),
        chat_template=chat_template,
    )


# --- converting ------------------------------------------------------------------------------


def _added_tokens(v: GGUFVocab) -> list[dict]:
    """Control and user-defined tokens: matched whole in the text, as llama.cpp does."""
    return [
        {
            "id": i,
            "content": tok,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": t == CONTROL,
        }
        for i, (tok, t) in enumerate(zip(v.tokens, v.types, strict=True))
        if t in (CONTROL, USER_DEFINED)
    ]


def _post_processor(v: GGUFVocab, add_bos: bool, add_eos: bool) -> dict | None:
    bos = [v.bos_id] if add_bos and v.bos_id is not None else []
    eos = [v.eos_id] if add_eos and v.eos_id is not None else []
    if not bos and not eos:
        return None

    def special(tid: int) -> dict:
        return {"SpecialToken": {"id": v.tokens[tid], "type_id": 0}}

    single = [*map(special, bos), {"Sequence": {"id": "A", "type_id": 0}}, *map(special, eos)]
    specials = {v.tokens[t]: {"id": v.tokens[t], "ids": [t], "tokens": [v.tokens[t]]} for t in bos + eos}
    return {"type": "TemplateProcessing", "single": single, "pair": single, "special_tokens": specials}


def _merges(v: GGUFVocab) -> list[tuple[str, str]]:
    """Merge "a b" -> ("a", "b"), at the first space. Tuples of strings, which the garbage collector
    stops tracking, where 500k lists made every collection walk them (4x the time)."""
    if not all(map(str.__contains__, v.merges, repeat(" "))):
        m = next(m for m in v.merges if " " not in m)
        raise AssetError(f"{v.path}: malformed merge {m!r}")
    return [(a, b) for a, _, b in map(str.partition, v.merges, repeat(" "))]


def _bpe_json(v: GGUFVocab) -> tuple[dict, bool]:
    """tokenizer.json for the byte-level BPE (gpt2) and Gemma 4 models, and whether BOS is added."""
    vocab = dict(zip(v.tokens, range(len(v.tokens)), strict=True))  # a token written twice: its last id
    if v.model == "gpt2":
        pre = v.pre or "default"
        if pre not in PRE_TOKENIZERS:
            raise AssetError(
                f"{v.path}: GGUF pre-tokenizer {pre!r} is not supported "
                f"(supported: {', '.join(sorted(PRE_TOKENIZERS))})",
                hint="count with the model's Hugging Face tokenizer files instead (--tokenizer DIR)",
            )
        regex, ignore_merges, bos_default = PRE_TOKENIZERS[pre]
        add_bos = bos_default if v.add_bos is None else bool(v.add_bos)
        model = {"type": "BPE", "vocab": vocab, "merges": _merges(v), "ignore_merges": ignore_merges}
        normalizer = None
        pre_tokenizer = {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        }
    else:  # gemma4: spaces -> U+2581, BPE over each run of non-newlines and each run of newlines
        add_bos = True  # llama.cpp forces BOS for Gemma 4 whatever the file says
        unk = v.tokens[v.unk_id] if v.unk_id is not None else None
        model = {
            "type": "BPE",
            "vocab": vocab,
            "merges": _merges(v),
            "byte_fallback": True,
            "unk_token": unk,
            "ignore_merges": False,
        }
        normalizer = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
        # llama.cpp splits the text into runs of newlines and runs of the rest before merging. When
        # no token mixes the two (Gemma 4's vocabulary), no merge can cross such a boundary and the
        # split changes nothing; leaving it out lets gigatoken load the file (it has no Split for
        # SentencePiece-style models), the faster engine (reference/engines.md).
        mixed = any("\n" in tok and tok.strip("\n") for tok in v.tokens)
        pre_tokenizer = (
            {"type": "Split", "pattern": {"Regex": r"\n+"}, "behavior": "Isolated", "invert": False} if mixed else None
        )
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": _added_tokens(v),
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": _post_processor(v, add_bos, bool(v.add_eos)),
        "decoder": None,
        "model": model,
    }
    return doc, add_bos


# A SentencePiece ModelProto, written with the protobuf wire format directly (no protobuf runtime).


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(num: int, wire: int, payload: bytes) -> bytes:
    return _varint(num << 3 | wire) + payload


def _pb_int(num: int, value: int) -> bytes:
    return _field(num, 0, _varint(value))


def _pb_bytes(num: int, value: bytes) -> bytes:
    return _field(num, 2, _varint(len(value)) + value)


def _pb_float(num: int, value: float) -> bytes:
    return _field(num, 5, struct.pack("<f", value))


def _sentencepiece_model(v: GGUFVocab) -> tuple[bytes, bool]:
    """The SentencePiece BPE model the GGUF `llama` vocabulary came from, and whether BOS is added."""
    unk_id = v.unk_id if v.unk_id is not None else 0
    scores = v.scores or [0.0] * len(v.tokens)
    pieces = bytearray()
    for i, (tok, kind, score) in enumerate(zip(v.tokens, v.types, scores, strict=True)):
        kind = UNKNOWN if i == unk_id else (NORMAL if kind == UNKNOWN or kind not in (1, 3, 4, 5, 6) else kind)
        body = _pb_bytes(1, tok.encode("utf-8", errors="surrogateescape")) + _pb_float(2, score) + _pb_int(3, kind)
        pieces += _pb_bytes(1, body)
    has_bytes = any(t == BYTE for t in v.types)
    trainer = (
        _pb_int(3, 2)  # model_type: BPE
        + _pb_int(4, len(v.tokens))
        + _pb_int(35, int(has_bytes))  # byte_fallback
        + _pb_int(40, unk_id)
        + _pb_int(41, v.bos_id if v.bos_id is not None else -1)
        + _pb_int(42, v.eos_id if v.eos_id is not None else -1)
        + _pb_int(43, -1)  # pad_id: none
    )
    add_prefix = True if v.add_space_prefix is None else bool(v.add_space_prefix)
    normalizer = (
        _pb_bytes(1, b"identity")
        + _pb_int(3, int(add_prefix))  # add_dummy_prefix
        + _pb_int(4, 0)  # remove_extra_whitespaces: llama.cpp keeps them
        + _pb_int(5, 1)  # escape_whitespaces
    )
    proto = bytes(pieces) + _pb_bytes(2, trainer) + _pb_bytes(3, normalizer)
    add_bos = True if v.add_bos is None else bool(v.add_bos)
    return proto, add_bos


def _config(v: GGUFVocab, add_bos: bool) -> dict:
    def tok(tid):
        return v.tokens[tid] if tid is not None and 0 <= tid < len(v.tokens) else None

    config = {
        "add_bos_token": add_bos,
        "add_eos_token": bool(v.add_eos),
        "bos_token": tok(v.bos_id),
        "eos_token": tok(v.eos_id),
        "unk_token": tok(v.unk_id),
        "source": f"converted by omnitok from GGUF ({v.model}, pre={v.pre})",
    }
    if v.chat_template:
        config["chat_template"] = v.chat_template
    return {k: val for k, val in config.items() if val is not None}


def _json_bytes(v: GGUFVocab, doc: dict) -> bytes:
    """tokenizer.json's bytes (compact UTF-8, orjson: 15 MB for Gemma 4 in ~0.1 s, not 1.6 s)."""
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:  # a string orjson cannot write: bytes that are not UTF-8
        pass
    for what, items in (("token", v.tokens), ("merge", v.merges)):
        for i, item in enumerate(items):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise AssetError(
                        f"{v.path}: malformed GGUF tokenizer: {what} {i:,} is not UTF-8 text "
                        f"({shown(repr(item), quote=False)})"
                    ) from None
    raise AssetError(f"{v.path}: malformed GGUF tokenizer: it cannot be written as tokenizer.json")


def convert(v: GGUFVocab, out_dir: Path) -> Path:
    """Write the tokenizer files for `v` into out_dir (created); returns out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if v.model == "llama":
        proto, add_bos = _sentencepiece_model(v)
        (out_dir / "tokenizer.model").write_bytes(proto)
    else:
        doc, add_bos = _bpe_json(v)
        (out_dir / "tokenizer.json").write_bytes(_json_bytes(v, doc))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(_config(v, add_bos), ensure_ascii=False), "utf-8")
    return out_dir


def _header_digest(path: Path) -> str:
    """Identity of a GGUF file for the conversion cache: size, mtime and its first 16 MiB."""
    st = path.stat()
    h = hashlib.blake2b(f"{st.st_size}:{st.st_mtime_ns}:v{CONVERTER_VERSION}".encode(), digest_size=16)
    with open(path, "rb") as fh:
        h.update(fh.read(16 << 20))
    return h.hexdigest()


def converted_dir(path: Path) -> Path:
    """The converted tokenizer directory for a GGUF file, cached under $OMNITOK_HOME/assets/gguf/
    (where that cannot be written: in a temporary directory for this process, said once)."""
    from ..assets.store import omnitok_home

    path = Path(path).expanduser()
    try:
        digest = _header_digest(path)
    except OSError as e:
        raise AssetError(f"{path}: cannot read: {e.strerror or e}") from None
    target = omnitok_home() / "assets" / "gguf" / digest
    if (target / "tokenizer_config.json").is_file():
        return target
    vocab = read_vocab(path)
    try:
        return _convert_into(vocab, target)
    except OSError as e:  # $OMNITOK_HOME not writable: convert into a temporary directory
        try:
            return _convert_into(vocab, _scratch(target.parent, e) / digest)
        except OSError as e2:
            raise AssetError(
                f"{target.parent}: cannot write the converted tokenizer ({e.strerror or e}), nor can the "
                f"temporary directory {tempfile.gettempdir()} ({e2.strerror or e2}); this directory "
                "(or OMNITOK_HOME) must be writable"
            ) from None


def _convert_into(vocab: GGUFVocab, target: Path) -> Path:
    """Convert into a temporary directory beside `target` and rename it to `target`."""
    if (target / "tokenizer_config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        convert(vocab, tmp)
        os.replace(tmp, target)
    except BaseException as e:  # a half-written directory is never left behind
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        # an OSError where another process converted it first: its directory is as good
        if not isinstance(e, OSError) or not (target / "tokenizer_config.json").is_file():
            raise
    return target


_SCRATCH: list[Path] = []  # this process's temporary directory for conversions, once made


def _scratch(home: Path, cause: OSError) -> Path:
    """A temporary directory for this process's conversions, for when $OMNITOK_HOME cannot be
    written (said once on stderr); removed when the process that made it exits."""
    if not _SCRATCH:
        import atexit
        import shutil

        from .. import notices

        made = Path(tempfile.mkdtemp(prefix="omnitok-gguf-"))
        owner = os.getpid()  # a forked worker exiting must not remove its parent's files
        atexit.register(lambda: os.getpid() == owner and shutil.rmtree(made, ignore_errors=True))
        _SCRATCH.append(made)
        notices.warn_once(
            "gguf-scratch",
            f"{home} is not writable ({cause.strerror or cause}): the GGUF tokenizer is converted into a "
            "temporary directory for this run only (make OMNITOK_HOME writable to keep the conversion)",
        )
    return _SCRATCH[0]
