"""The OpenAI family: model ids -> tiktoken encodings (two plain dicts, exact ids and prefixes, as
tiktoken's model.py has them), OpenAI's documented chat framing, and exact offline counts with the
embedded or stored vocabularies. OpenAI has no count API: there is no online step.
"""

from __future__ import annotations

from ..errors import ExtractError, UsageError
from ..records import type_name
from .base import BundleFiles, Family, Resolution, check_id, check_role, lookup, no_tools, table_rows

# Chat framing rules (OpenAI cookbook, "How to count tokens with tiktoken"): each message costs
# `per_message` tokens plus its fields' tokens, plus `per_name` if it has a name; every reply is
# primed with `reply` more tokens.
CHAT_RULES: dict[str, tuple[int, int, int]] = {
    "openai-chat": (3, 1, 3),  # gpt-3.5-turbo-0125, gpt-4-0613, gpt-4o, gpt-4o-mini and later
    "openai-chat-0301": (4, -1, 3),  # gpt-3.5-turbo-0301: <|start|>{role/name}\n{content}<|end|>\n
}

# Exact model ids -> encoding.
MODELS: dict[str, str] = {
    # reasoning
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4-mini": "o200k_base",
    # chat
    "gpt-5": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4o": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-3.5-turbo": "cl100k_base",
    "gpt-3.5": "cl100k_base",
    "gpt-35-turbo": "cl100k_base",  # Azure's name
    "gpt-oss-120b": "o200k_harmony",
    "gpt-oss-20b": "o200k_harmony",
    # base
    "davinci-002": "cl100k_base",
    "babbage-002": "cl100k_base",
    # embeddings
    "text-embedding-3-large": "cl100k_base",
    "text-embedding-3-small": "cl100k_base",
    "text-embedding-ada-002": "cl100k_base",
    # legacy (vocabularies not embedded; found in the tiktoken cache or a bundle). Every id of
    # tiktoken's MODEL_TO_ENCODING is here (tests/test_model_ids.py checks it).
    # text
    "text-davinci-003": "p50k_base",
    "text-davinci-002": "p50k_base",
    "text-davinci-001": "r50k_base",
    "text-curie-001": "r50k_base",
    "text-babbage-001": "r50k_base",
    "text-ada-001": "r50k_base",
    "davinci": "r50k_base",
    "curie": "r50k_base",
    "babbage": "r50k_base",
    "ada": "r50k_base",
    # code
    "code-davinci-002": "p50k_base",
    "code-davinci-001": "p50k_base",
    "code-cushman-002": "p50k_base",
    "code-cushman-001": "p50k_base",
    "davinci-codex": "p50k_base",
    "cushman-codex": "p50k_base",
    # edit
    "text-davinci-edit-001": "p50k_edit",
    "code-davinci-edit-001": "p50k_edit",
    # old embeddings
    "text-similarity-davinci-001": "r50k_base",
    "text-similarity-curie-001": "r50k_base",
    "text-similarity-babbage-001": "r50k_base",
    "text-similarity-ada-001": "r50k_base",
    "text-search-davinci-doc-001": "r50k_base",
    "text-search-curie-doc-001": "r50k_base",
    "text-search-babbage-doc-001": "r50k_base",
    "text-search-ada-doc-001": "r50k_base",
    "code-search-babbage-code-001": "r50k_base",
    "code-search-ada-code-001": "r50k_base",
    # open source: tiktoken's gpt2 encoding is r50k_base's ranks, split pattern and <|endoftext|>,
    # read from GPT-2's vocab.bpe / encoder.json instead of a .tiktoken file
    "gpt2": "r50k_base",
    "gpt-2": "r50k_base",
}

# Prefixes (dated snapshots, fine-tunes, variants) -> encoding. Longest match wins.
PREFIXES: dict[str, str] = {
    "o1-": "o200k_base",
    "o3-": "o200k_base",
    "o4-mini-": "o200k_base",
    "gpt-5": "o200k_base",  # gpt-5-mini, gpt-5.1, ... (tiktoken's prefix)
    "gpt-4.5-": "o200k_base",
    "gpt-4.1-": "o200k_base",
    "gpt-4o-": "o200k_base",
    "chatgpt-4o-": "o200k_base",
    "gpt-4-": "cl100k_base",
    "gpt-3.5-turbo-": "cl100k_base",
    "gpt-35-turbo-": "cl100k_base",
    "gpt-oss-": "o200k_harmony",
    "ft:gpt-4.1": "o200k_base",
    "ft:gpt-4o": "o200k_base",
    "ft:gpt-4": "cl100k_base",
    "ft:gpt-3.5-turbo": "cl100k_base",
    "ft:davinci-002": "cl100k_base",
    "ft:babbage-002": "cl100k_base",
}

