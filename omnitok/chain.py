"""The strategy chain: for a resolved model, which strategy counts, in the spec's order.

    online exact (when allowed) -> local exact -> calibrated estimate -> heuristic

Every step down is visible: one warning per cause, and `strategy` / `exact` on every result.
With `strict`, any step down from exact is an error (exit 5) instead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from . import models, notices
from .config import settings
from .errors import AssetError, NotExactError, OmnitokError, RemoteError, UsageError
from .records import ExtractError


@dataclass(frozen=True)
class Options:
    engine: str = "auto"
    tokenizer: str | None = None
    special_tokens: bool = True
    online: bool | None = None  # None: the config's prefer_offline decides
    strict: bool = False
    concurrency: int = 8
    timeout: float = 30.0
    retries: int = 2
    extra: dict = field(default_factory=dict)

    @property
    def online_allowed(self) -> bool:
        return self.online if self.online is not None else not settings().prefer_offline


def meta_of(strategy, model: str) -> dict:
    out = {"model": model, "encoding": strategy.encoding, "strategy": strategy.name, "exact": strategy.exact}
    if not strategy.exact:
        out["error_band"] = strategy.error_band
    return out


# --- offline strategies, cached per process -------------------------------------------------


@functools.lru_cache(maxsize=32)
def _hf(model_id: str, directory: str, where: str, engine: str):
    from .tokenizers.hf import HFStrategy

    return HFStrategy(model_id, Path(directory), engine, where)


@functools.lru_cache(maxsize=8)
def _claude(gen: str, engine: str):
    from .claude import ClaudeEstimate

    return ClaudeEstimate(gen, engine)


@functools.lru_cache(maxsize=8)
def _heuristic(family: str):
    from .heuristic import HeuristicStrategy

    return HeuristicStrategy(family)


@functools.lru_cache(maxsize=4)
def _gemma_spm(name: str, path: str, where: str):
    from .gemini import GemmaSentencePiece

    return GemmaSentencePiece(name, Path(path), where)


def _gemini(res: models.Resolution, opts: Options):
    from . import gemini

    name = gemini.tokenizer_name(res.encoding)
    try:
        if name is None:
            raise AssetError(f"no Gemma vocabulary is known for {res.encoding!r}")
        if name in gemini.HF_TOKENIZERS:
            from .assets.hf import find_hf_tokenizer

            hf_id = gemini.HF_TOKENIZERS[name]
            directory, where = find_hf_tokenizer(hf_id, opts.tokenizer)
            return _hf(hf_id, str(directory), where, opts.engine)
        path, where = gemini.find_spm(name)
        return _gemma_spm(name, str(path), where)
    except AssetError as e:
        strategy = _heuristic("generic")
        if opts.strict and not opts.online_allowed:
            raise _not_exact(res, strategy, e.message) from None
        notices.warn_once(
            f"no-assets:{res.encoding}",
            f"{e.message}; counting {res.model} with the heuristic (exact: false, about "
            f"±{strategy.error_band:.0%}). {e.hint or ''}".rstrip(),
        )
        return strategy


def _framing(res: models.Resolution, strategy, opts: Options):
    if res.family == "gemini":
        from .gemini import GeminiFraming

        return GeminiFraming()
    if strategy.name == "hf-tokenizer":
        from .framing import HFFraming

        return HFFraming(strategy, opts.special_tokens)
    if res.family == "claude":
        from .claude import ClaudeFraming

        return ClaudeFraming()
    from .framing import OpenAIFraming

    return OpenAIFraming(res.chat_rule if res.family == "openai" else "openai-chat")


def _not_exact(res: models.Resolution, strategy, why: str) -> NotExactError:
    return NotExactError(
        f"{res.model}: {why}; the count would be an estimate (strategy {strategy.name}, "
        f"about ±{strategy.error_band:.0%}) and --strict asks for exact counts",
        hint="--online with the provider's credentials gives exact counts where the provider has a count API",
    )


def offline(res: models.Resolution, opts: Options):
    """The best local strategy for a resolution."""
    if res.family == "hf":
        from .assets.hf import find_hf_tokenizer

        try:
            directory, where = find_hf_tokenizer(res.encoding, opts.tokenizer)
        except AssetError as e:
            if opts.tokenizer:
                raise
            from .heuristic import family_for

            strategy = _heuristic(family_for(res.encoding))
            if opts.strict:
                raise _not_exact(res, strategy, f"no tokenizer files on this machine ({e.message})") from None
            notices.warn_once(
                f"no-assets:{res.encoding}",
                f"no tokenizer files for {res.encoding!r} on this machine; counting with the heuristic "
                f"(exact: false, about ±{strategy.error_band:.0%}). {e.hint}",
            )
            return strategy
        return _hf(res.encoding, str(directory), where, opts.engine)
    if opts.tokenizer:
        raise UsageError(f"--tokenizer applies to Hugging Face models, not to {res.model!r} ({res.family})")
    if res.family == "claude":
        return _claude(res.encoding, opts.engine)
    if res.family == "gemini":
        return _gemini(res, opts)
    from .tokenizers import load_strategy

    return load_strategy(res.encoding, opts.engine)


def _provider_class(res: models.Resolution):
    from .remote import providers

    if res.family == "claude":
        return providers.Bedrock if "anthropic." in res.model else providers.Anthropic
    if res.family == "gemini":
        return providers.Gemini
    if res.family == "hf":
        return providers.VLLM
    return None


def _provider(cls, res: models.Resolution, opts: Options):
    from .remote.http import HttpPolicy

    policy = HttpPolicy(timeout=opts.timeout, retries=opts.retries)
    if res.family == "hf":
        return cls(res.encoding, policy, special_tokens=opts.special_tokens)
    name = res.model.split("/", 1)[1] if res.model.startswith(("anthropic/", "gemini/", "vertex_ai/")) else res.model
    return cls(name, policy)


def plan(res: models.Resolution, opts: Options):
    """(strategy, framing) for a resolution under the options."""
    base = offline(res, opts)
    base_framing = _framing(res, base, opts)
    cls = _provider_class(res) if opts.online_allowed else None
    if cls is not None:
        missing = cls.available()
        if missing is None:
            from .framing import OnlineFraming
            from .remote.providers import RemoteStrategy

            primary = RemoteStrategy(_provider(cls, res, opts), opts.concurrency)
            strategy = Fallback(primary, base, base_framing, res.model, opts.strict)
            return strategy, OnlineFraming()
        notices.warn_once(
            f"online-unavailable:{cls.name}",
            f"online counting for {res.model} is unavailable ({missing}); counting offline with {base.name}",
        )
    if opts.strict and not base.exact:
        raise _not_exact(res, base, "no exact strategy is available offline")
    return base, base_framing


class Fallback:
    """An online strategy with the offline one behind it: on a failure that survived the retries,
    warn once and count the rest of the run offline. `last_meta` says, for the last batch, which
    items the fallback counted."""

    exact = True
    in_process = True

    def __init__(self, primary, secondary, secondary_framing, model: str, strict: bool):
        self.primary = primary
        self.secondary = secondary
        self.framing = secondary_framing
        self.model = model
        self.strict = strict
        self.degraded = False
        self.name = primary.name
        self.encoding = primary.encoding
        self.engine = primary.engine
        self.source = primary.source
        self.fingerprint = primary.fingerprint
        self.last_meta: list[dict | None] | None = None

    def count(self, item) -> int:
        return self.count_batch([item])[0]

    def count_batch(self, items) -> list[int]:
        if not self.degraded:
            try:
                counts = self.primary.count_batch(items)
                self.last_meta = None
                return counts
            except RemoteError as e:
                if self.strict and not self.secondary.exact:
                    raise NotExactError(
                        f"{e.message}; the fallback ({self.secondary.name}) is an estimate and --strict asks "
                        "for exact counts"
                    ) from None
                self.degraded = True
                notices.warn_once(
                    f"online-failed:{self.primary.name}",
                    f"{e.message}; counting the rest offline with {self.secondary.name} "
                    f"(exact: {str(self.secondary.exact).lower()})",
                )
        from .remote.providers import ChatRequest

        out = []
        for item in items:
            try:
                texts, overhead = (
                    self.framing.chat(list(item.messages)) if isinstance(item, ChatRequest) else ([item], 0)
                )
            except ExtractError as e:
                raise OmnitokError(str(e)) from None
            out.append(sum(self.secondary.count_batch(texts)) + overhead)
        self.last_meta = [meta_of(self.secondary, self.model)] * len(items)
        return out
