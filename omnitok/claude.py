"""Compatibility: the Claude family lives in omnitok.families.claude now."""

from .families.base import content_type
from .families.claude import (
    CALIBRATION_VERSION,
    GENERATIONS,
    TOOL_PROMPT,
    ClaudeEstimate,
    ClaudeFraming,
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
