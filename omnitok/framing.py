"""Framing: how a model turns a record into texts to tokenize plus a fixed number of tokens.

Plain text is the text itself (plus the special tokens a Hugging Face tokenizer adds). A chat
`messages` array is framed the way the model's provider does it: OpenAI's documented per-message
overhead, or a Hugging Face model's own chat template.
"""

from __future__ import annotations

from .models import CHAT_RULES
from .records import ExtractError, type_name
from .tooldefs import tool_spec


def message_texts(messages: list, where: str = "messages", unit: str = "part") -> list[str]:
    """The texts of a chat's messages: string contents and text parts/blocks (`{"text": ...}`,
    with `type` absent or "text"). Anything else (images, documents, audio) cannot be counted
    offline and is an error rather than a silent undercount."""
    texts: list[str] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ExtractError(f"{where}[{i}] is not an object")
        content = msg.get("content", msg.get("parts"))
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and isinstance(part.get("text"), str) and part.get("type", "text") == "text":
                    texts.append(part["text"])
                else:
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise ExtractError(f"{where}[{i}].content[{j}]: a {kind!r} {unit} cannot be counted offline")
        elif content is not None:
            raise ExtractError(f"{where}[{i}].content is {type(content).__name__}; expected text or a list")
    return texts


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
        overhead += per_message
        for key, value in msg.items():
            if isinstance(value, str):
                texts.append(value)
            elif value is None:
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


def no_tools(tools: list | None, who: str, online: bool = True) -> None:
    """Tool definitions where no published rule says how they are counted: an error, never a
    silent undercount. `online`: the family has a count API that takes tools."""
    if tools:
        way = "count online (--online) or leave the 'tools' field out" if online else "leave the 'tools' field out"
        raise ExtractError(
            f"tools: {len(tools)} tool definition(s) cannot be counted offline for {who} (no published rule); {way}"
        )


class OpenAIFraming:
    def __init__(self, rule: str = "openai-chat"):
        self.rule = rule

    def text(self, text: str) -> tuple[list[str], int]:
        return [text], 0

    def chat(self, messages: list, where: str = "messages", tools: list | None = None) -> tuple[list[str], int]:
        no_tools(tools, "OpenAI models (OpenAI has no count API)", online=False)
        return chat_texts(messages, self.rule, where)


class HFFraming:
    """`len(tokenizer(text).input_ids)` for text; `apply_chat_template(..., add_generation_prompt=True)`
    for chats (rendered, then tokenized without extra special tokens, as transformers does)."""

    def __init__(self, strategy, special_tokens: bool = True):
        self.strategy = strategy
        self.added = strategy.specials_added if special_tokens else 0

    def text(self, text: str) -> tuple[list[str], int]:
        return [text], self.added

    def chat(self, messages: list, where: str = "messages", tools: list | None = None) -> tuple[list[str], int]:
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                raise ExtractError(f"{where}[{i}] is not an object")
        try:
            return [self.strategy.render_chat(messages, tools)], 0
        except ExtractError:
            raise
        except Exception as e:  # jinja2 TemplateError, raise_exception() in the template, ...
            if type(e).__name__ == "UsageError":
                raise
            raise ExtractError(f"{where}: the chat template of {self.strategy.model_id} failed: {e}") from None


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
