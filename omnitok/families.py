"""Model families: how ids resolve, which strategy counts them offline, how their chats are framed,
and which count API gives exact counts online.

Families are registered in the `omnitok.families` entry-point group; the built-in ones are
registered there exactly as a third-party plugin is (pyproject.toml) and implement the same
`Family` interface below. For start-up time the core reads its own four from the table here and
scans the entry points (tens of ms with many packages installed) only for an id none of the
built-in families with specific ids claims, before the Hugging Face `org/name` catch-all; so a
plugin can add ids but not take over gpt-4o or claude-*.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from pathlib import Path

from . import models, notices
from .errors import AssetError, UsageError


class Family:
    name = "family"
    order = 100  # lower resolves first; the Hugging Face org/name catch-all goes last
    chain = ""  # the strategy chain, for `omnitok models`

    def resolve(self, model: str) -> models.Resolution | None:
        """A Resolution if this family knows the id, else None."""
        raise NotImplementedError

    def offline(self, res: models.Resolution, opts):
        """The best local strategy (exact if possible)."""
        raise NotImplementedError

    def framing(self, res: models.Resolution, strategy, opts):
        from .framing import OpenAIFraming

        return OpenAIFraming()

    def provider(self, res: models.Resolution):
        """The online provider class for exact counts, or None."""
        return None

    def rows(self) -> list[dict]:
        """Known ids / patterns for `omnitok models`."""
        return []

    def names(self) -> list[str]:
        """Ids to suggest for a near-miss."""
        return [r["model"].rstrip("*") for r in self.rows()]


# --- cached loaders ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _hf(model_id: str, directory: str, where: str, engine: str):
    from .tokenizers.hf import HFStrategy

    return HFStrategy(model_id, Path(directory), engine, where)


@functools.lru_cache(maxsize=8)
def _claude(gen: str, engine: str):
    from .claude import ClaudeEstimate

    return ClaudeEstimate(gen, engine)


@functools.lru_cache(maxsize=8)
def heuristic(family: str):
    from .heuristic import HeuristicStrategy

    return HeuristicStrategy(family)


@functools.lru_cache(maxsize=4)
def _gemma_spm(name: str, path: str, where: str):
    from .gemini import GemmaSentencePiece

    return GemmaSentencePiece(name, Path(path), where)


def _degrade(res, opts, error: AssetError, strategy):
    """Step down to an estimate: an error under --strict, else one warning."""
    if opts.strict and not opts.online_allowed:
        from .chain import not_exact

        raise not_exact(res, strategy, error.message)
    notices.warn_once(
        f"no-assets:{res.encoding}",
        f"{error.message}; counting {res.model} with the heuristic (exact: false, about "
        f"±{strategy.error_band:.0%}). {error.hint or ''}".rstrip(),
    )
    return strategy


# --- the built-in families ------------------------------------------------------------------


class OpenAIFamily(Family):
    name = "openai"
    order = 10
    chain = "local exact (embedded o200k/cl100k, verified)"
    _PREFIXES = ("openai/", "azure/")

    def resolve(self, model):
        name = model.strip()
        for prefix in self._PREFIXES:
            name = name.removeprefix(prefix)
        found = models.lookup(name, models.OPENAI_MODELS, models.OPENAI_PREFIXES)
        if found is None:
            return None
        rule = models.CHAT_RULE_OVERRIDES.get(name, "openai-chat")
        return models.Resolution(model, "openai", found[0], rule, found[1])

    def offline(self, res, opts):
        if opts.tokenizer:
            raise UsageError(f"--tokenizer applies to Hugging Face models, not to {res.model!r} ({res.family})")
        from .tokenizers import load_strategy

        return load_strategy(res.encoding, opts.engine)

    def framing(self, res, strategy, opts):
        from .framing import OpenAIFraming

        return OpenAIFraming(res.chat_rule)

    def rows(self):
        return models.table_rows(models.OPENAI_MODELS, models.OPENAI_PREFIXES)


class ClaudeFamily(Family):
    name = "claude"
    order = 20
    chain = "online exact (Anthropic count_tokens, Bedrock CountTokens) -> calibrated estimate (o200k scaled)"

    def resolve(self, model):
        from . import claude

        gen = claude.generation(model.strip())
        if gen is None:
            return None
        return models.Resolution(model, "claude", gen, "claude", f"Claude id: calibrated estimate ({gen})")

    def offline(self, res, opts):
        if opts.tokenizer:
            raise UsageError(f"--tokenizer applies to Hugging Face models, not to {res.model!r} ({res.family})")
        return _claude(res.encoding, opts.engine)

    def framing(self, res, strategy, opts):
        from .claude import GENERATIONS, ClaudeFraming

        return ClaudeFraming(res.encoding if res.encoding in GENERATIONS else "claude-3")

    def provider(self, res):
        from .remote import providers

        return providers.Bedrock if "anthropic." in res.model else providers.Anthropic

    def rows(self):
        from .claude import GENERATIONS

        pats = {
            "claude-2": "claude-2*, claude-instant*",
            "claude-3": "claude-3*, claude-*-4 .. 4-6",
            "claude-4.7": "claude-*-4-7 and later",
        }
        return [
            {"model": pats[g], "kind": "pattern", "target": g, "error_band": band}
            for g, (_, _, band) in GENERATIONS.items()
        ]


class GeminiFamily(Family):
    name = "gemini"
    order = 30
    chain = "online exact (countTokens) -> local exact for text (Gemma vocabulary) -> heuristic"

    def resolve(self, model):
        name = model.strip().removeprefix("gemini/").removeprefix("vertex_ai/").removeprefix("models/")
        if not name.startswith("gemini-"):
            return None
        return models.Resolution(
            model, "gemini", name, "gemini", "Gemini id: Gemma vocabulary (text), countTokens online"
        )

    def offline(self, res, opts):
        from . import gemini

        name = gemini.tokenizer_name(res.encoding)
        try:
            if name is None:
                raise AssetError(f"no Gemma vocabulary is known for {res.encoding!r}")
            if name in gemini.HF_TOKENIZERS:
                from .tokenizers.hf import locate

                hf_id = gemini.HF_TOKENIZERS[name]
                directory, where = locate(hf_id, opts.tokenizer)
                return _hf(hf_id, str(directory), where, opts.engine)
            path, where = gemini.find_spm(name)
            return _gemma_spm(name, str(path), where)
        except AssetError as e:
            return _degrade(res, opts, e, heuristic("generic"))

    def framing(self, res, strategy, opts):
        from .gemini import GeminiFraming

        return GeminiFraming()

    def provider(self, res):
        from .remote import providers

        return providers.Gemini

    def rows(self):
        from . import gemini

        return models.table_rows(gemini.MODELS, gemini.PREFIXES)


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
                return models.Resolution(
                    model, "hf", target, "template", f"{prefix!r} prefix: Hugging Face model {target!r}"
                )
        bedrock = models.strip_bedrock(name)
        if bedrock in models.BEDROCK_HF:
            target = models.BEDROCK_HF[bedrock]
            return models.Resolution(
                model, "hf", target, "template", f"Bedrock id {bedrock!r}: same tokenizer as {target!r}"
            )
        org, sep, rest = name.partition("/")
        if sep and org and rest and "://" not in name:
            return models.Resolution(model, "hf", name, "template", "an org/name id: a Hugging Face model")
        return None

    def offline(self, res, opts):
        from .heuristic import family_for
        from .tokenizers.hf import locate

        try:
            directory, where = locate(res.encoding, opts.tokenizer)
        except AssetError as e:
            if opts.tokenizer:
                raise
            return _degrade(res, opts, e, heuristic(family_for(res.encoding)))
        return _hf(res.encoding, str(directory), where, opts.engine)

    def framing(self, res, strategy, opts):
        if strategy.name == "hf-tokenizer":
            from .framing import HFFraming

            return HFFraming(strategy, opts.special_tokens)
        from .framing import OpenAIFraming

        return OpenAIFraming()

    def provider(self, res):
        import os

        from .remote import providers

        if not os.environ.get("VLLM_ENDPOINT") and os.environ.get("OMNITOK_TOKENIZE_URL"):
            return providers.SelfHosted
        return providers.VLLM

    def rows(self):
        out = [{"model": "org/name, hf:, vllm/, hosted_vllm/", "kind": "pattern", "target": "tokenizer files"}]
        out += [{"model": b, "kind": "bedrock id", "target": t} for b, t in models.BEDROCK_HF.items()]
        return out

    def names(self):
        return list(models.BEDROCK_HF)


BUILTIN = {"openai": OpenAIFamily, "claude": ClaudeFamily, "gemini": GeminiFamily, "hf": HFFamily}


CATCH_ALL_ORDER = 90  # families at or past this order (the HF org/name rule) go after plugins


@functools.cache
def builtin_families() -> tuple[Family, ...]:
    return tuple(sorted((cls() for cls in BUILTIN.values()), key=lambda f: (f.order, f.name)))


@functools.cache
def plugin_families() -> tuple[Family, ...]:
    """Families other packages register in the `omnitok.families` entry-point group. Scanning
    entry points costs tens of ms, so it happens only when no built-in family claims an id."""
    eps = [ep for ep in entry_points(group="omnitok.families") if ep.name not in BUILTIN]
    return tuple(sorted((ep.load()() for ep in eps), key=lambda f: (f.order, f.name)))


def resolution_order(include_plugins: bool = True):
    """Built-in families that match specific ids, then plugins, then the Hugging Face catch-all."""
    first = [f for f in builtin_families() if f.order < CATCH_ALL_ORDER]
    last = [f for f in builtin_families() if f.order >= CATCH_ALL_ORDER]
    yield from first
    if include_plugins:
        yield from plugin_families()
    yield from last


def families() -> tuple[Family, ...]:
    """All families, in resolution order."""
    return tuple(resolution_order())


def family(name: str) -> Family:
    for fam in builtin_families():
        if fam.name == name:
            return fam
    for fam in plugin_families():
        if fam.name == name:
            return fam
    raise UsageError(f"no model family {name!r} (known: {', '.join(f.name for f in families())})")
