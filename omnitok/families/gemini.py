"""The Gemini family: ids -> the Gemma vocabulary that counts them; exact counts online
(countTokens); offline, exact text counts with Google's open Gemma vocabularies, as google-genai's
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

import functools
import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..assets.store import asset_store, omnitok_home, sha256_file
from ..errors import AssetError, UsageError, shown
from .base import BundleFiles, Family, Resolution, lookup, message_texts, no_tools, step_down, table_rows


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
# Their vocabularies' sizes (added tokens included): a --tokenizer given for such a Gemini model
# must have it. A Llama 3 file was taken and its counts labelled Gemma 4's, exact.
HF_VOCAB_SIZES = {"gemma4": 262_144}

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
    """The Gemma vocabulary (a key of SENTENCEPIECE or HF_TOKENIZERS) of a Gemini id, else None."""
    found = lookup(model, MODELS, PREFIXES)
    return found[0] if found else None


def spm_candidates(vocab: SpmVocabulary) -> list[tuple[Path, str]]:
    sdk_cache = Path(tempfile.gettempdir()) / "vertexai_tokenizer_model" / hashlib.sha1(vocab.url.encode()).hexdigest()
    return [
        (asset_store() / "gemini" / vocab.filename, "omnitok asset store"),
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
        no_tools(tools, "Gemini (countTokens does not publish how function declarations are counted)")

        return message_texts(messages, where, "part"), 0


@functools.lru_cache(maxsize=4)
def _gemma_spm(name: str, path: str, where: str) -> GemmaSentencePiece:
    return GemmaSentencePiece(name, Path(path), where)


class GeminiFamily(Family):
    name = "gemini"
    order = 30
    chain = "online exact (countTokens) -> local exact for text (Gemma vocabulary) -> heuristic"

    def resolve(self, model):
        name = model.strip().removeprefix("gemini/").removeprefix("vertex_ai/").removeprefix("models/")
        if not name.startswith("gemini-"):
            return None
        return Resolution(model, "gemini", name, "gemini", "Gemini id: Gemma vocabulary (text), countTokens online")

    def offline(self, res, opts):
        name = tokenizer_name(res.target)
        try:
            if name is None:
                raise AssetError(f"no Gemma vocabulary is known for {res.target!r}")
            if name in HF_TOKENIZERS:
                from .hf import local_tokenizer

                strategy = local_tokenizer(HF_TOKENIZERS[name], opts.tokenizer, opts.engine)
                want = HF_VOCAB_SIZES[name]
                if opts.tokenizer is not None and (size := strategy.known_vocab_size()) != want:
                    raise UsageError(
                        f"--tokenizer {shown(opts.tokenizer)} has {size:,} tokens, not the {want:,} of "
                        f"{HF_TOKENIZERS[name]}'s vocabulary, which {res.target} counts with",
                        hint=f"give {HF_TOKENIZERS[name]}'s tokenizer files or a Gemma 4 GGUF file",
                    )
                return strategy
            path, where = find_spm(name)
            return _gemma_spm(name, str(path), where)
        except AssetError as e:
            from .heuristic import strategy_for

            return step_down(res, opts, e, strategy_for("generic"))

    def framing(self, res, strategy, opts):
        return GeminiFraming()

    def bundle_files(self, res):
        name = tokenizer_name(res.target)
        if name is None:
            raise AssetError(f"{res.model}: no Gemma vocabulary is known for it")
        if name in HF_TOKENIZERS:
            return (BundleFiles("hf", HF_TOKENIZERS[name]),)
        return (BundleFiles("gemma-spm", name),)

    def provider(self, res):
        from ..remote import providers

        return providers.Gemini

    def provider_model(self, res):
        """The Gemini id the family resolved to (without `gemini/`, `vertex_ai/` or `models/`)."""
        return res.target

    def rows(self):
        return table_rows(MODELS, PREFIXES)
