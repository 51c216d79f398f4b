"""`omnitok compress` of a large context: peak memory a small multiple of the input, and the
same output bytes as the implementation that held a word list, a shingle matrix and a TF-IDF
matrix for the whole context (the hashes below were computed by that code, commit 9be3714)."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pytest

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
            rng.choice(common) if rng.random() < 0.35 else w
            for w in rng.choices(vocab, cum_weights=weights, k=rng.randint(4, 28))
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
    """(name, method, kwargs for Compressor, context, query, budget kwargs); the context a
    function that makes it, called by the test that runs the case: collection (on every test
    process) makes none of them."""
    return [
        ("short", "bm25", {}, lambda: "The 1998 final was won by Chicago. Rain fell. Chicago won again in 1998.", "who won in 1998", {"budget": 9}),
        ("short-no-query", "bm25", {}, lambda: make_context(2_000, 1), None, {"ratio": 0.5}),
        ("prose-1mb", "bm25", {}, lambda: make_context(1_000_000, 2), QUERY, {"ratio": 0.1}),
        ("duplicates-1mb", "bm25", {"gap_marker": "[...]"}, lambda: make_context(1_000_000, 3, duplicates=0.3), QUERY, {"target_compression": 0.8}),
        ("documents", "bm25", {}, lambda: make_documents(400, 4), QUERY, {"budget": 3000}),
        ("no-query-200kb", "bm25", {}, lambda: make_context(200_000, 5, duplicates=0.2), None, {"ratio": 0.2}),
        ("no-dedup", "bm25", {"dedup": False}, lambda: make_context(300_000, 6, duplicates=0.3), QUERY, {"ratio": 0.3}),
        ("dense-300kb", "dense", {}, lambda: make_context(300_000, 7, duplicates=0.2), QUERY, {"ratio": 0.3}),
        ("combined-no-query", "combined", {}, lambda: make_documents(300, 8), None, {"budget": 5000}),
        ("combined-1mb", "combined", {"gap_marker": "[...]"}, lambda: make_context(1_000_000, 9, duplicates=0.1), QUERY, {"ratio": 0.1}),
    ]  # fmt: skip


def hash_embedder():
    """A stand-in for the embedding model, so that the dense path's scoring, caching and
    selection are compared, not a model (which may change): each word hashed to one of 64
    dimensions, rows of unit norm. Its class is made here, not at import: collection (on every
    test process) imports neither numpy nor omnitok.compression."""
    import numpy as np

    from omnitok.compression.embed import _Cached

    class HashEmbedder(_Cached):
        name = "hash"

        def _embed(self, texts: list[str]) -> np.ndarray:
            m = np.zeros((len(texts), 64), dtype=np.float32)
            for i, t in enumerate(texts):
                for w in t.lower().split():
                    m[i, zlib.crc32(w.encode()) % 64] += 1
            return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)

    return HashEmbedder()


# sha256 of json.dumps(result.to_dict(), sort_keys=True, ensure_ascii=False), from commit 9be3714.
EXPECTED = {
    "short": "068b301490a03f3a345777474128ab1c253a9ca574dd6739c317c4ee9a3a9323",
    "short-no-query": "8afdf865faf5cedae26e4f82255ee4a6bda7d428be2c32841c053e773cf3c80a",
    "prose-1mb": "63ce85cdeb5c3650af98c5c961ed5c52dd6f0b39c315bcd72df621a9f04066a8",
    "duplicates-1mb": "12a7735b172d684308b11bea6301051e42923c9aac1f5b3f7229fa28c2e1466c",
    "documents": "8da80e3d824fe75aef459d87f598b2ee73f8e56d1a9b188f09dbc85ac7a80caf",
    "no-query-200kb": "9f53078044bc526f92c57272cd72f6058f8c08323fb640a203ad1ed897d83e64",
    "no-dedup": "7373fa344bcf85b0e20d339085480129ed0a6c4ede7ed071e6399596aca425ef",
    "dense-300kb": "9a64e5de364b865542bc7d9515763268c44330d3afebd241b053064207d10f59",
    "combined-no-query": "cca839430132cec4f14bee935ccdaedc1211cb1f3e5ace01331c65ef10febd94",
    "combined-1mb": "0bdabd6d021c98e749deb7f63bb8e89175b67574bae791cfe9902a100d4ac7f2",
}


def digest(result) -> str:
    return hashlib.sha256(json.dumps(result.to_dict(), sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@pytest.mark.parametrize("case", cases(), ids=lambda c: c[0])
def test_same_output_as_before(case):
    from omnitok.compression import Compressor

    name, method, options, make, query, budget = case
    context = make()
    comp = Compressor("gpt-4o", method=method, cache="off", **options)
    comp._embedder = hash_embedder()
    result = comp.compress(context, query, **budget)
    assert result.compressed_tokens <= result.budget
    assert digest(result) == EXPECTED[name], (name, result.kept_units, result.compressed_tokens, result.quality_score)


# Runs the installed console script in a child process and reports its peak resident memory:
# VmHWM from /proc/self/status at exit, not ru_maxrss, which Linux carries over from the forking
# parent (pytest, with whatever earlier tests loaded) into the child across exec. Read by an
# atexit function registered before the run: the console script ends its process itself once its
# atexit functions ran (cli/app.py's _leave).
_PEAK = textwrap.dedent(
    """
    import atexit, runpy, sys
    script = sys.argv.pop(1)
    sys.argv[0] = script

    def peak():
        status = open("/proc/self/status").read()
        sys.stderr.write("\\npeak_kb=" + status.split("VmHWM:", 1)[1].split()[0] + "\\n")
        sys.stderr.flush()

    atexit.register(peak)
    runpy.run_path(script, run_name="__main__")
    """
)
# Peak above a small run's, per MB of context. Measured here: ~12.7 (the text read and its
# bytes ~3, the tokenizer's state after counting the whole context ~3, units ~3.3, MinHash
# signatures and their banding ~3.5); the code before the 2026-11 change needed ~170. It grows
# with the context, a little more than in proportion (2026-12, this machine: 6.8, 8.1, 8.6 and
# 9.3 at 1, 2, 4 and 8 MB), so a 4 MB context is held to the bound as an 8 MB one was.
MB_PER_MB = 16


def peak_mb(args: list[str]) -> tuple[float, bytes]:
    r = subprocess.run([sys.executable, "-c", _PEAK, OMNITOK, *args], capture_output=True, timeout=300)
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 0, err
    return int(err.rsplit("peak_kb=", 1)[1]) / 1024, r.stdout


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_peak_memory_is_a_small_multiple_of_the_context(tmp_path):
    """`omnitok compress` of a 4 MB context: the peak above the same command on a 20 KB one
    stays under MB_PER_MB times the context (the shingle matrix alone was ~60 times it). 4 MB,
    not 8: half the run's CPU, and still ~200 times the small run's context, with ~6,700
    duplicates (the ~13,000 of 8 MB checked no more than > 1000 does)."""
    text = make_context(4_000_000, 11, duplicates=0.1)
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")
    (tmp_path / "small.txt").write_text(make_context(20_000, 11), encoding="utf-8")
    args = ["compress", "-m", "gpt-4o", "--method", "bm25", "--query", QUERY, "--ratio", "0.1", "--format", "json"]
    base, _ = peak_mb([*args, "--context", str(tmp_path / "small.txt")])
    start = time.perf_counter()
    peak, out = peak_mb([*args, "--context", str(tmp_path / "big.txt")])
    seconds = time.perf_counter() - start
    row = json.loads(out)
    assert 0 < row["compressed_tokens"] <= row["budget"] and row["duplicates"] > 1000
    size = len(text.encode()) / 2**20
    assert peak - base < MB_PER_MB * size, f"peak {peak:.0f} MB, small run {base:.0f} MB, context {size:.1f} MB"
    print(f"{size:.1f} MB context: peak {peak:.0f} MB (small run {base:.0f} MB), {seconds:.1f} s")