# Ids whose chat framing differs from the family default.
CHAT_RULE_OVERRIDES: dict[str, str] = {"gpt-3.5-turbo-0301": "openai-chat-0301"}


def chat_texts(messages: list, rule: str = "openai-chat", where: str = "messages") -> tuple[list[str], int]:
    """The texts of a chat `messages` array and its framing overhead in tokens.

    OpenAI's rule (openai-cookbook, How_to_count_tokens_with_tiktoken): every message costs
    `per_message` tokens plus the tokens of each of its string fields (role, content, name, ...),
    plus `per_name` when it has a name; the reply is primed with `reply` tokens. A content given
    as parts counts its text parts; other parts (images, audio) cannot be counted offline and
    are an error rather than a silent undercount.
    """
    per_message, per_name, reply = CHAT_RULES[rule]
    texts: list[str] = []
    overhead = reply
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ExtractError(f"{where}[{i}] is {type_name(msg)}, expected an object")
        check_role(msg, where, i)
        overhead += per_message
        for key, value in msg.items():
            if isinstance(value, str):
                texts.append(value)
            elif value is None:  # (a null content: an assistant's tool calls)
                continue
            elif key == "content" and isinstance(value, list):
                for j, part in enumerate(value):
                    if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                        texts.append(part["text"])
                    else:
                        kind = part.get("type") if isinstance(part, dict) else type_name(part)
                        raise ExtractError(
                            f"{where}[{i}].content[{j}]: a {kind!r} part cannot be counted offline; only text parts can"
                        )
            else:
                raise ExtractError(f"{where}[{i}].{key} is {type_name(value)}; only string fields are counted")
            if key == "name":
                overhead += per_name
    return texts, overhead


class OpenAIFraming:
    """Texts as they are; chats by OpenAI's per-message rule (CHAT_RULES). Also the framing of any
    family that names none (omnitok.families.default_framing)."""

    def __init__(self, rule: str = "openai-chat"):
        self.rule = rule

    def text(self, text: str) -> tuple[list[str], int]:
        return [text], 0

    def chat(self, messages: list, where: str = "messages", tools: list | None = None) -> tuple[list[str], int]:
        no_tools(tools, "OpenAI models (OpenAI has no count API)", online=False)
        return chat_texts(messages, self.rule, where)


class OpenAIFamily(Family):
    name = "openai"
    order = 10
    chain = "local exact (embedded o200k/cl100k, verified)"
    _PREFIXES = ("openai/", "azure/")

    def resolve(self, model):
        name = model.strip()
        for prefix in self._PREFIXES:
            name = name.removeprefix(prefix)
        found = lookup(name, MODELS, PREFIXES)
        if found is None:
            return None
        rule = CHAT_RULE_OVERRIDES.get(name, "openai-chat")
        return Resolution(model, "openai", found[0], rule, found[1])

    def offline(self, res, opts):
        if opts.tokenizer:
            raise UsageError(f"--tokenizer applies to Hugging Face models, not to {res.model!r} ({res.family})")
        from ..tokenizers import load_strategy

        return load_strategy(res.target, opts.engine)

    def framing(self, res, strategy, opts):
        return OpenAIFraming(res.chat_rule)

    def bundle_files(self, res):
        return (BundleFiles("tiktoken", res.target),)

    def rows(self):
        return table_rows(MODELS, PREFIXES)


def for_encoding(encoding: str, model: str | None = None) -> Resolution:
    """A resolution for an explicit --encoding (the model id, if any, is only a label); tiktoken's
    names for an encoding omnitok has under another name (gpt2) are accepted."""
    from ..tokenizers.openai_encodings import ALIASES

    if model:
        check_id(model)  # only a label here, but shown in results and the server's metrics
    return Resolution(
        model or encoding, "openai", ALIASES.get(encoding, encoding), "openai-chat", f"--encoding {encoding}"
    )
