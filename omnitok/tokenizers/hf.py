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

import hashlib
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import AssetError, UsageError
from .base import EngineStrategy
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

    def __init__(self, path: Path, doc: dict | None = None):
        import gigatoken

        # gigatoken 0.10 ignores padding and truncation; it is given a tokenizer.json without
        # them all the same, so that no later version can pad or cut a count.
        if doc is not None and _shapes_output(doc):
            self._tok = gigatoken.Tokenizer.from_json(json.dumps(_unshaped(doc), ensure_ascii=False))
        else:
            self._tok = gigatoken.Tokenizer(str(path))
        self._encode = self._tok.encode
        self._path = path

    def _reference_factory(self):  # newer Unicode than gigatoken's tables: `tokenizers` decides
        return _Tokenizers(self._path)

    def _count_fast(self, text: str) -> int:
        return len(self._encode(text))


class _Tokenizers:
    name = "tokenizers"

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(path))
        self.tok.no_padding()
        self.tok.no_truncation()

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]


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

    def __call__(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        return self.tok(texts, add_special_tokens=add_special_tokens, padding=False, truncation=False)["input_ids"]

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self(list(texts), add_special_tokens=False)]


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
            try:
                doc = json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise AssetError(f"{tj}: not valid JSON: {e}") from None
            specials = _template_specials(doc.get("post_processor"))
            self._engine = self._load_json_engine(tj, engine, doc)
            if specials is None:
                ref = self._engine if isinstance(self._engine, _Tokenizers) else _Tokenizers(tj)
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
    def _load_json_engine(path: Path, engine: str, doc: dict | None = None):
        if engine in ("auto", "gigatoken"):
            try:
                return _Gigatoken(path, doc)
            except Exception as e:  # a tokenizer.json gigatoken does not support
                if engine == "gigatoken":
                    raise UsageError(f"gigatoken cannot load {path}: {e}") from None
        if engine == "transformers":
            return _Transformers(path.parent)
        return _Tokenizers(path)

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


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AssetError(f"{path}: not valid JSON: {e}") from None
