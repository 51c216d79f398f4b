"""The last resort: a calibrated characters-per-token estimate, labelled `strategy: heuristic`,
`exact: false`, with the error band its calibration measured on held-out text. Not a family: the
strategy the families step down to when an exact one's files are missing.

Characters are split into CJK (Han, kana, Hangul), other non-ASCII letters, and the rest (counted
as code or prose by the text's content type). Each class has its own characters-per-token figure
per tokenizer family, measured by benchmarks/calibrate.py against the real tokenizers
(omnitok/data/heuristic.json); "other scripts" have no calibration text here and use a
conservative figure, so they are over-counted rather than under-counted.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path

from .base import content_type

DATA = Path(__file__).parent.parent / "data" / "heuristic.json"
OTHER_SCRIPT_CPT = 2.0  # uncalibrated: see the module docstring

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f]")
_OTHER = re.compile(r"[^\x00-\u024f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\s]")


@functools.cache
def calibration() -> dict:
    return json.loads(DATA.read_text(encoding="utf-8"))


def family_for(model_id: str) -> str:
    """Which calibrated family's figures to use for a model id."""
    name = model_id.lower()
    for key, fam in (("llama-3", "llama3"), ("llama3", "llama3"), ("qwen", "qwen2"), ("deepseek", "deepseek")):
        if key in name:
            return fam
    return "generic"


def estimate(text: str, cpt: dict) -> float:
    if not text:
        return 0.0
    cjk = len(_CJK.findall(text))
    other = len(_OTHER.findall(text))
    rest = len(text) - cjk - other
    kind = "code" if content_type(text) == "code" else "prose"
    return rest / cpt[kind] + cjk / cpt["cjk"] + other / OTHER_SCRIPT_CPT


class HeuristicStrategy:
    name = "heuristic"
    exact = False
    engine = "heuristic"

    def __init__(self, family: str = "generic"):
        data = calibration()["families"]
        if family not in data:
            family = "generic"
        self.family = family
        self._cpt = data[family]["cpt"]
        self.error_band = data[family]["error_band"]
        self.encoding = f"heuristic:{family}"
        self.source = f"calibration {DATA.name} ({family})"
        self.fingerprint = f"heuristic:{family}:v{calibration()['version']}"

    def count(self, text: str) -> int:
        return self.count_batch([text])[0]

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        cpt = self._cpt
        return [max(1, round(estimate(t, cpt))) if t else 0 for t in texts]


@functools.lru_cache(maxsize=8)
def strategy_for(family: str) -> HeuristicStrategy:
    """The heuristic strategy with a calibrated family's figures (family_for), loaded once."""
    return HeuristicStrategy(family)
