"""Compatibility: the Claude family lives in omnitok.families.claude now."""

from .families.claude import (
    CALIBRATION_VERSION,
    GENERATIONS,
    TOOL_PROMPT,
    ClaudeEstimate,
    ClaudeFraming,
    content_type,
    generation,
)

__all__ = [
    "CALIBRATION_VERSION",
    "GENERATIONS",
    "TOOL_PROMPT",
    "ClaudeEstimate",
    "ClaudeFraming",
    "content_type",
    "generation",
]
