"""One encoder for the local sentence model, shared by dense compression and BERTScore.

`encoder(model_dir, num_layers, device, precision)` gives an object whose `run(ids, mask)` turns a
padded (batch, length) int64 batch into (batch, length, hidden) float32 hidden states of layer
`num_layers`. Backends:

- CPU: ONNX Runtime (`onnxruntime`), the model exported once with torch.onnx.export into
  $OMNITOK_HOME/assets/onnx/<hash of the model files, layers, precision>/ (see onnx.py); fp32, or
  int8 (dynamic quantization) where a caller accepts its tolerance, or "fused" (fp32 through ONNX
  Runtime's transformer fusions; BERTScore's: faster on long texts). Without onnxruntime: torch.
- CUDA: torch on the GPU, fp32 or fp16 ("fused" is fp32 there).

`batches` cuts texts sorted by token length into batches of similar lengths, so padding costs
little; `run_batches` pads and runs them, on CPU one batch a core at a time (each ONNX Runtime run
single-threaded, the batches spread over the cores), and hands each batch's hidden states to a
reducer in the worker that ran it; `tokenizer` loads the model's fast tokenizer with the
`tokenizers` library alone.
"""

from __future__ import annotations

import functools
import glob
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..cpu import cores  # noqa: F401 - the cores batches run on (onnx.py takes it from here)
from ..errors import UsageError

if TYPE_CHECKING:  # numpy is imported where a batch is padded: choosing a device (validate's
    import numpy as np  # and compress's --device) needs none of it

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "int8", "fp16", "fused")
# Batch limits from benchmarks/embed_bench.py --sweep (2 cores): small batches whose activations
# stay in a core's cache, one a core, beat large batches split across cores by intra-op threads.
MAX_BATCH = 8
MAX_TOKENS = 512
# torch (a GPU, or CPU without onnxruntime) runs one batch at a time over all its threads: larger.
TORCH_MAX_BATCH = 128
TORCH_MAX_TOKENS = 4096

_default_device = "auto"


def set_default_device(device: str) -> str:
    """The device models use when a caller gives none (the CLI's --device); checked now: 'cuda'
    without a GPU is a usage error. Returns the resolved device."""
    global _default_device
    resolved = resolve_device(device)
    _default_device = device
    return resolved


def resolve_device(device: str | None = None) -> str:
    """'cpu' or 'cuda'. auto: cuda when torch sees a GPU (torch is imported only when the machine
    has NVIDIA device nodes at all, so auto costs nothing on a CPU-only machine)."""
    device = device or _default_device
    if device not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}; got {device!r}")
    if device == "cpu":
        return "cpu"
    gpu = _cuda_available()
    if device == "cuda" and not gpu:
        raise UsageError("--device cuda: no CUDA GPU is visible to torch here (use --device cpu or auto)")
    return "cuda" if gpu else "cpu"


@functools.lru_cache(maxsize=1)
def _cuda_available() -> bool:
    if not glob.glob("/dev/nvidia[0-9]*") and not os.environ.get("OMNITOK_PROBE_CUDA"):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def model_config(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())


def tokenizer(model_dir: Path, max_length: int):
    """The model's tokenizer.json through `tokenizers`: no padding, truncation at max_length
    (special tokens included), as transformers' fast tokenizer with truncation=True does."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def encode_batch(tok, texts: list[str]) -> list:
    """`tok.encode_batch(texts)` (a `tokenizer`'s), a text holding lone surrogates (JSON's
    "\\ud800" decodes to one) first cleaned to U+FFFD as tiktoken cleans it: `tokenizers` refuses
    a str that is not valid UTF-8 with a TypeError, which a server would answer with a 500."""
    try:
        return tok.encode_batch(texts)
    except TypeError:
        return tok.encode_batch([t.encode("utf-16", "surrogatepass").decode("utf-16", "replace") for t in texts])


def batches(lengths: list[int], max_batch: int = MAX_BATCH, max_tokens: int = MAX_TOKENS) -> list[list[int]]:
    """Indices sorted by length (longest first), cut into batches of at most max_batch texts and
    max_tokens padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    cur: list[int] = []
    width = 0  # the batch's longest: its first text
    for i in order:
        if cur and (len(cur) >= max_batch or width * (len(cur) + 1) > max_tokens):
            out.append(cur)
            cur = []
        if not cur:
            width = max(lengths[i], 1)
        cur.append(i)
    if cur:
        out.append(cur)
    return out


def pad(seqs: list[list[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for j, s in enumerate(seqs):
        ids[j, : len(s)] = s
        mask[j, : len(s)] = 1
    return ids, mask


def run_batches(
    enc, ids: list[list[int]], reduce, max_batch: int | None = None, max_tokens: int | None = None, pad_id=0
):
    """Run `enc` over the token id lists `ids`, batched by length (`batches`), and call
    reduce(indices, hidden, mask) for each batch (in the thread that ran it: reducers write to
    disjoint rows or keys). Limits: the encoder's (max_batch, max_tokens) unless given. An encoder
    whose pool() gives threads (ONNX Runtime on CPU) runs one batch a thread at once,
    each run single-threaded; others run one batch at a time."""
    longest = max(map(len, ids), default=0)  # a text longer than max_tokens is a batch of its own
    max_batch = max_batch or enc.max_batch
    todo = batches([len(x) for x in ids], max_batch, max(max_tokens or enc.max_tokens, longest))

    def one(idx: list[int]) -> None:
        x, mask = pad([ids[j] for j in idx], pad_id)
        reduce(idx, enc.run(x, mask), mask)

    pool = enc.pool() if len(todo) > 1 else None
    if pool is None:
        for idx in todo:
            one(idx)
    else:
        for _ in pool.map(one, todo):  # re-raises a worker's exception here
            pass


def onnx_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


@functools.lru_cache(maxsize=8)
def encoder(model_dir: str, num_layers: int | None = None, device: str = "cpu", precision: str = "fp32"):
    """The encoder for a resolved device ('cpu' or 'cuda'): ONNX Runtime on CPU when installed,
    else torch. One per (model, layers, device, precision) in a process."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}")
    if device == "cpu" and onnx_available() and os.environ.get("OMNITOK_EMBED_BACKEND", "onnx") == "onnx":
        from .onnx import OrtEncoder

        return OrtEncoder(Path(model_dir), num_layers, precision if precision in ("int8", "fused") else "fp32")
    from .torch_backend import TorchEncoder

    half = precision == "fp16" and device == "cuda"
    return TorchEncoder(Path(model_dir), num_layers, device, "fp16" if half else "fp32")
