"""The model-backed paths on this machine's cores: dense/combined compress and BERTScore, ONNX
Runtime (omnitok.embedding) against the torch path and bert-score. Standalone:

    python -m benchmarks.embed_bench [--n-retention 100] [--n-speed 50] [--n-pairs 100] [--sweep]

Every timed run is a fresh process (`--child ...`) with an empty $OMNITOK_HOME, so "cold" means no
ONNX export, no vector cache, nothing loaded; the export (and int8 quantization) time is reported
apart, and the model load too. "warm" is the same contexts a second time in the same process
(every vector cached). Retention: NQ-open (../shared/data, built as compress_bench builds it),
default weights (not tuned), budgets 1/4 and 1/10, gold at positions 1, 10, 20.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "gpt-4o"
# (label, OMNITOK_EMBED_BACKEND, precision)
BACKENDS = (("torch fp32", "torch", "fp32"), ("onnx fp32", "onnx", "fp32"), ("onnx int8", "onnx", "int8"))


def _nq(n: int, seed: int = 1):
    from .compress_bench import distractors, load_nq, nq_cases

    rows = load_nq()
    near = distractors(rows)
    idx = list(range(len(rows)))
    random.Random(seed).shuffle(idx)
    return nq_cases(rows, near, idx[:n])


def _compressors(precision: str):
    from omnitok.compression import Compressor
    from omnitok.compression.embed import LocalEmbedder

    start = time.perf_counter()
    emb = LocalEmbedder(precision=precision)
    load = time.perf_counter() - start
    comps = {}
    for m in ("dense", "combined"):
        comps[m] = Compressor(MODEL, method=m, cache="off")
        comps[m]._embedder = emb  # one vector cache for both, as compress_bench does
    return comps, emb, load


def child_speed(method: str, precision: str, n: int) -> dict:
    """cold: every context's texts embedded (the vector cache emptied before each context, so no
    context is served from another's vectors: NQ contexts share distractor passages), in a fresh
    process whose first model runs are timed too; warm: the same contexts again, every vector
    cached."""
    from omnitok.compression.segment import segment
    from omnitok.embedding.onnx import EXPORT_SECONDS

    cases = [c for c in _nq(n) if c[3] == 10]
    size = sum(len(segment(c[0])[1].encode()) for c in cases)
    comps, emb, load = _compressors(precision)
    comp = comps[method]
    comp.count("warm the tokenizer")
    start, cpu = time.perf_counter(), time.process_time()
    for ctx, q, _, _ in cases:
        emb._cache.clear()
        comp.compress(ctx, q, ratio=0.25)
    cold, cold_cpu = time.perf_counter() - start, time.process_time() - cpu
    for ctx, q, _, _ in cases:
        comp.compress(ctx, q, ratio=0.25)
    start = time.perf_counter()
    for ctx, q, _, _ in cases:
        comp.compress(ctx, q, ratio=0.25)
    warm = time.perf_counter() - start
    export = sum(EXPORT_SECONDS.values())
    return {"mb": size / 1e6, "contexts": len(cases), "cold_s": cold, "cold_cpu_s": cold_cpu, "warm_s": warm,
            "load_s": load - export,
            "export_s": export, "encoder": emb.encoder.name, "load_avg": os.getloadavg()[0]}  # fmt: skip


def child_retention(precision: str, n: int) -> dict:
    cases = _nq(n, seed=3)
    comps, emb, _ = _compressors(precision)
    out = {}
    for method, comp in comps.items():
        for label, ratio in (("1/4", 0.25), ("1/10", 0.1)):
            hits: dict[int, list[bool]] = {}
            for ctx, q, answers, pos in cases:
                text = comp.compress(ctx, q, ratio=ratio).compressed_text
                hits.setdefault(pos, []).append(any(a in text for a in answers))
            out[f"{method} {label}"] = {p: float(np.mean(v)) for p, v in sorted(hits.items())}
    return {"retention": out, "encoder": emb.encoder.name}


def child_bertscore(which: str, n: int) -> dict:
    from .run import prose_pairs

    pairs = prose_pairs(n)
    cands, refs = [c for _, c in pairs], [o for o, _ in pairs]
    start = time.perf_counter()
    if which == "bert-score":
        from bert_score import score

        from omnitok.validation.bertscore import default_model_dir

        imported = time.perf_counter() - start
        start = time.perf_counter()
        P, R, F = score(cands, refs, model_type=str(default_model_dir()), num_layers=6, batch_size=64)
        scores = [(p.item(), r.item(), f.item()) for p, r, f in zip(P, R, F, strict=True)]
        return {"import_s": imported, "score_s": time.perf_counter() - start, "export_s": 0.0, "scores": scores,
                "load_avg": os.getloadavg()[0]}  # fmt: skip
    from omnitok.embedding.onnx import EXPORT_SECONDS
    from omnitok.validation.bertscore import BERTScorer

    imported = time.perf_counter() - start
    start = time.perf_counter()
    if which == "omnitok-torch":
        os.environ["OMNITOK_EMBED_BACKEND"] = "torch"
    scorer = BERTScorer()
    scores = scorer.score(cands, refs)
    total = time.perf_counter() - start
    export = sum(EXPORT_SECONDS.values())
    return {"import_s": imported, "score_s": total - export, "export_s": export, "scores": scores,
            "encoder": scorer.encoder.name, "load_avg": os.getloadavg()[0]}  # fmt: skip


def child_sweep() -> dict:
    """Tokens/s of compress's embedder (ONNX Runtime int8 and fp32) on NQ sentences, one context's
    texts a call as compress embeds them, by batch limits and by how batches use the cores: one
    batch a core at once (single-threaded runs, omnitok's way), or one batch at a time over
    intra-op threads (ONNX Runtime's default). The best of 2 rounds."""
    from omnitok.compression.embed import LocalEmbedder
    from omnitok.compression.segment import segment
    from omnitok.embedding import cores, onnx

    contexts = []
    for ctx, q, _, _ in _nq(10)[::3]:
        units = segment(ctx)[0]
        titles = {u.passage: u.text for u in units if u.kind == "title"}
        contexts.append([f"{titles[u.passage]}: {u.text}" if u.kind != "title" else u.text for u in units] + [q])
    limits = ((4, 512), (8, 512), (32, 2048), (128, 4096))
    out = {}
    for precision in ("int8", "fp32"):
        emb = LocalEmbedder(precision=precision)
        tokens = sum(len(e.ids) for texts in contexts for e in emb.tokenizer.encode_batch(texts))
        threaded = onnx.OrtEncoder.__new__(onnx.OrtEncoder)  # the default session: intra-op threads
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = cores()
        so.log_severity_level = 3
        path = onnx.exported(emb.encoder_dir, None, precision)
        threaded.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        threaded.hidden_size, threaded.parallel, threaded._pool = emb.encoder.hidden_size, 1, None
        threaded.name, threaded.max_batch, threaded.max_tokens = "intra-op threads", 8, 512
        ours = emb.encoder
        for way, enc in (("a batch a core", ours), ("intra-op threads", threaded)):
            emb.encoder = enc
            emb._embed(contexts[0])
            for max_batch, max_tokens in limits:
                enc.max_batch, enc.max_tokens = max_batch, max_tokens
                best = float("inf")
                for _ in range(2):
                    start = time.perf_counter()
                    for texts in contexts:
                        emb._embed(texts)
                    best = min(best, time.perf_counter() - start)
                out[f"{precision}, {way}, batch <= {max_batch} texts / {max_tokens} tokens"] = tokens / best
        emb.encoder = ours
    return {"tokens": tokens, "contexts": len(contexts), "per_s": out, "load_avg": os.getloadavg()[0]}


def run_child(args: list[str], env: dict | None = None, home: str | None = None) -> dict:
    """A fresh process; its $OMNITOK_HOME empty unless home is given (an export cache to reuse)."""
    with tempfile.TemporaryDirectory() as empty, tempfile.NamedTemporaryFile(suffix=".json") as out:
        e = {**os.environ, "OMNITOK_HOME": home or empty, **(env or {})}
        subprocess.run([sys.executable, "-m", "benchmarks.embed_bench", "--child", out.name, *args], cwd=ROOT,
                       env=e, check=True)  # fmt: skip
        return json.loads(Path(out.name).read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-retention", type=int, default=100)
    ap.add_argument("--n-speed", type=int, default=50)
    ap.add_argument("--n-pairs", type=int, default=100)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--skip", default="", help="comma-separated: speed, retention, bertscore")
    a = ap.parse_args()
    skip = set(a.skip.split(","))
    lines = [f"## Model-backed paths on {len(os.sched_getaffinity(0))} cores (`python -m benchmarks.embed_bench`)", ""]
    if a.sweep:
        s = run_child(["sweep"])
        lines += [
            f"Embedding speed by batch limits, {s['contexts']} NQ contexts' sentences ({s['tokens']} word pieces), "
            f"a call per context (word pieces/s, best of 2; load average {s['load_avg']:.1f}):",
            "",
        ]
        lines += [f"- {k}: {v:.0f}" for k, v in s["per_s"].items()] + [""]
    if "speed" not in skip:
        lines += [
            f"Compress throughput, NQ contexts at position 10, budget 1/4, {a.n_speed} contexts. cold: a fresh "
            "process with an empty ONNX export cache, every context's texts embedded (the vector cache emptied "
            "before each context), its first model runs timed too (export and model load reported apart, not in "
            "MB/s); CPU s/MB: the process's CPU time (all threads) per MB cold, which other jobs on the cores "
            "change far less than wall time; warm: the same contexts again, every vector cached. Load average at "
            "the end of each run:",
            "",
            "| method | backend | MB | cold MB/s | cold CPU s/MB | warm MB/s | model load s | export s | load avg |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for method in ("dense", "combined"):
            for label, backend, precision in BACKENDS:
                r = run_child(["speed", method, precision, str(a.n_speed)], {"OMNITOK_EMBED_BACKEND": backend})
                lines.append(
                    f"| {method} | {label} ({r['encoder']}) | {r['mb']:.2f} | {r['mb'] / r['cold_s']:.3f} | "
                    f"{r['cold_cpu_s'] / r['mb']:.1f} | "
                    f"{r['mb'] / r['warm_s']:.2f} | {r['load_s']:.1f} | {r['export_s']:.1f} | {r['load_avg']:.1f} |"
                )
                print(lines[-1], file=sys.stderr)
        lines.append("")
    if "retention" not in skip:
        got = {}
        for label, backend, precision in BACKENDS:
            got[label] = run_child(["retention", precision, str(a.n_retention)], {"OMNITOK_EMBED_BACKEND": backend})
        keys = list(got[BACKENDS[0][0]]["retention"])
        lines += [
            f"Answer retention, NQ-open, {a.n_retention} questions x gold positions 1/10/20, default weights:",
            "",
            "| method budget | " + " | ".join(f"{b} @1/@10/@20" for b, _, _ in BACKENDS) + " |",
            "|---|" + "---:|" * len(BACKENDS),
        ]
        for k in keys:
            cells = ["/".join(f"{v:.1%}" for v in got[b]["retention"][k].values()) for b, _, _ in BACKENDS]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        for b, _, _ in BACKENDS[1:]:
            worst = max(
                abs(got[b]["retention"][k][p] - got[BACKENDS[0][0]]["retention"][k][p])
                for k in keys
                for p in got[b]["retention"][k]
            )
            lines.append(f"\nLargest difference {b} vs torch fp32: {worst * 100:.1f} points.")
        lines.append("")
    if "bertscore" not in skip:
        ref = run_child(["bertscore", "bert-score", str(a.n_pairs)])
        with tempfile.TemporaryDirectory() as home:
            ours = run_child(["bertscore", "omnitok", str(a.n_pairs)], home=home)  # exports into home
            again = run_child(["bertscore", "omnitok", str(a.n_pairs)], home=home)  # a fresh process, export cached
        worst = max(
            abs(x - y) for o, r in zip(ours["scores"], ref["scores"], strict=True) for x, y in zip(o, r, strict=True)
        )
        n = a.n_pairs
        lines += [
            f"BERTScore, {n} pairs of 2-4 KB prose (benchmarks/run.py's prose_pairs), all-MiniLM-L6-v2 layer 6, "
            "each a fresh process; model load included, imports and the one-time ONNX export not:",
            "",
            "| scorer | import s | export s | score s | pairs/s | vs bert-score |",
            "|---|---:|---:|---:|---:|---:|",
            f"| bert-score `score()` | {ref['import_s']:.1f} | - | {ref['score_s']:.1f} | {n / ref['score_s']:.1f} "
            "| 1.00x |",
            f"| omnitok ({ours['encoder']}) | {ours['import_s']:.1f} | {ours['export_s']:.1f} | "
            f"{ours['score_s']:.1f} | {n / ours['score_s']:.1f} | {ref['score_s'] / ours['score_s']:.2f}x |",
            "",
            f"Largest P/R/F difference from bert-score: {worst:.1e}. A second fresh process, the export "
            f"cached (what every later run does): {again['score_s']:.1f} s including the model load, "
            f"{n / again['score_s']:.1f} pairs/s, {ref['score_s'] / again['score_s']:.2f}x bert-score. Load average "
            f"at the end of each run: bert-score {ref['load_avg']:.1f}, omnitok {ours['load_avg']:.1f} and "
            f"{again['load_avg']:.1f}.",
            "",
        ]
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        out, kind, *rest = sys.argv[2:]
        if kind == "speed":
            result = child_speed(rest[0], rest[1], int(rest[2]))
        elif kind == "retention":
            result = child_retention(rest[0], int(rest[1]))
        elif kind == "bertscore":
            result = child_bertscore(rest[0], int(rest[1]))
        else:
            result = child_sweep()
        Path(out).write_text(json.dumps(result))
    else:
        main()
