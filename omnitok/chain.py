"""Compatibility: the strategy chain lives in omnitok.strategy_chain now."""

from .strategy_chain import (
    Fallback,
    OnlineFraming,
    Options,
    cache_options,
    meta_of,
    not_exact,
    offline,
    plan,
    provider_model,
)

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
