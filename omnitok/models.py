"""The model registry, as data: model id -> family, encoding and chat framing.

Resolution looks up an exact id first, then the longest matching prefix, the way
tiktoken's model.py does. Later families (Hugging Face, Gemini, Claude, ...) add rows here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from .errors import UnknownModelError, UsageError

# Chat framing rules (OpenAI cookbook, "How to count tokens with tiktoken"): each message costs
# `per_message` tokens plus its fields' tokens, plus `per_name` if it has a name; every reply is
# primed with `reply` more tokens.
CHAT_RULES: dict[str, tuple[int, int, int]] = {
    "openai-chat": (3, 1, 3),  # gpt-3.5-turbo-0125, gpt-4-0613, gpt-4o, gpt-4o-mini and later
    "openai-chat-0301": (4, -1, 3),  # gpt-3.5-turbo-0301: <|start|>{role/name}\n{content}<|end|>\n
}

# Exact model ids -> encoding.
OPENAI_MODELS: dict[str, str] = {
    # reasoning
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4-mini": "o200k_base",
    # chat
    "gpt-5": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4o": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5-turbo": "cl100k_base",
    "gpt-3.5": "cl100k_base",
    "gpt-35-turbo": "cl100k_base",  # Azure's name
    "gpt-oss-120b": "o200k_harmony",
    "gpt-oss-20b": "o200k_harmony",
    # base
    "davinci-002": "cl100k_base",
    "babbage-002": "cl100k_base",
    # embeddings
    "text-embedding-3-large": "cl100k_base",
    "text-embedding-3-small": "cl100k_base",
    "text-embedding-ada-002": "cl100k_base",
    # legacy (vocabularies not embedded; found in the tiktoken cache or a bundle). Every id of
    # tiktoken's MODEL_TO_ENCODING is here (tests/test_model_ids.py checks it).
    # text
    "text-davinci-003": "p50k_base",
    "text-davinci-002": "p50k_base",
    "text-davinci-001": "r50k_base",
    "text-curie-001": "r50k_base",
    "text-babbage-001": "r50k_base",
    "text-ada-001": "r50k_base",
    "davinci": "r50k_base",
    "curie": "r50k_base",
    "babbage": "r50k_base",
    "ada": "r50k_base",
    # code
    "code-davinci-002": "p50k_base",
    "code-davinci-001": "p50k_base",
    "code-cushman-002": "p50k_base",
    "code-cushman-001": "p50k_base",
    "davinci-codex": "p50k_base",
    "cushman-codex": "p50k_base",
    # edit
    "text-davinci-edit-001": "p50k_edit",
    "code-davinci-edit-001": "p50k_edit",
    # old embeddings
    "text-similarity-davinci-001": "r50k_base",
    "text-similarity-curie-001": "r50k_base",
    "text-similarity-babbage-001": "r50k_base",
    "text-similarity-ada-001": "r50k_base",
    "text-search-davinci-doc-001": "r50k_base",
    "text-search-curie-doc-001": "r50k_base",
    "text-search-babbage-doc-001": "r50k_base",
    "text-search-ada-doc-001": "r50k_base",
    "code-search-babbage-code-001": "r50k_base",
    "code-search-ada-code-001": "r50k_base",
    # open source: tiktoken's gpt2 encoding is r50k_base's ranks, split pattern and <|endoftext|>,
    # read from GPT-2's vocab.bpe / encoder.json instead of a .tiktoken file
    "gpt2": "r50k_base",
    "gpt-2": "r50k_base",
}

# Prefixes (dated snapshots, fine-tunes, variants) -> encoding. Longest match wins.
OPENAI_PREFIXES: dict[str, str] = {
    "o1-": "o200k_base",
    "o3-": "o200k_base",
    "o4-mini-": "o200k_base",
    "gpt-5": "o200k_base",  # gpt-5-mini, gpt-5.1, ... (tiktoken's prefix)
    "gpt-4.5-": "o200k_base",
    "gpt-4.1-": "o200k_base",
    "gpt-4o-": "o200k_base",
    "chatgpt-4o-": "o200k_base",
    "gpt-4-": "cl100k_base",
    "gpt-3.5-turbo-": "cl100k_base",
    "gpt-35-turbo-": "cl100k_base",
    "gpt-oss-": "o200k_harmony",
    "ft:gpt-4.1": "o200k_base",
    "ft:gpt-4o": "o200k_base",
    "ft:gpt-4": "cl100k_base",
    "ft:gpt-3.5-turbo": "cl100k_base",
    "ft:davinci-002": "cl100k_base",
    "ft:babbage-002": "cl100k_base",
}

# Ids whose chat framing differs from the family default.
CHAT_RULE_OVERRIDES: dict[str, str] = {"gpt-3.5-turbo-0301": "openai-chat-0301"}

DEFAULT_MODEL = "gpt-4o"


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a model id resolved to, and why.

    family: openai | claude | gemini | hf | a plugin's; `encoding` is what that family loads: an
    OpenAI encoding, a Claude calibration generation, a Gemini id, a Hugging Face model id.
    """

    model: str
    family: str
    encoding: str
    chat_rule: str
    reason: str


