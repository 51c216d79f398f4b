"""The torch backend: the model as transformers loads it, on CPU (no onnxruntime) or a GPU."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UsageError


def load_model(model_dir: Path, num_layers: int | None = None, attention: str | None = None):
    """The model in fp32, eval mode, cut to its first num_layers layers (as bert-score does);
    attention: transformers' attn_implementation (the ONNX export asks for "eager", whose graph
    ONNX Runtime's optimizer fuses)."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError:
        raise UsageError("the local model needs torch and transformers (pip install 'omnitok[embeddings]')") from None
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    extra = {"attn_implementation": attention} if attention else {}
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32, **extra).eval()
    layers = model.encoder.layer
    n = num_layers or len(layers)
    if not 0 < n <= len(layers):
        raise UsageError(f"num_layers must be 1..{len(layers)} for {model_dir}")
    model.encoder.layer = torch.nn.ModuleList(list(layers[:n]))
    return model


class TorchEncoder:
    def __init__(self, model_dir: Path, num_layers: int | None, device: str = "cpu", precision: str = "fp32"):
        import torch

        from . import TORCH_MAX_BATCH, TORCH_MAX_TOKENS, cores

        torch.set_num_threads(cores())
        self.torch = torch
        model = load_model(model_dir, num_layers)
        if precision == "fp16":
            model = model.half()
        self.model = model.to(device)
        self.device = device
        self.hidden_size = model.config.hidden_size
        self.name = f"torch-{device}-{precision}"
        self.max_batch, self.max_tokens = TORCH_MAX_BATCH, TORCH_MAX_TOKENS

    def pool(self):
        """None: torch runs one batch at a time on its own threads."""
        return None

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            out = self.model(
                input_ids=torch.from_numpy(ids).to(self.device), attention_mask=torch.from_numpy(mask).to(self.device)
            )[0]
            return out.float().cpu().numpy()
