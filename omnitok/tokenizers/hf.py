"""Hugging Face tokenizers, exact offline.

Counts equal `len(AutoTokenizer.from_pretrained(dir)(text).input_ids)`: the special tokens the
tokenizer's post-processor adds (BOS, ...) are included unless the caller leaves them out.
Engines, fastest first: gigatoken on tokenizer.json, then the `tokenizers` library (the
reference); for models with no tokenizer.json, `sentencepiece` on their tokenizer.model (BOS/EOS
as tokenizer_config.json's add_bos_token / add_eos_token say), else transformers' AutoTokenizer
(vocab.json + merges.txt); no torch is needed. A GGUF file is converted to these files first
(omnitok/tokenizers/gguf.py).

A tokenizer.json may set padding (all-MiniLM-L6-v2: every text padded to 128) and truncation;
they shape model inputs, not token counts, so every engine counts with both off.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path

from ..errors import AssetError, UsageError
from .base import EngineStrategy, cut_spans
from .unicode_guard import ReferenceGuarded

HF_RULE_VERSION = 2  # 2: padding and truncation off (counts of such tokenizer.json files changed)

# transformers prints an advisory on import when torch is absent; counting never needs torch.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
HF_ENGINES = ("auto", "gigatoken", "tokenizers", "sentencepiece", "transformers")


def _template_specials(proc: dict | None) -> int | None:
    """Special tokens a tokenizer.json post-processor adds to a single sequence, or None if unknown."""
    if proc is None:
        return 0
    kind = proc.get("type")
    if kind == "TemplateProcessing":
        return sum(1 for piece in proc.get("single", []) if "SpecialToken" in piece)
    if kind in ("BertProcessing", "RobertaProcessing"):
        return 2
    if kind == "ByteLevel":
        return 0
    if kind == "Sequence":
        parts = [_template_specials(p) for p in proc.get("processors", [])]
        return None if None in parts else sum(parts)
    return None


class _Gigatoken(ReferenceGuarded):
    name = "gigatoken"

    def __init__(self, path: Path, doc: dict | None = None, data: bytes | None = None):
        # gigatoken 0.10 ignores padding and truncation; it is given a tokenizer.json without
        # them all the same, so that no later version can pad or cut a count. `doc` is then the
        # whole document (HFStrategy parses it all when the head says it pads or truncates).
        if doc is not None and _shapes_output(doc):
            # orjson: ~10x json.dumps on a 7 MB file; json for what only its parser read (NaN,
            # integers past 64 bits: orjson would write null or refuse them)
            import orjson

            self._json: bytes | str | None = (
                json.dumps(_unshaped(doc), ensure_ascii=False)
                if isinstance(doc, _StdlibParsed)
                else orjson.dumps(_unshaped(doc))
            )
        else:
            self._json = data  # the bytes already read: not read again (None: the file)
        self._path = path
        self._lend()  # the first instance now: a bad file fails here, not at the first count

    def _encoder(self):
        import gigatoken
        import numpy  # noqa: F401  (before the first encode: see engines.GigatokenEngine._encoder)

        tok = (
            gigatoken.Tokenizer.from_json(self._json)
            if self._json is not None
            else gigatoken.Tokenizer(str(self._path))
        )
        self.fast_vocab_size = tok.vocab_size  # without loading the reference (families.gemini's check)
        # The Rust backend's encode: the wrapper's adds a Python call to every text.
        return getattr(tok, "_backend", tok).encode

    def _reference_factory(self):  # Unicode the two engines' tables class apart: `tokenizers` decides
        return _tokenizers_for(self._path)


_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@functools.cache
def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: the byte each character of a byte-level BPE
    vocabulary stands for (printable bytes as themselves, the others from U+0100 on)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _piece_reader(tok):
    """A function giving one token of a `tokenizers` Tokenizer as the bytes it stands for: an added
    token's content; a byte-level piece through GPT-2's alphabet; a byte-fallback piece (<0xE4>)
    as its byte; SentencePiece's U+2581 as a space; else the tokenizer's decoding of it alone.
    KeyError for an id the vocabulary does not have."""
    added = {i: t.content.encode() for i, t in tok.get_added_tokens_decoder().items()}
    decoder = tok.decoder.__getstate__().decode() if tok.decoder is not None else ""
    alphabet = _byte_level_alphabet() if "ByteLevel" in decoder else {}
    byte_fallback = "ByteFallback" in decoder
    metaspace = "\u2581" in decoder or "\\u2581" in decoder  # Metaspace, or Replace("\u2581", " ")

    def piece_bytes(token_id: int) -> bytes:
        if token_id in added:
            return added[token_id]
        piece = tok.id_to_token(token_id)
        if piece is None:
            raise KeyError(token_id)
        if alphabet and all(c in alphabet for c in piece):
            return bytes(alphabet[c] for c in piece)
        match = _BYTE_PIECE.fullmatch(piece) if byte_fallback else None
        if match:
            return bytes([int(match[1], 16)])
        if metaspace:
            return piece.replace("\u2581", " ").encode()
        return tok.decode([token_id], skip_special_tokens=False).encode()

    return piece_bytes


def _inferred_decoder(tok):
    """A decoder for a tokenizer.json that has none (omnitok's GGUF conversions write none):
    byte-level BPE's, or U+2581 as a space with byte fallback (Gemma 4); else None."""
    from tokenizers import decoders

    def state(part) -> str:
        return part.__getstate__().decode() if part is not None else ""

    shape = state(tok.pre_tokenizer) + state(tok.normalizer)
    if "ByteLevel" in shape:
        return decoders.ByteLevel()
    if "\u2581" in shape or "\\u2581" in shape:
        return decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    return None


class _Tokenizers:
    name = "tokenizers"

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        try:
            self.tok = Tokenizer.from_file(str(path))
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exceptions ("Model missing")
            raise AssetError(f"{path}: not a tokenizer.json the tokenizers library can load ({e})") from None
        self.tok.no_padding()
        self.tok.no_truncation()
        if self.tok.decoder is None:  # decoding only: a decoder never changes ids or counts
            self.tok.decoder = _inferred_decoder(self.tok)
        self._piece_bytes = None

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_cuts(self, text: str) -> tuple[list[int], list[int | None]]:
        e = self.tok.encode(text, add_special_tokens=False)
        return e.ids, cut_spans(e.offsets)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        if self._piece_bytes is None:
            self._piece_bytes = _piece_reader(self.tok)
        return self._piece_bytes(token_id)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)