# Bedrock ids of open-weight models -> the Hugging Face repo with the same tokenizer.
BEDROCK_HF: dict[str, str] = {
    "meta.llama3-1-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "meta.llama3-1-70b-instruct": "meta-llama/Llama-3.1-70B-Instruct",
    "meta.llama3-1-405b-instruct": "meta-llama/Llama-3.1-405B-Instruct",
    "meta.llama3-2-1b-instruct": "meta-llama/Llama-3.2-1B-Instruct",
    "meta.llama3-2-3b-instruct": "meta-llama/Llama-3.2-3B-Instruct",
    "meta.llama3-3-70b-instruct": "meta-llama/Llama-3.3-70B-Instruct",
    "meta.llama3-8b-instruct": "meta-llama/Meta-Llama-3-8B-Instruct",
    "meta.llama3-70b-instruct": "meta-llama/Meta-Llama-3-70B-Instruct",
    "mistral.mistral-7b-instruct": "mistralai/Mistral-7B-Instruct-v0.2",
    "mistral.mixtral-8x7b-instruct": "mistralai/Mixtral-8x7B-Instruct-v0.1",
}
_BEDROCK_REGIONS = ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.")


def strip_bedrock(name: str) -> str:
    """`us.meta.llama3-1-8b-instruct-v1:0` -> `meta.llama3-1-8b-instruct`."""
    for region in _BEDROCK_REGIONS:
        if name.startswith(region):
            name = name[len(region) :]
            break
    base = name.split(":")[0]
    for suffix in ("-v1", "-v2", "-v3"):
        base = base.removesuffix(suffix)
    return base


def resolve(model: str) -> Resolution:
    """Map a model id to its family and what that family loads; raise UnknownModelError.

    Families are asked in order: OpenAI, Claude, Gemini, plugins (omnitok.families entry points,
    scanned only when reached), then the Hugging Face org/name catch-all. An empty id is a
    UsageError, never the default model: the caller picks the default for an absent one (None).
    """
    from .families import resolution_order

    if not model or not model.strip():
        raise UsageError("model id is empty", hint="leave the model out for the default ($OMNITOK_MODEL, else gpt-4o)")
    for fam in resolution_order():
        res = fam.resolve(model)
        if res is not None:
            return res
    raise UnknownModelError(model, suggest(model.strip()))


def lookup(name: str, exact: dict[str, str], prefixes: dict[str, str]) -> tuple[str, str] | None:
    """(value, how it matched) for an id: an exact entry first, else the longest matching prefix
    (tiktoken's model.py rule), else None. Every id table of the registry is read this way."""
    if name in exact:
        return exact[name], f"exact id {name!r}"
    matches = [p for p in prefixes if name.startswith(p)]
    if matches:
        prefix = max(matches, key=len)
        return prefixes[prefix], f"prefix {prefix!r}"
    return None


def table_rows(exact: dict[str, str], prefixes: dict[str, str]) -> list[dict]:
    """An id table as `omnitok models` rows."""
    out = [{"model": m, "kind": "id", "target": t} for m, t in exact.items()]
    out += [{"model": p + "*", "kind": "prefix", "target": t} for p, t in prefixes.items()]
    return out


def for_encoding(encoding: str, model: str | None = None) -> Resolution:
    """A resolution for an explicit --encoding (the model id, if any, is only a label); tiktoken's
    names for an encoding omnitok has under another name (gpt2) are accepted."""
    from .tokenizers.openai_encodings import ALIASES

    return Resolution(
        model or encoding, "openai", ALIASES.get(encoding, encoding), "openai-chat", f"--encoding {encoding}"
    )


def suggest(name: str, n: int = 3) -> list[str]:
    from .families import families

    candidates = dict.fromkeys(c.rstrip("-.") for fam in families() for c in fam.names())
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)
