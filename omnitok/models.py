"""Compatibility: the model registry lives in omnitok.families now (Resolution and the id-table
helpers in families/base.py, each family's id table in its module, resolve() in the package)."""

from .families import DEFAULT_MODEL, Resolution, for_encoding, resolve, suggest
from .families.base import lookup, table_rows
from .families.hf import BEDROCK_HF, strip_bedrock
from .families.openai import CHAT_RULE_OVERRIDES, CHAT_RULES
from .families.openai import MODELS as OPENAI_MODELS
from .families.openai import PREFIXES as OPENAI_PREFIXES

__all__ = [
    "BEDROCK_HF",
    "CHAT_RULES",
    "CHAT_RULE_OVERRIDES",
    "DEFAULT_MODEL",
    "OPENAI_MODELS",
    "OPENAI_PREFIXES",
    "Resolution",
    "for_encoding",
    "lookup",
    "resolve",
    "strip_bedrock",
    "suggest",
    "table_rows",
]
