"""Where tokenizer files live, how they are found and how they are verified."""

from .store import find_tiktoken_file, verify_sha256

__all__ = ["find_tiktoken_file", "verify_sha256"]
