"""Compute the BERTScore rescale baseline for omnitok's default model (all-MiniLM-L6-v2), the way
bert-score made its own: the mean precision, recall and F1 of unrelated sentence pairs. Sentences
are taken from the Wikipedia passages in ../shared/data (1,000 random pairs, seed 0).

    .venv/bin/python -m benchmarks.bertscore_baseline   # writes omnitok/data/bertscore_baseline_*.csv
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

from omnitok.validation.bertscore import BASELINE, BERTScorer

ROOT = Path(__file__).resolve().parents[1]


def main(pairs: int = 1000) -> None:
    sentences = []
    with gzip.open(ROOT.parent / "shared/data/nq-open-oracle.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            for ctx in json.loads(line)["ctxs"]:
                sentences += [s for s in re.split(r"(?<=[.!?])\s+", ctx["text"]) if len(s.split()) >= 5]
    rng = random.Random(0)
    cands = [rng.choice(sentences) for _ in range(pairs)]
    refs = [rng.choice(sentences) for _ in range(pairs)]
    scorer = BERTScorer()
    scores = scorer.score(cands, refs)
    p, r, f = (sum(s[i] for s in scores) / len(scores) for i in range(3))
    BASELINE.write_text(f"LAYER,P,R,F\n{scorer.num_layers},{p:.6f},{r:.6f},{f:.6f}\n")
    print(BASELINE.read_text())


if __name__ == "__main__":
    main()
