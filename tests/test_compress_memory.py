"""`omnitok compress` of a large context: peak memory a small multiple of the input, and the
same output bytes as the implementation that held a word list, a shingle matrix and a TF-IDF
matrix for the whole context (the hashes below were computed by that code, commit c55ea5f)."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import sys
from pathlib import Path

import pytest

from omnitok.compression import Compressor, _local_model_installed

OMNITOK = str(Path(sys.executable).with_name("omnitok"))


def make_context(size: int, seed: int = 0, duplicates: float = 0.05) -> str:
    """About `size` characters of deterministic text shaped like a real context: prose
    paragraphs (Zipf-distributed words, abbreviations, numbers), lists, code fences, log lines,
    CJK sentences, and exact and near duplicates of earlier paragraphs."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "tu", "sa", "vor", "del", "qui", "an", "est", "por", "lin", "gra", "ble"]
    vocab = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(20_000)]
    vocab += ["running", "cities", "walked", "glasses", "status", "analysis", "treaty", "river", "flood"]
    weights = list(itertools.accumulate(1 / (i + 10) for i in range(len(vocab))))
    common = ["the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with", "by", "as", "at"]

    def sentence() -> str:
        words = [
            rng.choice(common) if rng.random() < 0.35 else w for w in rng.choices(vocab, weights, k=rng.randint(4, 28))
        ]
        if rng.random() < 0.1:
            words.insert(rng.randrange(len(words)), str(rng.randint(1, 3000)))
        if rng.random() < 0.05:
            words.insert(1, rng.choice(["Dr.", "Mr.", "e.g.", "J. K."]))
        return " ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!", '."'])

    parts: list[str] = []
    total = 0
    while total < size:
        r = rng.random()
        if r < duplicates and parts:
            p = rng.choice(parts)
        elif r < duplicates * 1.6 and parts:
            p = rng.choice(parts) + " " + sentence()
        elif r < 0.12:
            p = "\n".join(f"- {sentence()}" for _ in range(rng.randint(2, 6)))
        elif r < 0.14:
            p = "```python\n" + "\n".join(f"x{i} = f({i})" for i in range(rng.randint(2, 10))) + "\n```"
        elif r < 0.16:
            p = "\n".join(
                f"2024-01-{rng.randint(1, 28):02d} INFO {rng.choice(vocab)} id={rng.randint(1, 99999)}"
                for _ in range(rng.randint(3, 12))
            )
        elif r < 0.17:
            p = "".join(
                rng.choice(["中文句子。", "第二句！", "东京很大。", "河流泛滥了？"]) for _ in range(rng.randint(1, 6))
            )
        else:
            p = " ".join(sentence() for _ in range(rng.randint(1, 9)))
        parts.append(p)
        total += len(p) + 2
    return "\n\n".join(parts)


def make_documents(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    paragraphs = make_context(n * 700, seed).split("\n\n")
    return [
        {"title": f"Document {i} {rng.choice(['river', 'treaty', ''])}", "text": p}
        for i, p in enumerate(paragraphs[:n])
    ]


QUERY = "who signed the treaty after the river flood in 1783? gralo kaminren"


def cases():
    """(name, method, kwargs for Compressor, context, query, budget kwargs)."""
    return [
        ("short", "bm25", {}, "The 1998 final was won by Chicago. Rain fell. Chicago won again in 1998.", "who won in 1998", {"budget": 9}),
        ("short-no-query", "bm25", {}, make_context(2_000, 1), None, {"ratio": 0.5}),
        ("prose-1mb", "bm25", {}, make_context(1_000_000, 2), QUERY, {"ratio": 0.1}),
        ("duplicates-1mb", "bm25", {"gap_marker": "[...]"}, make_context(1_000_000, 3, duplicates=0.3), QUERY, {"target_compression": 0.8}),
        ("documents", "bm25", {}, make_documents(400, 4), QUERY, {"budget": 3000}),
        ("no-query-200kb", "bm25", {}, make_context(200_000, 5, duplicates=0.2), None, {"ratio": 0.2}),
        ("no-dedup", "bm25", {"dedup": False}, make_context(300_000, 6, duplicates=0.3), QUERY, {"ratio": 0.3}),
        ("dense-20kb", "dense", {}, make_context(20_000, 7, duplicates=0.2), QUERY, {"ratio": 0.3}),
        ("combined-no-query", "combined", {}, make_documents(30, 8), None, {"budget": 500}),
    ]  # fmt: skip


# sha256 of json.dumps(result.to_dict(), sort_keys=True, ensure_ascii=False), from commit c55ea5f.
EXPECTED = {
    "short": "068b301490a03f3a345777474128ab1c253a9ca574dd6739c317c4ee9a3a9323",
    "short-no-query": "a4f94e9fa34c30d4960ffdf4afdf2612f48facb5bc67c4f6423d6bd19df5b262",
    "prose-1mb": "e03cdffce6d4f9612f5f880078ca4c35ed504509dfa882e6a735c13df4bddbec",
    "duplicates-1mb": "8c6842a8aeef048a0a308a7d57d883775d1f28c5f1b855b137c4c0d189bde1bb",
    "documents": "08655047929b68c66c687ab7ddfe31c6cddceccf4df864fcb9d8d96b5cbab6ad",
    "no-query-200kb": "0fbbaddaa54df66e78f2dd1b184cb614e733ab8e574989a707ccbdc87f2fcf35",
    "no-dedup": "0b2404bafaf328e3852dcfb6c698f090cca32f6a01618c9ddbf95e8a093c94e1",
    "dense-20kb": "4537fd8d15a13031973cbf31c80782fd05f4c18bcb694be011ebf11dbcccaa0b",
    "combined-no-query": "4fea822d2d1509c6d7071ca1f9732201fa2e3134ecf1399aa61f5061a200fa5a",
}


def digest(result) -> str:
    return hashlib.sha256(json.dumps(result.to_dict(), sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@pytest.mark.parametrize("case", cases(), ids=lambda c: c[0])
def test_same_output_as_before(case):
    name, method, options, context, query, budget = case
    if method != "bm25" and not _local_model_installed():
        pytest.skip("needs the local embedding model")
    comp = Compressor("gpt-4o", method=method, cache="off", **options)
    result = comp.compress(context, query, **budget)
    assert result.compressed_tokens <= result.budget
    assert digest(result) == EXPECTED[name], (name, result.kept_units, result.compressed_tokens, result.quality_score)
