"""The strategy chain: for a resolved model, which strategy counts and how texts are framed, in
the spec's order.

    online exact (when allowed) -> local exact -> calibrated estimate -> heuristic

The family (asked from the registry by name, never imported here) supplies each step: its offline
strategy (exact, else the estimate it steps down to), its framing, and its online provider. This
module composes them: the online strategy first when it is allowed and configured, with the
offline one behind it (Fallback). Every step down is visible: one warning per cause, and
`strategy` / `engine` / `exact` on every result. With `strict`, any step down from exact is an error (exit 5)
instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import notices
from .config import settings
from .errors import NotExactError, OmnitokError, RemoteError
from .families import Resolution, default_framing, family, not_exact
from .records import ExtractError
from .tooldefs import tool_spec

__all__ = [
    "Fallback",
    "OnlineFraming",
    "Options",
    "cache_options",
    "meta_of",
    "not_exact",
    "offline",
    "plan",
    "provider_model",
]


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
    """The fields every result row of `strategy` carries: model, encoding, strategy (how it counts),
    engine (what counted: gigatoken, tiktoken, tokenizers, sentencepiece, a provider such as
    anthropic, heuristic; null for a plugin strategy that has no `engine`), exact, and error_band
    for estimates."""
    out = {
        "model": model,
        "encoding": strategy.encoding,
        "strategy": strategy.name,
        "engine": getattr(strategy, "engine", None),
        "exact": strategy.exact,
    }
    if not strategy.exact:
        out["error_band"] = strategy.error_band
    if getattr(strategy, "calibration", None):  # the installed calibration an estimate used (its id)
        out["calibration"] = strategy.calibration
    return out


def offline(res: Resolution, opts: Options):
    """The best local strategy for a resolution (its family decides)."""
    return family(res.family).offline(res, opts)


def provider_model(res: Resolution) -> str:
    """The model name a provider's count API is sent (its family decides: the HF repo or Gemini id
    it resolved to, else the id as given)."""
    return family(res.family).provider_model(res)


def cache_options(res: Resolution, special_tokens: bool) -> str:
    """The options that change a strategy's counts for this family (part of every cache key)."""
    return family(res.family).cache_options(res, special_tokens)


def plan(res: Resolution, opts: Options):
    """(strategy, framing) for a resolution under the options."""
    fam = family(res.family)
    base = fam.offline(res, opts)
    base_framing = fam.framing(res, base, opts)
    if base_framing is None:
        base_framing = default_framing()
    cls = fam.provider(res) if opts.online_allowed else None
    if cls is not None:
        missing = cls.available()
        if missing is None:
            from .remote.providers import RemoteStrategy

            primary = RemoteStrategy(fam.online(cls, res, opts), opts.concurrency)
            strategy = Fallback(primary, base, base_framing, res.model, opts.strict)
            return strategy, OnlineFraming()
        notices.warn_once(
            f"online-unavailable:{cls.name}",
            f"online counting for {res.model} is unavailable ({missing}); counting offline with {base.name}",
        )
    if opts.strict and not base.exact:
        raise not_exact(res, base, "no exact strategy is available offline")
    return base, base_framing


class OnlineFraming:
    """For count APIs: texts go as they are, a chat goes whole (the API frames it)."""

    def text(self, text: str) -> tuple[list, int]:
        return [text], 0

    def chat(self, messages: list, where: str = "messages", tools: list | None = None) -> tuple[list, int]:
        from .remote.providers import ChatRequest

        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                raise ExtractError(f"{where}[{i}] is not an object")
        for tool in tools or ():
            tool_spec(tool)
        return [ChatRequest(tuple(messages), tuple(tools or ()))], 0


class Fallback:
    """An online strategy with the offline one behind it: on a failure that survived the retries,
    warn once and count the rest of the run offline. `last_meta` says, for the last batch, which
    items the fallback counted. Only a provider's failure (RemoteError) falls back: a request over
    its budget of provider calls (UpstreamLimitError) is the request's fault and goes through."""

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
