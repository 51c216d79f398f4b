"""Tokenizer strategies: the protocol, the engines, and how a strategy is loaded."""

from .base import Strategy
from .tiktoken_strategy import load_strategy

__all__ = ["Strategy", "load_strategy"]
