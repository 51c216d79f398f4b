"""Compression benchmark: does the answer survive? (`make bench`, step "compress")

Data (../shared/data, see its README), built as the lost-in-the-middle paper builds it:
- NQ-open: each question's gold passage among 19 distractors, the BM25-nearest passages of
  other questions (passages holding one of the question's answer strings are never distractors),
  in BM25 order, with the gold one at position 1, 10 or 20. Metric: the share of questions where a
  gold answer string occurs in the compressed text.
- Key-value retrieval (75 keys): the JSON object of records, a record a line, the queried key as
  the query. Metric: the queried `"key": "value"` record survives whole.

Budgets 1/2, 1/4, 1/10 of the original's o200k tokens (model gpt-4o). Methods: omnitok (bm25,
dense, combined) against first-k token truncation, random passages and random sentences, the
last two under the same exact-budget selector. Weights are tuned on a dev split of questions
disjoint from the reported ones. Throughput (MB of context per second, cold caches) and peak
memory are measured per method in a fresh process, and for one large context (LARGE_MB of NQ
passages) through the CLI.

    python -m benchmarks.compress_bench    # the tables, on stdout (OMNITOK_BENCH_COMPRESS_N=500)
    python -m benchmarks.compress_bench --large    # the large context alone
    python -m benchmarks.compress_bench --speed    # the throughput table alone
"""

from __future__ import annotations

import gzip
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

from omnitok.compression import Compressor, Weights
from omnitok.compression.score import terms
from omnitok.compression.segment import PASSAGE_SEP, Unit, segment
from omnitok.compression.select import select

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORK = Path(__file__).parent / ".work"
EMB_CACHE = WORK / "compress-embeddings.npz"
MODEL = "gpt-4o"
BUDGETS = (("1/2", 0.5), ("1/4", 0.25), ("1/10", 0.1))
POSITIONS = (1, 10, 20)
OURS = ("bm25", "dense", "combined")
BASELINES = ("first-k", "random passages", "random sentences")
DEV_N = 100
LARGE_MB = 20