# One _Tokenizers a tokenizer.json a process, while anything holds it: the `tokenizers` engine, the
# specials probe of a gigatoken strategy and gigatoken's reference for rare text share one load
# (seconds for a 150,000-token vocabulary) instead of one each. Keyed by the file's identity.
_LOADED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_LOADED_LOCK = threading.Lock()


def _tokenizers_for(path: Path) -> _Tokenizers:
    st = path.stat()
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _LOADED_LOCK:
        found = _LOADED.get(key)
    if found is None:
        found = _Tokenizers(path)
        with _LOADED_LOCK:
            found = _LOADED.setdefault(key, found)
    return found


class _SentencePiece:
    name = "sentencepiece"

    def __init__(self, path: Path):
        try:
            import sentencepiece as spm
        except ImportError:
            raise AssetError(
                f"{path} is a SentencePiece model; reading it needs sentencepiece", hint="pip install 'omnitok[hf]'"
            ) from None
        try:
            self._sp = sp = spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as e:
            raise AssetError(f"{path}: not a SentencePiece model: {e}") from None
        # Control pieces (<s>, </s>, ...) written in a text, as a chat template writes them, are one
        # token each, as transformers' added tokens are; SentencePiece alone would spell them out.
        controls = sorted(
            (sp.id_to_piece(i) for i in range(sp.get_piece_size()) if sp.is_control(i) and sp.id_to_piece(i)),
            key=len,
            reverse=True,
        )
        self._controls = re.compile("|".join(map(re.escape, controls))) if controls else None

    def _count_one(self, text: str) -> int:
        parts = self._controls.split(text)
        return len(parts) - 1 + sum(len(ids) for ids in self._sp.encode([p for p in parts if p]))

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        if self._controls is not None and any(self._controls.search(t) for t in texts):
            return [self._count_one(t) for t in texts]
        return [len(ids) for ids in self._sp.encode(list(texts))]

    # No encode_cuts: offsets need SentencePiece's protobuf output (and protobuf); omnitok.tokens
    # finds the cuts by re-encoding prefixes instead.
    def encode(self, text: str) -> list[int]:
        sp = self._sp
        if self._controls is None or not self._controls.search(text):
            return sp.encode(text)
        ids: list[int] = []
        pos = 0
        for m in self._controls.finditer(text):
            if m.start() > pos:
                ids += sp.encode(text[pos : m.start()])
            ids.append(sp.piece_to_id(m.group()))
            pos = m.end()
        if pos < len(text):
            ids += sp.encode(text[pos:])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """SentencePiece's decoding, with control pieces written out (as encode reads them)."""
        sp = self._sp
        out: list[str] = []
        run: list[int] = []
        for i in ids:
            if sp.is_control(i):
                if run:
                    out.append(sp.decode(run))
                    run = []
                out.append(sp.id_to_piece(i))
            else:
                run.append(i)
        if run:
            out.append(sp.decode(run))
        return "".join(out)

    def token_bytes(self, token_id: int) -> bytes:
        sp = self._sp
        if not 0 <= token_id < sp.get_piece_size():
            raise KeyError(token_id)
        piece = sp.id_to_piece(token_id)
        if sp.is_byte(token_id):
            return bytes([int(piece[3:5], 16)])
        return piece.encode() if sp.is_control(token_id) else piece.replace("\u2581", " ").encode()

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()


