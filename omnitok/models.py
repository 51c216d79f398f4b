"""The model registry, as data: model id -> family, encoding and chat framing.

Resolution looks up an exact id first, then the longest matching prefix, the way
tiktoken's model.py does. Later families (Hugging Face, Gemini, Claude, ...) add rows here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from .errors import UnknownModelError

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
    "gpt-oss-120b": "o200k_base",
    "gpt-oss-20b": "o200k_base",
    # base
    "davinci-002": "cl100k_base",
    "babbage-002": "cl100k_base",
    # embeddings
    "text-embedding-3-large": "cl100k_base",
    "text-embedding-3-small": "cl100k_base",
    "text-embedding-ada-002": "cl100k_base",
    # legacy (vocabularies not embedded; found in the tiktoken cache or a bundle)
    "text-davinci-003": "p50k_base",
    "text-davinci-002": "p50k_base",
    "text-davinci-001": "r50k_base",
    "code-davinci-002": "p50k_base",
    "davinci": "r50k_base",
    "curie": "r50k_base",
    "babbage": "r50k_base",
    "ada": "r50k_base",
    "gpt2": "r50k_base",  # same ranks as tiktoken's gpt2 encoding
}

# Prefixes (dated snapshots, fine-tunes, variants) -> encoding. Longest match wins.
OPENAI_PREFIXES: dict[str, str] = {
    "o1-": "o200k_base",
    "o3-": "o200k_base",
    "o4-mini-": "o200k_base",
    "gpt-5-": "o200k_base",
    "gpt-5.": "o200k_base",
    "gpt-4.5-": "o200k_base",
    "gpt-4.1-": "o200k_base",
    "gpt-4o-": "o200k_base",
    "chatgpt-4o-": "o200k_base",
    "gpt-4-": "cl100k_base",
    "gpt-3.5-turbo-": "cl100k_base",
    "gpt-35-turbo-": "cl100k_base",
    "gpt-oss-": "o200k_base",
    "ft:gpt-4.1": "o200k_base",
    "ft:gpt-4o": "o200k_base",
    "ft:gpt-4": "cl100k_base",
    "ft:gpt-3.5-turbo": "cl100k_base",
    "ft:davinci-002": "cl100k_base",
    "ft:babbage-002": "cl100k_base",
}

# Ids whose chat framing differs from the family default.
CHAT_RULE_OVERRIDES: dict[str, str] = {"gpt-3.5-turbo-0301": "openai-chat-0301"}

# Provider prefixes users write in front of an OpenAI id (litellm style).
_PROVIDER_PREFIXES = ("openai/", "azure/")

DEFAULT_MODEL = "gpt-4o"


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a model id resolved to, and why.

    family: openai | hf | claude; `encoding` is what that family loads: an OpenAI encoding,
    a Hugging Face model id, or a Claude calibration generation.
    """

    model: str
    family: str
    encoding: str
    chat_rule: str
    reason: str


# Served or hosted ids that name a Hugging Face model (litellm-style prefixes).
_HF_PREFIXES = ("hf:", "huggingface/", "vllm/", "hosted_vllm/")

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


def _strip_bedrock(name: str) -> str:
    """`us.meta.llama3-1-8b-instruct-v1:0` -> `meta.llama3-1-8b-instruct`."""
    for region in _BEDROCK_REGIONS:
        if name.startswith(region):
            name = name[len(region) :]
            break
    base = name.split(":")[0]
    for suffix in ("-v1", "-v2", "-v3"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base


def _resolve_other(model: str, name: str) -> Resolution | None:
    from . import claude

    gen = claude.generation(name)
    if gen is not None:
        return Resolution(model, "claude", gen, "claude", f"Claude id {name!r}: calibrated estimate ({gen})")
    gemini = name.removeprefix("gemini/").removeprefix("vertex_ai/").removeprefix("models/")
    if gemini.startswith("gemini-"):
        return Resolution(
            model, "gemini", gemini, "gemini", "Gemini id: exact online (countTokens); offline the heuristic"
        )
    for prefix in _HF_PREFIXES:
        if name.startswith(prefix):
            target = name[len(prefix) :]
            return Resolution(model, "hf", target, "template", f"{prefix!r} prefix: Hugging Face model {target!r}")
    bedrock = _strip_bedrock(name)
    if bedrock in BEDROCK_HF:
        target = BEDROCK_HF[bedrock]
        return Resolution(model, "hf", target, "template", f"Bedrock id {bedrock!r}: same tokenizer as {target!r}")
    org, sep, rest = name.partition("/")
    if sep and org and rest and not name.startswith(("http:", "https:")):
        return Resolution(model, "hf", name, "template", "an org/name id: a Hugging Face model")
    return None


def resolve(model: str) -> Resolution:
    """Map a model id to its family, encoding and chat framing; raise UnknownModelError."""
    name = model.strip()
    for prefix in _PROVIDER_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    else:
        other = _resolve_other(model, name)
        if other is not None:
            return other
    rule = CHAT_RULE_OVERRIDES.get(name, "openai-chat")
    if name in OPENAI_MODELS:
        return Resolution(model, "openai", OPENAI_MODELS[name], rule, f"exact id {name!r}")
    matches = [p for p in OPENAI_PREFIXES if name.startswith(p)]
    if matches:
        prefix = max(matches, key=len)
        return Resolution(model, "openai", OPENAI_PREFIXES[prefix], rule, f"prefix {prefix!r}")
    raise UnknownModelError(model, suggest(name))


def for_encoding(encoding: str, model: str | None = None) -> Resolution:
    """A resolution for an explicit --encoding (the model id, if any, is only a label)."""
    return Resolution(model or encoding, "openai", encoding, "openai-chat", f"--encoding {encoding}")


def known_models() -> list[tuple[str, str, str]]:
    """(id or prefix, kind, encoding) rows for `omnitok models`."""
    rows = [(m, "id", e) for m, e in OPENAI_MODELS.items()]
    rows += [(p + "*", "prefix", e) for p, e in OPENAI_PREFIXES.items()]
    return rows


def suggest(name: str, n: int = 3) -> list[str]:
    candidates = dict.fromkeys(list(OPENAI_MODELS) + [p.rstrip("-.") for p in OPENAI_PREFIXES])
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)
