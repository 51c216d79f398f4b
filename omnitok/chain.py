"""The strategy chain: for a resolved model, which strategy counts, in the spec's order.

    online exact (when allowed) -> local exact -> calibrated estimate -> heuristic

Every step down is visible: one warning per cause, and `strategy` / `exact` on every result.
With `strict`, any step down from exact is an error (exit 5) instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import models, notices
from .config import settings
from .errors import NotExactError, OmnitokError, RemoteError
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

    @property
    def online_allowed(self) -> bool:
        return self.online if self.online is not None else not settings().prefer_offline


def meta_of(strategy, model: str) -> dict:
    out = {"model": model, "encoding": strategy.encoding, "strategy": strategy.name, "exact": strategy.exact}
    if not strategy.exact:
        out["error_band"] = strategy.error_band
    return out


def not_exact(res: models.Resolution, strategy, why: str) -> NotExactError:
    return NotExactError(
        f"{res.model}: {why}; the count would be an estimate (strategy {strategy.name}, "
        f"about ±{strategy.error_band:.0%}) and --strict asks for exact counts",
        hint="--online with the provider's credentials gives exact counts where the provider has a count API",
    )


def offline(res: models.Resolution, opts: Options):
    """The best local strategy for a resolution (its family decides)."""
    from .families import family

    return family(res.family).offline(res, opts)


def provider_model(res: models.Resolution) -> str:
    """The model name a provider's count API is sent: the HF repo or Gemini id the family
    resolved to, else the id as given (without a litellm-style `anthropic/`)."""
    if res.family in ("hf", "gemini"):
        return res.encoding
    return res.model.removeprefix("anthropic/")


def cache_options(res: models.Resolution, special_tokens: bool) -> str:
    """The options that change a strategy's counts for this family (part of every cache key)."""
    return f"special={int(special_tokens)}" if res.family == "hf" else ""


def _provider(cls, res: models.Resolution, opts: Options):
    from .remote.http import HttpPolicy

    policy = HttpPolicy(timeout=opts.timeout, retries=opts.retries)
    if res.family == "hf":  # vLLM or self-hosted
        return cls(provider_model(res), policy, special_tokens=opts.special_tokens)
    return cls(provider_model(res), policy)


def plan(res: models.Resolution, opts: Options):
    """(strategy, framing) for a resolution under the options."""
    from .families import family

    fam = family(res.family)
    base = fam.offline(res, opts)
    base_framing = fam.framing(res, base, opts)
    cls = fam.provider(res) if opts.online_allowed else None
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
        raise not_exact(res, base, "no exact strategy is available offline")
    return base, base_framing


class Fallback:
    """An online strategy with the offline one behind it: on a failure that survived the retries,
    warn once and count the rest of the run offline. `last_meta` says, for the last batch, which
    items the fallback counted."""

    exact = True
    in_process = True
    cache_policy = "all"

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
                    self.framing.chat(list(item.messages), tools=list(item.tools))
                    if isinstance(item, ChatRequest)
                    else ([item], 0)
                )
            except ExtractError as e:
                raise OmnitokError(str(e)) from None
            out.append(sum(self.secondary.count_batch(texts)) + overhead)
        self.last_meta = [meta_of(self.secondary, self.model)] * len(items)
        return out
