"""Compatibility: the heuristic estimate lives in omnitok.families.heuristic now."""

from .families.base import content_type
from .families.heuristic import (
    _CJK,
    _OTHER,
    DATA,
    OTHER_SCRIPT_CPT,
    HeuristicStrategy,
    calibration,
    estimate,
    family_for,
)

# _CJK and _OTHER: benchmarks/calibrate.py reads them through this module.
__all__ = [
    "_CJK",
    "_OTHER",
    "DATA",
    "OTHER_SCRIPT_CPT",
    "HeuristicStrategy",
    "calibration",
    "content_type",
    "estimate",
    "family_for",
]
