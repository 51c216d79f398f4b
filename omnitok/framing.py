"""Compatibility: each family's chat framing lives in its module of omnitok.families now (OpenAI's
in families/openai.py, the Hugging Face template's in families/hf.py, the shared helpers in
families/base.py), and the online one in omnitok.strategy_chain."""

from .families.base import message_texts, no_tools
from .families.hf import HFFraming
from .families.openai import CHAT_RULES, OpenAIFraming, chat_texts
from .strategy_chain import OnlineFraming

__all__ = ["CHAT_RULES", "HFFraming", "OnlineFraming", "OpenAIFraming", "chat_texts", "message_texts", "no_tools"]