class _Transformers:
    name = "transformers"

    def __init__(self, directory: Path):
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise AssetError(
                f"{directory} has no tokenizer.json; reading its tokenizer needs transformers",
                hint="pip install 'omnitok[hf]'",
            ) from None
        self.tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        # No "sequence length is longer than the specified maximum" warning: a count is not a
        # model input, and the text is never cut (truncation=False below).
        self.tok.model_max_length = sys.maxsize
        self._piece_bytes = None

    def __call__(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        return self.tok(texts, add_special_tokens=add_special_tokens, padding=False, truncation=False)["input_ids"]

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self(list(texts), add_special_tokens=False)]

    def encode(self, text: str) -> list[int]:
        return self([text], add_special_tokens=False)[0]

    def encode_cuts(self, text: str) -> tuple[list[int], list[int | None]] | None:
        if not self.tok.is_fast:  # offsets need a fast tokenizer; omnitok.tokens re-encodes instead
            return None
        enc = self.tok(text, add_special_tokens=False, padding=False, truncation=False, return_offsets_mapping=True)
        return enc["input_ids"], cut_spans(enc["offset_mapping"])

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def token_bytes(self, token_id: int) -> bytes:
        if not 0 <= token_id < len(self.tok):
            raise KeyError(token_id)
        if self.tok.is_fast:
            if self._piece_bytes is None:
                self._piece_bytes = _piece_reader(self.tok.backend_tokenizer)
            return self._piece_bytes(token_id)
        return self.tok.convert_tokens_to_string([self.tok.convert_ids_to_tokens(token_id)]).encode()

    @property
    def vocab_size(self) -> int:
        return len(self.tok)


