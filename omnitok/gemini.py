"""Compatibility: the Gemini family lives in omnitok.families.gemini now."""

from .families.gemini import (
    HF_TOKENIZERS,
    MODELS,
    PREFIXES,
    SENTENCEPIECE,
    GeminiFraming,
    GemmaSentencePiece,
    SpmVocabulary,
    find_spm,
    spm_candidates,
    tokenizer_name,
)

__all__ = [
    "HF_TOKENIZERS",
    "MODELS",
    "PREFIXES",
    "SENTENCEPIECE",
    "GeminiFraming",
    "GemmaSentencePiece",
    "SpmVocabulary",
    "find_spm",
    "spm_candidates",
    "tokenizer_name",
]