def load_nq() -> list[dict]:
    with gzip.open(DATA / "nq-open-oracle.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    for r in rows:
        gold = next(c for c in r["ctxs"] if c.get("isgold", True))
        r["gold"] = {"title": gold["title"], "text": gold["text"]}
    return rows


def distractors(rows: list[dict], k: int = 19) -> list[list[int]]:
    """For each question, the k BM25-nearest other passages that hold none of its answers."""
    from scipy import sparse

    docs = [terms(r["gold"]["title"] + " " + r["gold"]["text"]) for r in rows]
    vocab: dict[str, int] = {}
    ind, ptr, data = [], [0], []
    for d in docs:
        counts: dict[int, int] = {}
        for t in d:
            j = vocab.setdefault(t, len(vocab))
            counts[j] = counts.get(j, 0) + 1
        ind += list(counts)
        data += list(counts.values())
        ptr.append(len(ind))
    tf = sparse.csr_matrix((np.array(data, float), ind, ptr), shape=(len(docs), len(vocab)))
    n, dl = len(docs), np.array([len(d) for d in docs], float)
    df = np.bincount(tf.indices, minlength=len(vocab))
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
    k1, b = 1.2, 0.75
    norm = k1 * (1 - b + b * dl / dl.mean())
    w = tf.tocoo()
    weights = sparse.csr_matrix(
        (idf[w.col] * w.data * (k1 + 1) / (w.data + norm[w.row]), (w.row, w.col)), shape=tf.shape
    )
    out = []
    for i, r in enumerate(rows):
        q = [vocab[t] for t in set(terms(r["question"])) if t in vocab]
        scores = np.asarray(weights[:, q].sum(axis=1)).ravel() if q else np.zeros(n)
        chosen = []
        for j in np.argsort(-scores, kind="stable"):
            if j == i:
                continue
            g = rows[j]["gold"]
            if any(a in g["title"] + "\n" + g["text"] for a in r["answers"]):
                continue
            chosen.append(int(j))
            if len(chosen) == k:
                break
        out.append(chosen)
    return out


def nq_cases(rows, near, indices) -> list[tuple[list[dict], str, list[str], int]]:
    """(context, question, answers, gold position) for each question and position."""
    cases = []
    for i in indices:
        others = [rows[j]["gold"] for j in near[i]]
        for pos in POSITIONS:
            ctx = others[: pos - 1] + [rows[i]["gold"]] + others[pos - 1 :]
            cases.append((ctx, rows[i]["question"], rows[i]["answers"], pos))
    return cases


def kv_cases(limit: int | None = None) -> list[tuple[str, str, list[str], int]]:
    cases = []
    with gzip.open(DATA / "kv-retrieval-75_keys.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            ex = json.loads(line)
            pairs = [f'"{k}": "{v}"' for k, v in ex["ordered_kv_records"]]
            ctx = "JSON data:\n{" + ",\n ".join(pairs) + "}"
            pos = [k for k, _ in ex["ordered_kv_records"]].index(ex["key"]) + 1
            cases.append((ctx, ex["key"], [f'"{ex["key"]}": "{ex["value"]}"'], pos))
            if limit and len(cases) >= limit:
                break
    return cases


class Runner:
    """Every method, sharing one token counter and one embedding cache."""

    def __init__(self, weights: dict[str, Weights] | None = None):
        self.comp = {m: Compressor(MODEL, method=m, cache="off", weights=(weights or {}).get(m)) for m in OURS}
        base = self.comp["bm25"]
        self.count = base.count
        from .run import reference_encoding

        self.enc = reference_encoding("o200k_base")
        self.rng = random.Random(0)
        shared = None
        for m in ("dense", "combined"):
            if shared is None:
                shared = self.comp[m].embedder()
                load_embeddings(shared)
            self.comp[m]._embedder = shared
        self.embedder = shared

    def run(self, method: str, ctx, query: str, ratio: float) -> str:
        if method in self.comp:
            return self.comp[method].compress(ctx, query, ratio=ratio).compressed_text
        units, original = segment(ctx)
        budget = int(ratio * self.count(original))
        if method == "first-k":
            return self.enc.decode(self.enc.encode_ordinary(original)[:budget])
        if method == "random passages":
            by = {}
            for u in units:
                by.setdefault(u.passage, []).append(u)
            units = [
                Unit(i, i, "".join((x.sep if k else "") + x.text for k, x in enumerate(us)), PASSAGE_SEP if i else "")
                for i, us in enumerate(by.values())
            ]
        self.comp["bm25"].measure(units)
        scores = np.array([self.rng.random() for _ in units])
        for u in units:
            u.kind = "sentence"  # a title is a unit like any other for the random baselines
        return select(units, scores, budget, self.count, gamma=0.0)[1]


def load_embeddings(embedder) -> None:
    if EMB_CACHE.exists():
        data = np.load(EMB_CACHE, allow_pickle=False)
        for t, v in zip(data["texts"].tolist(), data["vecs"], strict=True):
            embedder._cache[t] = v


def save_embeddings(embedder) -> None:
    if embedder is None or not embedder._cache:
        return
    texts = list(embedder._cache)
    WORK.mkdir(exist_ok=True)
    np.savez(EMB_CACHE, texts=np.array(texts), vecs=np.stack([embedder._cache[t] for t in texts]))


def retention(runner: Runner, method: str, cases, ratio: float) -> dict[int, float]:
    hits: dict[int, list[bool]] = {}
    for ctx, q, answers, pos in cases:
        text = runner.run(method, ctx, q, ratio)
        hits.setdefault(pos, []).append(any(a in text for a in answers))
    return {p: sum(v) / len(v) for p, v in sorted(hits.items())}


def tune(rows, near, dev_idx) -> dict[str, Weights]:
    """Grid search on the dev questions: mean retention at 1/4 and 1/10 over the three positions."""
    cases = nq_cases(rows, near, dev_idx)
    best: dict[str, Weights] = {}
    runner = Runner()

    def objective(method: str, w: Weights) -> float:
        runner.comp[method].weights = w
        return float(np.mean([np.mean(list(retention(runner, method, cases, r).values())) for r in (0.25, 0.1)]))

    for method in ("bm25", "dense"):
        grid = [Weights(passage=p, gamma=g) for p in (0.2, 0.4, 0.6, 0.8) for g in (0.0, 0.25, 0.5, 0.75)]
        scored = [(objective(method, w), w) for w in grid]
        best[method] = max(scored, key=lambda x: x[0])[1]
        print(f"  tuned {method}: {best[method]} ({max(s for s, _ in scored):.3f} on dev)", file=sys.stderr)
    mixes = []
    gamma = (best["bm25"].gamma + best["dense"].gamma) / 2
    for p in sorted({best["bm25"].passage, best["dense"].passage, 0.6}):
        for d in (0.3, 0.5, 0.7):
            w = Weights(passage=p, dense=d, gamma=gamma)
            mixes.append((objective("combined", w), w))
    best["combined"] = max(mixes, key=lambda x: x[0])[1]
    print(f"  tuned combined: {best['combined']} ({max(s for s, _ in mixes):.3f} on dev)", file=sys.stderr)
    save_embeddings(runner.embedder)
    return best


def throughput(method: str, n: int = 150) -> dict:
    """MB of context per second for one method on n contexts, cold: a fresh process, the model
    load not timed, every context's texts embedded (the vector cache emptied before each one: NQ
    contexts share distractor passages, and a vector another context left would be a warm hit)."""
    rows = load_nq()
    near = distractors(rows)
    idx = list(range(len(rows)))
    random.Random(1).shuffle(idx)
    cases = [c for c in nq_cases(rows, near, idx[:n]) if c[3] == 10]
    comp = Compressor(MODEL, method=method, cache="off")
    size = sum(len(segment(c[0])[1].encode()) for c in cases)
    embedder = comp.embedder() if method != "bm25" else None  # model load is not throughput
    comp.count("warm the tokenizer")
    start, cpu = time.perf_counter(), time.process_time()
    for ctx, q, _, _ in cases:
        if embedder is not None:
            embedder._cache.clear()
        comp.compress(ctx, q, ratio=0.25)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"method": method, "mb": size / 1e6, "seconds": wall, "mb_per_s": size / 1e6 / wall,
            "cpu_s_per_mb": cpu / (size / 1e6), "load_avg": os.getloadavg()[0]}  # fmt: skip


def large_context() -> dict:
    """One LARGE_MB context through `omnitok compress --method bm25` (budget 1/10): wall time and
    peak memory of the process. NQ's gold passages, shuffled and repeated to size (most units
    are then duplicates; each unit costs the same time and memory either way)."""
    from .run import peak_rss

    rows = load_nq()
    passages = [f"{r['gold']['title']}\n{r['gold']['text']}" for r in rows]
    rng, parts, size = random.Random(2), [], 0
    while size < LARGE_MB * 1e6:
        rng.shuffle(passages)
        parts += passages
        size += sum(len(p) + len(PASSAGE_SEP) for p in passages)
    WORK.mkdir(exist_ok=True)
    path = WORK / "compress-large.txt"
    path.write_text(PASSAGE_SEP.join(parts), encoding="utf-8")
    omnitok = str(Path(sys.executable).with_name("omnitok"))
    cmd = [omnitok, "compress", "-m", MODEL, "--method", "bm25", "--context", str(path), "--query", rows[0]["question"]]
    cmd += ["--ratio", "0.1", "--format", "json", "-o", str(WORK / "compress-large.json")]
    wall, rss = peak_rss(cmd)
    return {"mb": path.stat().st_size / 1e6, "seconds": wall, "rss_mb": rss}


def large_context_lines(large: dict) -> list[str]:
    return [
        f"One {large['mb']:.0f} MB context (NQ gold passages, shuffled and repeated) through `omnitok compress "
        f"--method bm25 --ratio 0.1`: {large['seconds']:.1f} s, peak RSS {large['rss_mb']:.0f} MB "
        f"({large['rss_mb'] / large['mb']:.1f}x the context, the interpreter and tokenizer included).",
        "",
    ]


def main(results: list[str] | None = None) -> list[str]:
    n = int(os.environ.get("OMNITOK_BENCH_COMPRESS_N", "500"))
    results = results if results is not None else []
    rows = load_nq()
    t0 = time.perf_counter()
    near = distractors(rows)
    print(f"  distractors for {len(rows)} questions in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    idx = list(range(len(rows)))
    random.Random(0).shuffle(idx)
    dev_idx, eval_idx = idx[:DEV_N], idx[DEV_N : DEV_N + n]
    weights = tune(rows, near, dev_idx)
    runner = Runner(weights)
    cases = nq_cases(rows, near, eval_idx)
    methods = [*(f"omnitok {m}" for m in OURS), *BASELINES]
    table: dict[tuple[str, str], dict[int, float]] = {}
    for label, ratio in BUDGETS:
        for m in methods:
            table[(m, label)] = retention(runner, m.removeprefix("omnitok "), cases, ratio)
            print(f"  {label} {m}: {table[(m, label)]}", file=sys.stderr)
    save_embeddings(runner.embedder)
    kv = kv_cases()
    kv_table = {}
    for label, ratio in BUDGETS:
        for m in methods:
            kv_table[(m, label)] = np.mean(list(retention(runner, m.removeprefix("omnitok "), kv, ratio).values()))
    # quality_score against the outcome it is meant to predict
    q_rows = []
    for ctx, q, answers, _ in cases:
        r = runner.comp["combined"].compress(ctx, q, ratio=0.1)
        q_rows.append((r.quality_score, any(a in r.compressed_text for a in answers)))
    median = float(np.median([s for s, _ in q_rows]))
    hi = [ok for s, ok in q_rows if s >= median]
    lo = [ok for s, ok in q_rows if s < median]
    speed = [_in_subprocess(m) for m in OURS]
    large = large_context()

    results += [
        "## Compression (`omnitok compress`)",
        "",
        f"NQ-open, {n} questions (dev: {DEV_N} others, for the weights), 20 passages each (~"
        f"{np.mean([runner.count(segment(c[0])[1]) for c in cases[:60]]):.0f} o200k tokens), the gold passage at "
        "position 1, 10 or 20 among 19 BM25-nearest distractors. Answer retention (a gold answer string "
        "survives), by budget (share of the original tokens) and gold position:",
        "",
        "| method | " + " | ".join(f"{b} @{p}" for b, _ in BUDGETS for p in POSITIONS) + " |",
        "|---|" + "---:|" * (len(BUDGETS) * len(POSITIONS)),
    ]
    for m in methods:
        cells = [f"{table[(m, b)][p]:.1%}" for b, _ in BUDGETS for p in POSITIONS]
        results.append(f"| {m} | " + " | ".join(cells) + " |")
    results += [
        "",
        f"Weights tuned on the dev split: {', '.join(f'{m}: {w}' for m, w in weights.items())}.",
        "",
        "Key-value retrieval (500 examples, 75 records each): the queried record survives whole, by budget "
        "(mean over key positions):",
        "",
        "| method | " + " | ".join(b for b, _ in BUDGETS) + " |",
        "|---|" + "---:|" * len(BUDGETS),
    ]
    for m in methods:
        results.append(f"| {m} | " + " | ".join(f"{kv_table[(m, b)]:.1%}" for b, _ in BUDGETS) + " |")
    results += [
        "",
        f"quality_score (combined, 1/10): answers survive in {np.mean(hi):.1%} of the contexts scoring at or "
        f"above the median ({median:.3f}) and {np.mean(lo):.1%} of those below.",
        "",
    ]
    results += speed_lines(speed)
    results += large_context_lines(large)
    return results


def speed_lines(speed: list[dict]) -> list[str]:
    lines = [
        f"Throughput on {len(os.sched_getaffinity(0))} cores (cold: a fresh process, every context's texts "
        "embedded, the vector cache emptied before each; contexts at position 10, budget 1/4; the model load "
        "excluded), its CPU time (all threads) per MB, and peak memory of that process, with the load average "
        "at its end:",
        "",
        "| method | MB/s | CPU s/MB | contexts | peak RSS MB | load average |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in speed:
        lines.append(
            f"| omnitok {s['method']} | {s['mb_per_s']:.3f} | {s['cpu_s_per_mb']:.1f} | {s['contexts']} | "
            f"{s['rss_mb']:.0f} | {s['load_avg']:.1f} |"
        )
    return [*lines, ""]


def _in_subprocess(method: str) -> dict:
    from .run import peak_rss

    out = WORK / f"compress-throughput-{method}.json"
    cmd = [sys.executable, "-m", "benchmarks.compress_bench", "--throughput", method, str(out)]
    _, rss = peak_rss(cmd, cwd=Path(__file__).resolve().parents[1])
    data = json.loads(out.read_text())
    data["rss_mb"] = rss
    return data


if __name__ == "__main__":
    if sys.argv[1:] == ["--large"]:
        print("\n".join(large_context_lines(large_context())))
    elif sys.argv[1:] == ["--speed"]:
        print("\n".join(speed_lines([_in_subprocess(m) for m in OURS])))
    elif len(sys.argv) == 4 and sys.argv[1] == "--throughput":
        result = throughput(sys.argv[2])
        result["contexts"] = 150
        Path(sys.argv[3]).write_text(json.dumps(result))
    else:  # the figures of record come from `make bench` (benchmarks/RESULTS.md): stdout only
        print("\n".join(main()))