class HFStrategy(EngineStrategy):
    """Exact counts with a Hugging Face model's own tokenizer files."""

    name = "hf-tokenizer"
    exact = True

    def __init__(self, model_id: str, directory: Path, engine: str = "auto", where: str = ""):
        if engine not in HF_ENGINES:
            raise UsageError(f"engine {engine!r} does not apply to Hugging Face models; one of {', '.join(HF_ENGINES)}")
        self.model_id = model_id
        self.directory = directory
        self.encoding = f"hf:{model_id}"
        self.source = f"{where}: {directory}" if where else str(directory)
        tj = directory / "tokenizer.json"
        self._config = _read_json(directory / "tokenizer_config.json")
        digest = hashlib.sha256()
        if tj.is_file():
            data = tj.read_bytes()
            digest.update(data)
            doc = _json_head(data, ("truncation", "padding", "post_processor"))  # before the vocabulary
            # The whole document where the head does not answer, or for gigatoken (given it without
            # padding and truncation); the tokenizers and transformers engines read the file itself.
            if doc is None or (_shapes_output(doc) and engine in ("auto", "gigatoken")):
                doc = _parse_json(tj, data)
                if not isinstance(doc, dict):
                    raise AssetError(f"{tj}: not a tokenizer.json (its top level is not a JSON object)")
            specials = _template_specials(doc.get("post_processor"))
            self._engine = self._load_json_engine(tj, engine, doc, data)
            if specials is None:
                ref = self._engine if isinstance(self._engine, _Tokenizers) else _tokenizers_for(tj)
                specials = len(ref.tok.encode("").ids) - len(ref.tok.encode("", add_special_tokens=False).ids)
        else:
            spm = directory / "tokenizer.model"
            usable = ("auto", "sentencepiece", "transformers") if spm.is_file() else ("auto", "transformers")
            if engine not in usable:
                raise UsageError(f"{directory} has no tokenizer.json: the {' or '.join(usable[1:])} engine reads it")
            for name in ("tokenizer.model", "vocab.json", "merges.txt"):
                if (directory / name).is_file():
                    digest.update((directory / name).read_bytes())
            if spm.is_file() and engine != "transformers":
                self._engine = _SentencePiece(spm)
                specials = sum(bool(self._config.get(k)) for k in ("add_bos_token", "add_eos_token"))
            else:
                self._engine = _Transformers(directory)
                tok = self._engine
                specials = len(tok([""], add_special_tokens=True)[0]) - len(tok([""], add_special_tokens=False)[0])
        self.specials_added = specials
        digest.update(json.dumps(self._config, sort_keys=True).encode())
        digest.update(f"\0hf-rule-v{HF_RULE_VERSION}".encode())
        self.engine = self._engine.name
        self.fingerprint = f"hf:{model_id}:" + digest.hexdigest()[:16]

    @staticmethod
    def _load_json_engine(path: Path, engine: str, doc: dict | None = None, data: bytes | None = None):
        if engine in ("auto", "gigatoken"):
            try:
                return _Gigatoken(path, doc, data)
            except Exception as e:  # a tokenizer.json gigatoken does not support
                if engine == "gigatoken":
                    raise UsageError(f"gigatoken cannot load {path}: {e}") from None
        if engine == "transformers":
            return _Transformers(path.parent)
        return _tokenizers_for(path)

    # count / count_batch (EngineStrategy) give counts without the post-processor's special
    # tokens: the framing adds them.

    # --- chat -------------------------------------------------------------------------------

    def chat_template(self) -> str | None:
        for name in ("chat_template.jinja",):
            if (self.directory / name).is_file():
                return (self.directory / name).read_text(encoding="utf-8")
        tpl = self._config.get("chat_template")
        if tpl is None and (self.directory / "chat_template.json").is_file():
            tpl = _read_json(self.directory / "chat_template.json").get("chat_template")
        if isinstance(tpl, list):  # named templates: use "default"
            named = {t.get("name"): t.get("template") for t in tpl if isinstance(t, dict)}
            tpl = named.get("default") or next(iter(named.values()), None)
        return tpl or None

    def special_tokens_map(self) -> dict:
        out = {}
        for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
            value = self._config.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                out[key] = value
        extra = self._config.get("additional_special_tokens")
        if isinstance(extra, list):
            out["additional_special_tokens"] = [t.get("content") if isinstance(t, dict) else t for t in extra]
        return out

    def render_chat(self, messages: list, tools: list | None = None) -> str:
        """The chat as the model's template renders it, as transformers' apply_chat_template does."""
        template = self.chat_template()
        if template is None:
            raise UsageError(f"{self.model_id} has no chat template; count a text field instead (--field)")
        try:
            from transformers.utils.chat_template_utils import render_jinja_template
        except ImportError:
            raise UsageError(
                "rendering a Hugging Face chat template needs transformers", hint="pip install 'omnitok[hf]'"
            ) from None
        rendered, _ = render_jinja_template(
            conversations=[messages],
            chat_template=template,
            tools=tools or None,
            add_generation_prompt=True,
            **self.special_tokens_map(),
        )
        return rendered[0]


