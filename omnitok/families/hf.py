"""The Hugging Face family: `org/name` ids (and `hf:`, `vllm/`, `hosted_vllm/` and Bedrock ids of
open-weight models) -> the repo whose tokenizer files count them; exact counts online from a
self-hosted server (vLLM, TGI or llama.cpp /tokenize); offline, exact counts with the tokenizer
files and the model's own chat template, else the heuristic. Its org/name rule is the catch-all:
it resolves after every other family, plugins included.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ..errors import AssetError, ExtractError
from .base import BEDROCK_REGIONS, BundleFiles, Family, Resolution, check_role, step_down

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


def strip_bedrock(name: str) -> str:
    """`us.meta.llama3-1-8b-instruct-v1:0` -> `meta.llama3-1-8b-instruct`."""
    for region in BEDROCK_REGIONS:
        if name.startswith(region):
            name = name[len(region) :]
            break
    base = name.split(":")[0]
    for suffix in ("-v1", "-v2", "-v3"):
        base = base.removesuffix(suffix)
    return base


@functools.lru_cache(maxsize=32)
def _hf(model_id: str, directory: str, where: str, engine: str):
    from ..tokenizers.hf import HFStrategy

    return HFStrategy(model_id, Path(directory), engine, where)


def local_tokenizer(model_id: str, tokenizer: str | None, engine: str):
    """The exact strategy of a Hugging Face model's tokenizer files (the directory given, or the ones
    found: see tokenizers.hf.locate), loaded once; AssetError if there are none or they cannot be
    loaded."""
    from ..tokenizers.hf import locate

    directory, where = locate(model_id, tokenizer)
    return _hf(model_id, str(directory), where, engine)


class HFFraming:
    """`len(tokenizer(text).input_ids)` for text; `apply_chat_template(..., add_generation_prompt=True)`
    for chats (rendered, then tokenized without extra special tokens, as transformers does)."""

    def __init__(self, strategy, special_tokens: bool = True):
        self.strategy = strategy
        self.added = strategy.specials_added if special_tokens else 0

    def text(self, text: str) -> tuple[list[str], int]:
        return [text], self.added

    def chat(self, messages: list, where: str = "messages", tools: list | None = None) -> tuple[list[str], int]:
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                raise ExtractError(f"{where}[{i}] is not an object")
            check_role(msg, where, i)
        try:
            return [self.strategy.render_chat(messages, tools)], 0
        except ExtractError:
            raise
        except Exception as e:  # jinja2 TemplateError, raise_exception() in the template, ...
            if type(e).__name__ == "UsageError":
                raise
            raise ExtractError(f"{where}: the chat template of {self.strategy.model_id} failed: {e}") from None


class HFFamily(Family):
    name = "hf"
    order = 90
    chain = "online exact (vLLM, TGI or llama.cpp /tokenize) -> local exact (tokenizer files) -> heuristic"
    _PREFIXES = ("hf:", "huggingface/", "vllm/", "hosted_vllm/")

    def resolve(self, model):
        name = model.strip()
        for prefix in self._PREFIXES:
            if name.startswith(prefix):
                target = name[len(prefix) :]
                if not target.strip():  # `hf:` alone would name the asset store's own directory
                    return None
                return Resolution(model, "hf", target, "template", f"{prefix!r} prefix: Hugging Face model {target!r}")
        bedrock = strip_bedrock(name)
        if bedrock in BEDROCK_HF:
            target = BEDROCK_HF[bedrock]
            return Resolution(model, "hf", target, "template", f"Bedrock id {bedrock!r}: same tokenizer as {target!r}")
        org, sep, rest = name.partition("/")
        if sep and org and rest and "://" not in name:
            return Resolution(model, "hf", name, "template", "an org/name id: a Hugging Face model")
        return None

    def bundle_files(self, res):
        return (BundleFiles("hf", res.target),)

    def offline(self, res, opts):
        from ..tokenizers.hf import locate

        try:
            directory, where = locate(res.target, opts.tokenizer)
        except AssetError as e:  # no files: the heuristic (files that are there but broken: an error)
            if opts.tokenizer:
                raise
            from .heuristic import family_for, strategy_for

            return step_down(res, opts, e, strategy_for(family_for(res.target)))
        return _hf(res.target, str(directory), where, opts.engine)

    def framing(self, res, strategy, opts):
        """The model's chat template with its tokenizer files; the default framing for the heuristic."""
        return HFFraming(strategy, opts.special_tokens) if strategy.name == "hf-tokenizer" else None

    def provider(self, res):
        from ..remote import providers

        if not os.environ.get("VLLM_ENDPOINT") and os.environ.get("OMNITOK_TOKENIZE_URL"):
            return providers.SelfHosted
        return providers.VLLM

    def provider_model(self, res):
        """The Hugging Face repo the family resolved to."""
        return res.target

    def online(self, provider, res, opts):
        from ..remote.http import HttpPolicy

        policy = HttpPolicy(timeout=opts.timeout, retries=opts.retries)
        return provider(self.provider_model(res), policy, special_tokens=opts.special_tokens)

    def cache_options(self, res, special_tokens):
        return f"special={int(special_tokens)}"

    def rows(self):
        out = [{"model": "org/name, hf:, vllm/, hosted_vllm/", "kind": "pattern", "target": "tokenizer files"}]
        out += [{"model": b, "kind": "bedrock id", "target": t} for b, t in BEDROCK_HF.items()]
        return out

    def names(self):
        return list(BEDROCK_HF)
