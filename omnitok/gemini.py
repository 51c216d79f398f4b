"""Gemini offline: exact text counts with Google's open Gemma vocabularies, as google-genai's
LocalTokenizer counts them (google/genai/_local_tokenizer_loader.py, local_tokenizer.py).

- Gemini 2.0 / 2.5 / 3 previews: the Gemma 3 SentencePiece model, fetched by Google's SDK from a
  pinned URL and checked against a pinned sha256; counted with the `sentencepiece` library (the
  same code path as the SDK), no BOS.
- Gemini 3.1 / 3.5: Gemma 4's Hugging Face tokenizer (google/gemma-4-E4B-it), found like any
  Hugging Face model's files.

The vocabularies are Google's, not ours to ship: `omnitok bundle` fetches them on a connected
machine; here they are found in omnitok's store or in google-genai's own cache. A chat counts the
text of its messages (and system instruction) with no framing, as countTokens does for text.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .assets.store import omnitok_home, sha256_file
from .errors import AssetError


@dataclass(frozen=True)
class SpmVocabulary:
    url: str
    sha256: str
    filename: str


SENTENCEPIECE = {
    "gemma3": SpmVocabulary(
        "https://raw.githubusercontent.com/google/gemma_pytorch/014acb7ac4563a5f77c76d7ff98f31b568c16508/"
        "tokenizer/gemma3_cleaned_262144_v2.spiece.model",
        "1299c11d7cf632ef3b4e11937501358ada021bbdf7c47638d13c0ee982f2e79c",
        "gemma3_cleaned_262144_v2.spiece.model",
    ),
}
HF_TOKENIZERS = {"gemma4": "google/gemma-4-E4B-it"}

# google-genai's table, plus prefixes for the families it names.
MODELS = {
    "gemini-2.5-pro": "gemma3",
    "gemini-2.5-flash": "gemma3",
    "gemini-2.5-flash-lite": "gemma3",
    "gemini-2.0-flash": "gemma3",
    "gemini-2.0-flash-lite": "gemma3",
    "gemini-3-pro-preview": "gemma3",
    "gemini-3-flash-preview": "gemma3",
    "gemini-3.5-flash": "gemma4",
    "gemini-3.1-flash-lite": "gemma4",
    "gemini-3.1-pro-preview": "gemma4",
}
PREFIXES = {
    "gemini-2.0-": "gemma3",
    "gemini-2.5-": "gemma3",
    "gemini-live-2.5-": "gemma3",
    "gemini-3-": "gemma3",
    "gemini-3.1-": "gemma4",
    "gemini-3.5-": "gemma4",
}


def tokenizer_name(model: str) -> str | None:
    from .models import lookup

    found = lookup(model, MODELS, PREFIXES)
    return found[0] if found else None


def spm_candidates(vocab: SpmVocabulary) -> list[tuple[Path, str]]:
    sdk_cache = Path(tempfile.gettempdir()) / "vertexai_tokenizer_model" / hashlib.sha1(vocab.url.encode()).hexdigest()
    return [
        (omnitok_home() / "assets" / "gemini" / vocab.filename, "omnitok asset store"),
        (sdk_cache, "google-genai cache"),
    ]


def find_spm(name: str) -> tuple[Path, str]:
    vocab = SENTENCEPIECE[name]
    bad = []
    for path, where in spm_candidates(vocab):
        if path.is_file():
            actual = sha256_file(path)
            if actual == vocab.sha256:
                return path, where
            bad.append(f"{path} has sha256 {actual}, expected {vocab.sha256}")
    looked = ", ".join(str(p) for p, _ in spm_candidates(vocab))
    raise AssetError(
        f"the {name} vocabulary is not on this machine (looked in: {looked})" + ("; " + "; ".join(bad) if bad else ""),
        hint=f"on a connected machine fetch {vocab.url} (sha256 {vocab.sha256}) into "
        f"{omnitok_home() / 'assets' / 'gemini' / vocab.filename}",
    )


class GemmaSentencePiece:
    """Exact Gemini text counts with a Gemma SentencePiece model."""

    name = "gemma-sentencepiece"
    exact = True
    engine = "sentencepiece"

    def __init__(self, tokenizer: str, path: Path, where: str):
        import sentencepiece as spm

        self._sp = spm.SentencePieceProcessor(model_file=str(path))
        self.encoding = f"gemini:{tokenizer}"
        self.source = f"{where}: {path}"
        self.fingerprint = f"gemini:{tokenizer}:{SENTENCEPIECE[tokenizer].sha256[:16]}:v1"

    def count(self, text: str) -> int:
        return self.count_batch([text])[0]

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self._sp.encode(list(texts))]


class GeminiFraming:
    """countTokens for text contents: the texts of the parts, summed, no per-message tokens."""

    def text(self, text: str) -> tuple[list[str], int]:
        return [text], 0

    def chat(self, messages: list, where: str = "messages", tools: list | None = None) -> tuple[list[str], int]:
        from .framing import message_texts, no_tools

        no_tools(tools, "Gemini (countTokens does not publish how function declarations are counted)")

        return message_texts(messages, where, "part"), 0
