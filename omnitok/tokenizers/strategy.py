"""Old path: moved to omnitok.tokenizers.tiktoken_strategy (ARCHITECTURE.md, "Old module paths")."""

from .tiktoken_strategy import TIKTOKEN_RULE_VERSION, TiktokenStrategy, load_strategy

__all__ = ["TIKTOKEN_RULE_VERSION", "TiktokenStrategy", "load_strategy"]