def _shapes_output(doc: dict) -> bool:
    """Whether a tokenizer.json pads or truncates what it encodes."""
    return doc.get("padding") is not None or doc.get("truncation") is not None


def _unshaped(doc: dict) -> dict:
    """A tokenizer.json with padding and truncation off: what a count must be taken with."""
    return {**doc, "padding": None, "truncation": None}


class _StdlibParsed(dict):
    """A JSON object only the standard library's parser accepted (see _parse_json)."""


def _parse_json(path: Path, data: bytes):
    """A JSON file's document: orjson first (a 7 MB tokenizer.json is on a count's serial start-up
    path: about 4x faster), the standard library where orjson refuses what it accepts (NaN,
    integers past 64 bits), so what loads does not depend on the parser."""
    import orjson

    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        doc = json.loads(data.decode("utf-8"))
        return _StdlibParsed(doc) if isinstance(doc, dict) else doc
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AssetError(f"{path}: not valid JSON: {e}") from None
    except RecursionError:
        raise AssetError(f"{path}: not valid JSON: nested too deeply") from None


def _json_head(data: bytes, needed: Sequence[str]) -> dict | None:
    """The top-level members of a tokenizer.json that come before its "model" (the vocabulary
    and merges: nearly all of the file, and a tenth of a second of parsing for a 150k-token
    vocabulary on a count's serial start-up), parsed one by one with the standard library; the
    members after "model", if any, are not read. None when the data is not laid out that way
    (not UTF-8, not an object, not well-formed up to "model", or a `needed` member not before
    it): the caller then parses it all, which also reports what is wrong. tokenizers writes
    "model" last; the engines read the whole file."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")
    i = ws.match(text, 0).end()
    if text[i : i + 1] != "{":
        return None
    i += 1
    head: dict = {}
    try:
        while True:
            i = ws.match(text, i).end()
            if text[i : i + 1] != '"':
                return None
            key, i = decoder.raw_decode(text, i)
            i = ws.match(text, i).end()
            if text[i : i + 1] != ":":
                return None
            if key == "model":
                return head if all(k in head for k in needed) else None
            value, i = decoder.raw_decode(text, ws.match(text, i + 1).end())
            head[key] = value
            i = ws.match(text, i).end()
            if text[i : i + 1] != ",":
                return None  # the end, or not JSON: with no "model" let the full parse decide
            i += 1
    except (ValueError, RecursionError):  # json.JSONDecodeError; nesting too deep for the stdlib
        return None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    return _parse_json(path, path.read_bytes())


def locate(model_id: str, explicit: str | None = None) -> tuple[Path, str]:
    """(directory of tokenizer files, where it was found) for a Hugging Face model: the asset
    store's answer, with a llama.cpp .gguf model converted once into tokenizer files."""
    from ..assets.hf import find_hf_tokenizer, is_gguf

    path, where = find_hf_tokenizer(model_id, explicit)
    if is_gguf(path):
        from .gguf import converted_dir

        path = converted_dir(path)
    return path, where
