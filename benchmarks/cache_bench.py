"""What the cache is for, measured: per-tier latency next to the cost of counting, local counting
with and without the cache, and an online strategy (20 ms a request) cold vs warm."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

import omnitok
from omnitok.cache import CacheSettings, TieredCache
from omnitok.cache.keys import KeyMaker
from omnitok.cache.tiered import MAX_VALUE_BYTES


def _per_op(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6  # microseconds


def _redis(work: Path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.redis_server import RedisServer

    return RedisServer(work)


def latency(texts: list[str], work: Path, results: list[str]) -> None:
    keys = KeyMaker("bench:v1")
    batch_keys = [keys.key(t) for t in texts[:1000]]
    rows = []
    sample = texts[:1000]
    mean_kb = sum(len(t.encode()) for t in sample) / len(sample) / 1000
    rows.append(
        (
            f"BLAKE3 key of a text (mean {mean_kb:.1f} KB)",
            _per_op(lambda: [keys.key(t) for t in sample], 10) / 1000,
            None,
        )
    )
    for model, engine in (("gpt-4o", "gigatoken"), ("gpt-4o", "tiktoken")):
        s = omnitok.load_tokenizer(model, engine=engine)
        s.count_batch(sample)  # warm up
        per = _per_op(lambda s=s: s.count_batch(sample), 5) / len(sample)
        rows.append((f"count a text, {model} ({engine}, one core)", per, None))
    shutil.rmtree(work / "lat", ignore_errors=True)
    server = _redis(work)
    try:
        cache = TieredCache(CacheSettings(work / "lat", l3_url=server.url, bloom=False))
        for name, tier in (("L1", cache.l1), ("L2", cache.l2), ("L3", cache.l3)):
            # L3 takes the largest value it may store or read, as TieredCache gives it
            limit = {"limit": MAX_VALUE_BYTES} if name == "L3" else {}
            put, get = partial(tier.set_many, **limit), partial(tier.get_many, **limit)
            put({k: 123 for k in batch_keys})
            single_get = _per_op(lambda get=get: get([batch_keys[7]]), 2000 if name != "L1" else 20000)
            batched_get = _per_op(lambda get=get: get(batch_keys), 20) / len(batch_keys)
            single_set = _per_op(lambda put=put: put({batch_keys[3]: 5}), 500 if name != "L1" else 20000)
            batched_set = _per_op(lambda put=put: put({k: 7 for k in batch_keys}), 5) / len(batch_keys)
            rows.append((f"{name} get / set, single", single_get, single_set))
            rows.append((f"{name} get / set, per key in a batch of 1,000", batched_get, batched_set))
        cache.close()
    finally:
        server.stop()
    results += [
        "### Cache tier latency next to the cost of counting (microseconds)",
        "",
        "| operation | get (or the operation) | set |",
        "|---|---:|---:|",
        *[f"| {name} | {a:.1f} | {'' if b is None else f'{b:.1f}'} |" for name, a, b in rows],
        "",
    ]


def local(corpus: Path, subset: Path, omnitok_bin: str, work: Path, results: list[str], timed) -> None:
    def run(path, *flags):
        return timed([omnitok_bin, "count", "-m", "gpt-4o", "-q", *flags, str(path), "-o", os.devnull])

    d = work / "local-cache"
    shutil.rmtree(d, ignore_errors=True)
    # Interleaved, median of 3: the machine is noisy and the ratio is close to 1 by design.
    auto_cold = run(corpus, "--cache-dir", str(d))
    none_runs, auto_runs = [], []
    for _ in range(3):
        none_runs.append(run(corpus, "--no-cache"))
        auto_runs.append(run(corpus, "--cache-dir", str(d)))
    none_s, auto_warm = statistics.median(none_runs), statistics.median(auto_runs)
    shutil.rmtree(d, ignore_errors=True)
    sub_none = run(subset, "--no-cache")
    forced_cold = run(subset, "--cache", "on", "--cache-dir", str(d))
    forced_warm = run(subset, "--cache", "on", "--cache-dir", str(d))
    mb = f"{corpus.stat().st_size / 1e6:.0f} MB file"  # the corpus run.py built (OMNITOK_BENCH_MB of text)
    results += [
        "### Local counting with and without the cache (`omnitok count -m gpt-4o`, end to end)",
        "",
        "| run | seconds | vs --no-cache |",
        "|---|---:|---:|",
        f"| {mb}, --no-cache (median of 3) | {none_s:.2f} | 1.00x |",
        f"| {mb}, default policy (auto), first run (cold) | {auto_cold:.2f} | **{none_s / auto_cold:.2f}x** |",
        f"| {mb}, default policy (auto), later runs (warm, median of 3) | {auto_warm:.2f} | **{none_s / auto_warm:.2f}x** |",
        f"| 20 MB subset, --no-cache | {sub_none:.2f} | 1.00x |",
        f"| 20 MB subset, --cache on (forced), cold | {forced_cold:.2f} | {sub_none / forced_cold:.2f}x |",
        f"| 20 MB subset, --cache on (forced), warm | {forced_warm:.2f} | {sub_none / forced_warm:.2f}x |",
        "",
        "The default policy does not cache local engines: the rows above show why (a forced cache",
        "costs more than recounting).",
        "",
    ]


class _SlowAnthropic(BaseHTTPRequestHandler):
    delay = 0.02

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        time.sleep(self.delay)
        n = sum(len(str(m["content"]).split()) + 3 for m in body["messages"])
        data = json.dumps({"input_tokens": n}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def online(texts: list[str], work: Path, results: list[str]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowAnthropic)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["ANTHROPIC_API_KEY"] = "bench-key"
    os.environ["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{server.server_address[1]}"
    sample = texts[:1000]
    redis = _redis(work)

    def timed_count(**cache_opts) -> tuple[float, list[int]]:
        counter = omnitok.Counter("claude-sonnet-4-5", online=True, **cache_opts)
        start = time.perf_counter()
        counts = [r.tokens for r in counter.count_batch(sample)]
        elapsed = time.perf_counter() - start
        counter.close()
        return elapsed, counts

    try:
        d = work / "online-cache"
        shutil.rmtree(d, ignore_errors=True)
        cold, ref = timed_count(cache_dir=str(d))
        warm_l2, c2 = timed_count(cache_dir=str(d))  # a new counter: empty L1, so L2 serves
        cold_l3, c3 = timed_count(cache_dir="none", l3_url=redis.url)
        warm_l3, c4 = timed_count(cache_dir="none", l3_url=redis.url)
        assert ref == c2 == c3 == c4
    finally:
        redis.stop()
        server.shutdown()
    results += [
        "### Online counts (mock Anthropic API on loopback, 20 ms a request, 8 in flight), 1,000 texts",
        "",
        "| run | seconds | vs cold |",
        "|---|---:|---:|",
        f"| cold (L1 + L2, empty) | {cold:.2f} | 1.00x |",
        f"| warm from L2 (new process state: empty L1) | {warm_l2:.3f} | **{cold / warm_l2:.0f}x** |",
        f"| cold, L1 + L3 only (Redis on loopback) | {cold_l3:.2f} | 1.00x |",
        f"| warm from L3 (empty L1, no L2) | {warm_l3:.3f} | **{cold_l3 / warm_l3:.0f}x** |",
        "",
    ]


def main(corpus: Path, work: Path, omnitok_bin: str, results: list[str], timed) -> None:
    texts = []
    with open(corpus, "rb") as f:
        for line in f:
            texts.append(orjson.loads(line)["text"])
            if len(texts) >= 20000:
                break
    texts.sort(key=lambda t: abs(len(t) - 2000))  # ~2 KB texts first
    subset = work / "corpus-20mb.jsonl"
    latency(texts, work, results)
    if subset.exists():
        local(corpus, subset, omnitok_bin, work, results, timed)
    online(texts, work, results)
