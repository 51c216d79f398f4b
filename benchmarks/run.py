"""`make bench`: omnitok against references measured in the same run, reported as ratios.

1. Throughput: `omnitok count` end to end (a process reading the JSONL corpus and writing JSONL
   results) vs tiktoken run its fastest way on the same cores (the best of N threads and N forked
   processes) over the same texts already in memory; a scaling table for jobs 1, 2, 4, ... up to
   the cores; counts compared document by document. The same for Hugging Face tokenizer.json
   files (Qwen2.5, Llama 3.2) against the `tokenizers` library's fastest of encode_batch and
   encode_batch_fast on its thread pool and N forked processes.
   gigatoken's own file path (`encode_files(JsonlFileSource)`, benchmarks/engine_files.py), a whole
   process from the same file, is timed beside omnitok. The fixed costs of a corpus count (start-up,
   the engine's load, warming up, the fork, the first shard, the merge, closing) come from
   benchmarks/count_phases.py.
2. Start-up: `echo hello | omnitok count -m gpt-4o` vs a one-line `python -c` tiktoken count with
   the same encoding (its file in tiktoken's cache), medians of interleaved runs.
3. Memory: peak RSS of the whole process tree counting the corpus 1x and 5x.
4. Compress, `omnitok serve` under load, local vs Ray on one host, and the model-backed paths
   (dense compress, BERTScore): each from its own module (benchmarks/*_bench.py), in this run.

Environment: OMNITOK_BENCH_MB (default 100: the size issue 26's goals are stated at) sets the corpus size in MB of text; OMNITOK_BENCH_ONLY
(comma-separated step names) runs some steps and writes RESULTS.partial.md instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

from .cgroup import charged
from .corpus import build, build_shifted, into_page_cache

WORK = Path(__file__).parent / ".work"
OMNITOK = [sys.executable, "-m", "omnitok"]
OMNITOK_BIN = str(Path(sys.executable).parent / "omnitok")


def reference_encoding(name: str):
    import tiktoken
    import tiktoken_ext.openai_public as public

    import omnitok

    path = Path(omnitok.__file__).parent / "assets/data/openai" / f"{name}.tiktoken"
    real = public.load_tiktoken_bpe
    public.load_tiktoken_bpe = lambda url, expected_hash=None: real(str(path), expected_hash=expected_hash)
    try:
        return tiktoken.Encoding(**getattr(public, name)())
    finally:
        public.load_tiktoken_bpe = real


def peak_rss(cmd: list[str], **kw) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB summed over the process tree), as tree_rss."""
    wall, peak, _, _ = tree_rss(cmd, **kw)
    return wall, peak


def tree_rss(cmd: list[str], pss: bool = False, **kw) -> tuple[float, float, int, float | None]:
    """(wall seconds, peak RSS in MB summed over the process tree, the most processes seen at
    once, peak PSS in MB summed over the tree or None), sampled every 20 ms; a process that ends
    during a sample is left out of that sample alone (not the whole sample). RSS counts the pages
    forked processes share once per process; PSS (`pss`: /proc/PID/smaps_rollup, dearer to
    read) divides each shared page among its sharers, so its sum is the tree's real use."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, **kw)
    ps = psutil.Process(proc.pid)
    peak = most = peak_pss = 0
    while proc.poll() is None:
        try:
            tree = [ps, *ps.children(recursive=True)]
        except psutil.Error:
            tree = [ps]
        total = seen = shared = 0
        for p in tree:
            try:
                if pss:
                    info = p.memory_full_info()
                    shared += info.pss
                else:
                    info = p.memory_info()
                total += info.rss
                seen += 1
            except psutil.Error:
                pass
        peak, most, peak_pss = max(peak, total), max(most, seen), max(peak_pss, shared)
        time.sleep(0.02)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}")
    return wall, peak / 1e6, most, peak_pss / 1e6 if pss else None


def timed(cmd: list[str], **kw) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)
    return time.perf_counter() - start


_TEXTS: list[str] = []  # the corpus texts, inherited by forked tiktoken workers
_ENC = None


def _tiktoken_chunk(bounds: tuple[int, int]) -> list[int]:
    return [len(t) for t in _ENC.encode_ordinary_batch(_TEXTS[bounds[0] : bounds[1]], num_threads=1)]


def tiktoken_forms(enc, texts: list[str], workers: int) -> dict[str, tuple[float, list[int]]]:
    """tiktoken run the ways a user can on `workers` cores, texts already in memory:
    encode_ordinary_batch with N threads, and N forked processes (a multiprocessing Pool over
    chunks of 500 texts). {form: (seconds, counts)}."""
    import multiprocessing

    global _TEXTS, _ENC
    out = {}
    start = time.perf_counter()
    counts = [len(t) for t in enc.encode_ordinary_batch(texts, num_threads=workers)]
    out[f"{workers} thread{'s' if workers > 1 else ''}"] = (time.perf_counter() - start, counts)
    if workers > 1:
        _TEXTS, _ENC = texts, enc
        bounds = [(i, i + 500) for i in range(0, len(texts), 500)]
        start = time.perf_counter()
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            counts = [n for part in pool.imap(_tiktoken_chunk, bounds) for n in part]
        out[f"{workers} processes"] = (time.perf_counter() - start, counts)
        _TEXTS, _ENC = [], None
    return out


def gigatoken_forms(encoding: str, texts: list[str], ref: list[int]) -> dict[str, float]:
    """gigatoken (the engine omnitok's default counts with) alone, texts in memory: its Rust
    thread pool over the whole batch, and one thread encoding text by text. Counts checked."""
    import awkward
    from gigatoken.gigatoken_rs import BPETokenizer

    import omnitok
    from omnitok.tokenizers.openai_encodings import ENCODINGS

    path = Path(omnitok.__file__).parent / "assets/data/openai" / f"{encoding}.tiktoken"
    out = {}
    tok = BPETokenizer.from_tiktoken(str(path), ENCODINGS[encoding].gigatoken_pretokenizer, {})
    tok.encode_batch(texts[:8], parallel=True)  # its imports (awkward) and thread pool, untimed
    start = time.perf_counter()
    counts = awkward.num(tok.encode_batch(texts, parallel=True), axis=1).tolist()
    out[f"`encode_batch(parallel=True)`, {os.cpu_count()} threads"] = time.perf_counter() - start
    if counts != ref:  # the guard's rare texts (unicode_guard) are not in these timings' concern
        print(
            f"  gigatoken encode_batch: {sum(a != b for a, b in zip(counts, ref, strict=True))} counts differ",
            file=sys.stderr,
        )
    tok = BPETokenizer.from_tiktoken(str(path), ENCODINGS[encoding].gigatoken_pretokenizer, {})  # cold caches
    encode = tok.encode
    start = time.perf_counter()
    for text in texts:
        encode(text)
    out["per-text `encode`, 1 thread"] = time.perf_counter() - start
    return out


def job_counts() -> list[int]:
    cores = os.cpu_count() or 1
    return [n for n in (1, 2, 4, 8, 16) if n <= cores] + ([cores] if cores not in (1, 2, 4, 8, 16) else [])


def throughput(corpus: Path, text_mb: float, model: str, encoding: str, results: list[str], pairs: int = 3) -> None:
    """omnitok as a whole process from the file (start-up, reading, parsing, writing included) vs
    tiktoken run its fastest way on the same cores with the texts already in memory."""
    texts = [orjson.loads(line)["text"] for line in corpus.open("rb")]
    enc = reference_encoding(encoding)
    cores = os.cpu_count() or 1
    scaling = {}  # jobs -> {form: seconds}
    ref = None
    for n in job_counts():
        forms = tiktoken_forms(enc, texts, n)
        scaling[n] = {form: seconds for form, (seconds, _) in forms.items()}
        ref = ref or next(iter(forms.values()))[1]
    engine = gigatoken_forms(encoding, texts, ref)
    # Same-run ratios: tiktoken's forms on all cores and `omnitok count` alternated, so that other
    # work on the machine weighs on both sides of each pair alike.
    pair_ratios = []
    for _ in range(pairs):
        tk_best = min(seconds for seconds, _ in tiktoken_forms(enc, texts, max(scaling)).values())
        cmd = [OMNITOK_BIN, "count", "-m", model, "-q", str(corpus), "-o", os.devnull]
        pair_ratios.append(tk_best / timed(cmd))
    del texts
    best_form, best_s = min(((f, t) for f, t in scaling[max(scaling)].items()), key=lambda x: x[1])

    out = WORK / "counts.jsonl"
    with open(out, "wb") as f:
        e2e_s = timed([OMNITOK_BIN, "count", "-m", model, "-q", str(corpus)], stdout=f)
    ours = [orjson.loads(line)["tokens"] for line in out.open("rb")]
    diffs = sum(a != b for a, b in zip(ours, ref, strict=True))
    for n in scaling:
        cmd = [OMNITOK_BIN, "count", "-m", model, "-q", "--jobs", str(n), str(corpus), "-o", os.devnull]
        scaling[n]["omnitok"] = statistics.median(timed(cmd) for _ in range(3))
    tk_s = timed([OMNITOK_BIN, "count", "-m", model, "-q", "--engine", "tiktoken", str(corpus), "-o", os.devnull])
    files = subprocess.run(
        [sys.executable, "-m", "benchmarks.engine_files", encoding, str(corpus)],
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    files_s = statistics.median(
        timed([sys.executable, "-m", "benchmarks.engine_files", encoding, str(corpus)], stdout=subprocess.DEVNULL)
        for _ in range(3)
    )
    e2e_median = statistics.median(
        timed([OMNITOK_BIN, "count", "-m", model, "-q", str(corpus), "-o", os.devnull]) for _ in range(3)
    )
    results += [
        f"### Throughput, {model} ({encoding}), {len(ref):,} records, {text_mb:.0f} MB of text, {cores} cores",
        "",
        f"Baseline: tiktoken `encode_ordinary_batch` run its fastest way on {max(scaling)} cores with the texts "
        f"already in memory; of N threads and N forked processes, **{best_form}** won ({best_s:.2f} s). "
        "omnitok is timed as a whole process from the file (start-up, reading, parsing, writing JSONL).",
        "",
        "| run | seconds | MB/s | vs tiktoken's best |",
        "|---|---:|---:|---:|",
        f"| tiktoken, {best_form}, texts in memory | {best_s:.2f} | {text_mb / best_s:.1f} | 1.00x |",
        f"| `omnitok count` (default `--jobs auto`) | {e2e_s:.2f} | {text_mb / e2e_s:.1f} | **{best_s / e2e_s:.2f}x** |",
        f"| `omnitok count --engine tiktoken` | {tk_s:.2f} | {text_mb / tk_s:.1f} | {best_s / tk_s:.2f}x |",
        f"| gigatoken alone, `encode_files(JsonlFileSource)`, whole process from the file (median of 3) "
        f"| {files_s:.2f} | {text_mb / files_s:.1f} | {best_s / files_s:.2f}x |",
        *(
            f"| gigatoken alone, {form}, texts in memory | {sec:.2f} | {text_mb / sec:.1f} | {best_s / sec:.2f}x |"
            for form, sec in engine.items()
        ),
        "",
        "The gigatoken rows time the engine omnitok counts with, with no reading or parsing: its own "
        "thread pool (`encode_batch(parallel=True)`, no pickling) against the per-text `encode` that "
        "omnitok's workers call, one process; omnitok uses processes because they also parse. "
        "The `encode_files` row is gigatoken's own Rust reader, a whole process like omnitok's (it "
        "skips lines it cannot read, keeps no ids and returns every token id: a speed reference).",
        "",
        f"`omnitok count` (median of 3, `-o /dev/null`) vs gigatoken's file path, both whole processes "
        f"from the file: **{e2e_median / files_s:.2f}x** its time ({e2e_median:.2f} s vs {files_s:.2f} s; "
        f"token totals {sum(ours):,} vs {int(files.stdout):,}).",
        "",
        "Scaling (MB/s; omnitok: median of 3 runs):",
        "",
        "| jobs / threads / processes | omnitok `--jobs N` | tiktoken N threads | tiktoken N processes |",
        "|---:|---:|---:|---:|",
    ]
    for n, row in scaling.items():
        procs = row.get(f"{n} processes")
        results.append(
            f"| {n} | {text_mb / row['omnitok']:.1f} | {text_mb / row[next(k for k in row if 'thread' in k)]:.1f} "
            f"| {'-' if procs is None else f'{text_mb / procs:.1f}'} |"
        )
    one = scaling[1]["omnitok"]
    results += [
        "",
        f"Interleaved pairs (tiktoken's best form, then `omnitok count -o /dev/null`), {pairs} of them: "
        f"omnitok **{statistics.median(pair_ratios):.2f}x** tiktoken's best, median of the pairs' ratios "
        f"({', '.join(f'{r:.2f}' for r in pair_ratios)}; goal >= 6x at 100 MB).",
        "",
        f"omnitok at {max(scaling)} jobs: {one / scaling[max(scaling)]['omnitok']:.2f}x its own 1 job; "
        f"{best_s / scaling[max(scaling)]['omnitok']:.2f}x tiktoken's best.",
        f"Counts differing from tiktoken: **{diffs}** of {len(ref):,} documents "
        f"(total {sum(ours):,} vs {sum(ref):,} tokens).",
        "",
    ]


_HF_TOK = None  # the `tokenizers` Tokenizer forked workers encode with


def _hf_worker_init() -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread a process: the processes form


def _tokenizers_chunk(bounds: tuple[int, int]) -> list[int]:
    texts = _TEXTS[bounds[0] : bounds[1]]
    return [len(e.ids) for e in _HF_TOK.encode_batch_fast(texts, add_special_tokens=True)]


def tokenizers_forms(path: Path, texts: list[str], workers: int) -> dict[str, tuple[float, list[int]]]:
    """`tokenizers` run the ways a user can on `workers` cores, texts already in memory:
    encode_batch and encode_batch_fast (no offsets: the library's fastest batch call) on its own
    thread pool (all cores), and `workers` forked processes (a Pool over chunks of 500 texts, one
    thread each, encode_batch_fast). {form: (seconds, counts)}; the baseline is the fastest."""
    import multiprocessing

    from tokenizers import Tokenizer

    global _TEXTS, _HF_TOK
    out = {}
    for form in ("encode_batch", "encode_batch_fast"):
        tok = Tokenizer.from_file(str(path))  # a fresh tokenizer: no cache warmed by the form before
        call = getattr(tok, form)
        start = time.perf_counter()
        counts = [len(e.ids) for e in call(texts, add_special_tokens=True)]
        out[f"{form}, all threads"] = (time.perf_counter() - start, counts)
    if workers > 1:
        _TEXTS, _HF_TOK = texts, Tokenizer.from_file(str(path))  # loaded before the fork, unused here
        bounds = [(i, i + 500) for i in range(0, len(texts), 500)]
        start = time.perf_counter()
        with multiprocessing.get_context("fork").Pool(workers, initializer=_hf_worker_init) as pool:
            counts = [n for part in pool.imap(_tokenizers_chunk, bounds) for n in part]
        out[f"{workers} processes"] = (time.perf_counter() - start, counts)
        _TEXTS, _HF_TOK = [], None
    return out


def throughput_hf(corpus: Path, results: list[str], mb: float) -> None:
    """Hugging Face tokenizer.json files: omnitok end to end (a whole process from the file) vs
    the `tokenizers` library run its fastest way on the same cores (the best of encode_batch on
    its thread pool and N forked processes), texts already in memory."""
    from .hf_refs import hf_reference_dirs

    subset = WORK / f"corpus-{mb:.0f}mb.jsonl"
    texts, size = [], 0
    with open(corpus, "rb") as src, open(subset, "wb") as dst:
        for line in src:
            text = orjson.loads(line)["text"]
            texts.append(text)
            size += len(text.encode())
            dst.write(line)
            if size >= mb * 1_000_000:
                break
    text_mb = size / 1e6
    cores = os.cpu_count() or 1
    rows = []
    for family in ("qwen2", "llama3"):
        directory, model_id = hf_reference_dirs()[family]
        forms = tokenizers_forms(directory / "tokenizer.json", texts, cores)
        ref = next(iter(forms.values()))[1]
        assert all(counts == ref for _, counts in forms.values())
        best_form, best_s = min(((f, t) for f, (t, _) in forms.items()), key=lambda x: x[1])
        out = WORK / "counts-hf.jsonl"
        with open(out, "wb") as f:
            e2e_s = timed(
                [OMNITOK_BIN, "count", "-m", model_id, "--tokenizer", str(directory), "-q", str(subset)], stdout=f
            )
        ours = [orjson.loads(line)["tokens"] for line in out.open("rb")]
        diffs = sum(a != b for a, b in zip(ours, ref, strict=True))
        rows.append(
            f"| {model_id} | "
            + " | ".join(f"{text_mb / t:.1f}" for t, _ in forms.values())
            + f" | {best_form} | {text_mb / e2e_s:.1f} | **{best_s / e2e_s:.1f}x** | {diffs} of {len(ref):,} |"
        )
    results += [
        f"### Throughput, Hugging Face tokenizers, {len(texts):,} records, {text_mb:.0f} MB of text, {cores} cores",
        "",
        "Baseline: the `tokenizers` library run its fastest way on these cores with the texts already in "
        "memory, the best of the forms below (MB/s); omnitok is timed as a whole process from the file "
        "(start-up, reading, parsing, writing JSONL), ratio against the best form.",
        "",
        "| tokenizer | "
        + " | ".join(f"`tokenizers` {form}" for form in forms)
        + " | best form | `omnitok count` end to end | ratio | counts differing |",
        "|---|" + "---:|" * len(forms) + "---|---:|---:|---:|",
        *rows,
        "",
    ]


def fixed_costs(corpus: Path, text_mb: float, results: list[str], runs: int = 3) -> None:
    """What a whole `omnitok count -m gpt-4o` of the corpus spends besides the engine's work
    (benchmarks/count_phases.py: the pipeline's steps noted as they happen), medians of `runs`."""
    jobs = str(os.cpu_count() or 1)  # every core: auto would take fewer where other work holds some
    cmd = [sys.executable, "-m", "benchmarks.count_phases", "count", "-m", "gpt-4o", "-q", "-j", jobs, str(corpus)]
    cmd += ["-o", os.devnull]
    phases: dict[str, list[tuple[float, float]]] = {}
    for _ in range(runs):
        r = subprocess.run(cmd, capture_output=True, check=True, cwd=Path(__file__).resolve().parents[1])
        marks = json.loads(r.stderr.decode().strip().splitlines()[-1])["marks"]
        before = ("start", 0.0, 0.0)
        for name, wall, cpu in marks:
            phases.setdefault(f"{before[0]} -> {name}", []).append((wall - before[1], cpu - before[2]))
            before = (name, wall, cpu)
    rows = [
        f"| {name} | {statistics.median(w for w, _ in v):.3f} | {statistics.median(c for _, c in v):.3f} |"
        for name, v in phases.items()
        if len(v) == runs
    ]
    results += [
        f"### Fixed costs of `omnitok count -m gpt-4o -j {jobs}` on the corpus ({text_mb:.0f} MB of text), "
        f"median of {runs}",
        "",
        f"`python -m benchmarks.count_phases count -m gpt-4o -q -j {jobs} CORPUS -o /dev/null`: the command in one "
        "process with its steps noted (the workers' time is the wall time between `forked` and `last result "
        "merged`; the CPU column is the parent's own).",
        "",
        "| phase | wall s | parent CPU s |",
        "|---|---:|---:|",
        *rows,
        "",
    ]


def gigabyte(results: list[str], runs: int = 3) -> None:
    """Issue 26's 1 GB goal as stated: 1 GB of JSONL of distinct text (benchmarks/corpus.py's
    build_shifted: ten copies of the first 100 MB of the corpus, copy k with its letters shifted k
    places), `omnitok count -m gpt-4o --summary FILE` as a whole process vs gigatoken's own file
    reader in one process (benchmarks/engine_files.py: `encode_files(JsonlFileSource)`), `runs`
    interleaved pairs, token totals compared; then the peak RSS of omnitok's process tree (a run of
    its own: the 20 ms sampling costs CPU that the timed runs should not pay)."""
    from omnitok import pipeline

    path = WORK / "corpus-1gb.jsonl"
    records, text_bytes = build_shifted(path, 100_000_000, 10)
    into_page_cache(path)  # both read it from memory
    ours_cmd = [OMNITOK_BIN, "count", "-m", "gpt-4o", "--summary", str(path)]
    ref_cmd = [sys.executable, "-m", "benchmarks.engine_files", "o200k_base", str(path)]
    root = Path(__file__).resolve().parents[1]
    ours_t, ref_t, ratios = [], [], []
    totals = set()
    for _ in range(runs):
        start = time.perf_counter()
        r = subprocess.run(ours_cmd, capture_output=True, check=True)
        ours_t.append(time.perf_counter() - start)
        totals.add(("omnitok", orjson.loads(r.stdout)["total_tokens"]))
        start = time.perf_counter()
        r = subprocess.run(ref_cmd, capture_output=True, check=True, cwd=root)
        ref_t.append(time.perf_counter() - start)
        totals.add(("gigatoken", int(r.stdout)))
        ratios.append(ours_t[-1] / ref_t[-1])
    ours_total = {n for who, n in totals if who == "omnitok"}
    ref_total = {n for who, n in totals if who == "gigatoken"}
    _, peak, procs, peak_pss = tree_rss([*ours_cmd, "-o", os.devnull], pss=True, stdout=subprocess.DEVNULL)
    _, ref_peak, _, _ = tree_rss(ref_cmd, stdout=subprocess.DEVNULL, cwd=root)
    contained = charged(ours_cmd, CONTAINER_MB)
    gb = text_bytes / 1e9
    results += [
        f"### 1 GB of distinct text: `omnitok count -m gpt-4o --summary` vs gigatoken's file reader, "
        f"{records:,} records, {gb:.2f} GB of text ({path.stat().st_size / 1e9:.2f} GB on disk), "
        f"{os.cpu_count()} cores",
        "",
        "Ten copies of the first 100 MB of the corpus, copy k with its ASCII letters shifted k places, so no "
        "copy repeats another's words. Both whole processes from the same file (in the page cache), "
        f"{runs} interleaved pairs; gigatoken: `Tokenizer.from_tiktoken(o200k).encode_files("
        'JsonlFileSource([FILE], "text"), parallel=True)` in one process (benchmarks/engine_files.py).',
        "",
        "| run | best s | median s | MB/s (median) |",
        "|---|---:|---:|---:|",
        f"| gigatoken `encode_files`, one process | {min(ref_t):.2f} | {statistics.median(ref_t):.2f} "
        f"| {gb * 1000 / statistics.median(ref_t):.0f} |",
        f"| `omnitok count -m gpt-4o --summary` | {min(ours_t):.2f} | {statistics.median(ours_t):.2f} "
        f"| {gb * 1000 / statistics.median(ours_t):.0f} |",
        "",
        f"omnitok / gigatoken time: **{min(ours_t) / min(ref_t):.2f}x** best to best, "
        f"{statistics.median(ratios):.2f}x the median of the pairs' ratios "
        f"(pairs: {', '.join(f'{x:.2f}' for x in ratios)}; goal <= 1.1x).",
        f"Token totals: omnitok {', '.join(f'{n:,}' for n in sorted(ours_total))}, gigatoken "
        f"{', '.join(f'{n:,}' for n in sorted(ref_total))}: "
        f"**{'equal' if ours_total == ref_total and len(ours_total) == 1 else 'DIFFERENT'}**.",
        f"Peak memory of omnitok's process tree (the same command with `-o /dev/null`, sampled every 20 ms, "
        f"{procs} processes at most: the main one, its workers, replaced every "
        f"{pipeline.SHARD_WORKER_TASKS} shards, and the reference-engine process): "
        f"**{peak:.0f} MB** summed RSS (goal <= 300 MB), {peak_pss:.0f} MB summed PSS (shared pages divided among "
        f"the processes that share them); gigatoken's process, which keeps every token id: {ref_peak:.0f} MB RSS.",
        _contained(contained, ours_total),
        "",
    ]


CONTAINER_MB = 300  # issue 26's memory goal, as a container's limit


def _contained(c, totals: set[int]) -> str:
    """The 1 GB count run in a memory cgroup limited to CONTAINER_MB (benchmarks/cgroup.py), as a
    container holds it: the memory the kernel charged it (each page once), and whether it ran whole."""
    if c is None:
        return "Run in a memory cgroup: not measured (no memory cgroup could be made here: no controller, or not root)."
    total = orjson.loads(c.stdout)["total_tokens"] if c.returncode == 0 else None
    whole = c.returncode == 0 and c.oom_kills == 0 and {total} == totals
    return (
        f"Run in a memory cgroup of its own limited to {CONTAINER_MB} MB (a container's limit; benchmarks/cgroup.py): "
        f"peak charge **{c.peak_mb:.0f} MB** (each page once: every process's own memory and the page cache it brought in; "
        f"the input was already in the page cache), exit {c.returncode}, {c.oom_kills} killed for memory, "
        f"token total {'the same' if whole else 'NOT the same'}, {c.wall:.2f} s."
    )


def startup(results: list[str], runs: int = 15) -> None:
    cache = WORK / "tiktoken-cache"
    cache.mkdir(parents=True, exist_ok=True)
    import omnitok

    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    src = Path(omnitok.__file__).parent / "assets/data/openai/o200k_base.tiktoken"
    shutil.copy(src, cache / hashlib.sha1(url.encode()).hexdigest())
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache)}
    ref_cmd = [
        sys.executable,
        "-c",
        "import sys, tiktoken; print(len(tiktoken.get_encoding('o200k_base').encode_ordinary(sys.stdin.read())))",
    ]
    ours_cmd = [OMNITOK_BIN, "count", "-m", "gpt-4o"]
    # The small-input engine (pybpe, cli/_small.py) against the engines it stands in for, on one
    # line and on an input near the 64 KiB bound (ASCII prose: all of it pybpe's).
    line = b"hello\n"
    near = (b"The quick brown fox jumps over the lazy dog; 12345 apples, don't they? " * 880)[:60_000]
    cases = [
        ("`python -c` tiktoken o200k count (file in TIKTOKEN_CACHE_DIR)", ref_cmd, line),
        ("`omnitok count -m gpt-4o` (auto: pybpe)", ours_cmd, line),
        ("`omnitok count -m gpt-4o --engine tiktoken`", [*ours_cmd, "--engine", "tiktoken"], line),
        ("`omnitok count -m gpt-4o --engine gigatoken`", [*ours_cmd, "--engine", "gigatoken"], line),
        ("60 KB: `python -c` tiktoken", ref_cmd, near),
        ("60 KB: `omnitok count -m gpt-4o` (auto: pybpe)", ours_cmd, near),
        ("60 KB: `omnitok count -m gpt-4o --engine tiktoken`", [*ours_cmd, "--engine", "tiktoken"], near),
    ]
    times: list[list[float]] = [[] for _ in cases]
    outs: list[set] = [set() for _ in cases]
    for _ in range(runs):
        for (_label, cmd, stdin), bucket, seen in zip(cases, times, outs, strict=True):
            start = time.perf_counter()
            r = subprocess.run(cmd, input=stdin, env=env, capture_output=True, check=True)
            bucket.append(time.perf_counter() - start)
            seen.add(r.stdout.strip())
    assert outs[0] == outs[1] == outs[2] == outs[3] == {b"2"} and len(outs[4] | outs[5] | outs[6]) == 1, outs
    medians = [statistics.median(t) for t in times]
    results += [
        f"### Start-up, `echo hello | omnitok count -m gpt-4o`, median of {runs} interleaved runs",
        "",
        "| command | seconds | vs `python -c` tiktoken on the same input |",
        "|---|---:|---:|",
        *(
            f"| {label} | {m:.3f} | {'1.00x' if cmd is ref_cmd else f'**{m / medians[0 if stdin is line else 4]:.2f}x**'} |"
            for (label, cmd, stdin), m in zip(cases, medians, strict=True)
        ),
        "",
    ]


def memory(corpus: Path, results: list[str]) -> None:
    big = WORK / "corpus-5x.jsonl"
    if not big.exists() or big.stat().st_size != 5 * corpus.stat().st_size:
        with open(big, "wb") as out:
            for _ in range(5):
                with open(corpus, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 24)
    rows, ratios = [], []
    for jobs in job_counts():  # every --jobs value (the bound), not auto's pick of the moment
        peaks = []
        for label, path in (("1x", corpus), ("5x", big)):
            cmd = [OMNITOK_BIN, "count", "-m", "gpt-4o", "-q", "--jobs", str(jobs), str(path), "-o", os.devnull]
            wall, peak, procs, _ = tree_rss(cmd)
            rows.append(
                f"| {jobs} | corpus {label} | {path.stat().st_size / 1e6:.0f} | {wall:.2f} | {procs} | {peak:.0f} |"
            )
            peaks.append(peak)
        ratios.append(f"`--jobs {jobs}` {peaks[1] / peaks[0]:.2f}x")
    results += [
        "### Memory, peak RSS of the process tree (main, workers, the reference process), `omnitok count -m gpt-4o`",
        "",
        "RSS summed over the processes counts the pages forked workers share with the parent once per "
        "process, so it overstates real use; what matters is that it does not grow with the input.",
        "",
        "| `--jobs` | input | file MB | seconds | processes | peak RSS MB |",
        "|---:|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"5x / 1x peak RSS: **{', '.join(ratios)}**",
        "",
    ]


def prose_pairs(n: int) -> list[tuple[str, str]]:
    """Prose, as prompts are: Wikipedia passages (../shared/data) joined into 2-4 KB originals,
    "compressed" by deleting 40% of the words."""
    import gzip
    import random

    rng = random.Random(7)
    passages = []
    with gzip.open(Path(__file__).resolve().parents[2] / "shared/data/nq-open-oracle.jsonl.gz", "rt") as f:
        for line in f:
            passages += [c["text"] for c in json.loads(line)["ctxs"]]
    pairs = []
    i = 0
    while len(pairs) < n:
        target, buf = rng.randint(2000, 4000), ""
        while len(buf) < target:
            buf += passages[i % len(passages)] + " "
            i += 1
        original = buf[:target]
        kept = [w for w in original.split() if rng.random() < 0.6]
        pairs.append((original, " ".join(kept)))
    return pairs


def rouge_step(corpus: Path, results: list[str], n: int = 2000) -> None:  # noqa: ARG001 - prose, not the corpus
    """ROUGE-L pairs/second: omnitok's scorer vs rouge-score's RougeScorer, identical scores."""
    from rouge_score import rouge_scorer

    from omnitok.validation.metrics import rouge_l

    pairs = prose_pairs(n)
    ref_scorer = rouge_scorer.RougeScorer(["rougeL"])
    sample = pairs[:100]  # the reference runs at a few pairs per second
    start = time.perf_counter()
    ref = [ref_scorer.score(a, b)["rougeL"].fmeasure for a, b in sample]
    ref_s = (time.perf_counter() - start) / len(sample)
    start = time.perf_counter()
    ours_all = [rouge_l(a, b).f1 for a, b in pairs]
    ours_s = (time.perf_counter() - start) / len(pairs)
    worst = max(abs(x - y) for x, y in zip(ref, ours_all[: len(sample)], strict=True))
    results += [
        f"### ROUGE-L, {len(pairs):,} pairs of 2-4 KB texts (the reference timed on the first {len(sample)})",
        "",
        "| scorer | pairs/s | vs rouge-score |",
        "|---|---:|---:|",
        f"| rouge-score `RougeScorer(['rougeL']).score` | {1 / ref_s:.1f} | 1.00x |",
        f"| omnitok (rouge-score's tokenizer, rapidfuzz LCS) | {1 / ours_s:.0f} | **{ref_s / ours_s:.0f}x** |",
        "",
        f"Largest F1 difference on the {len(sample)} pairs both scored: {worst:.1e}.",
        "",
    ]


def bundle_step(results: list[str], runs: int = 5) -> None:
    """Size and create/install time of the `default` recipe's bundle (median of interleaved runs)."""
    out = WORK / "default.tar.gz"
    create_t, install_t = [], []
    for i in range(runs):
        create_t.append(
            timed(
                [OMNITOK_BIN, "bundle", "create", "--recipe", "default", "-o", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        env = {
            **os.environ,
            "OMNITOK_HOME": str(WORK / f"bundle-home-{i}"),
            "TIKTOKEN_CACHE_DIR": str(WORK / f"tk-{i}"),
        }
        install_t.append(
            timed([OMNITOK_BIN, "bundle", "install", str(out), "--tiktoken-cache"], stdout=subprocess.DEVNULL, env=env)
        )
        shutil.rmtree(WORK / f"bundle-home-{i}", ignore_errors=True)
        shutil.rmtree(WORK / f"tk-{i}", ignore_errors=True)
    results += [
        "### Bundles: the `default` recipe (o200k_base + cl100k_base)",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| bundle size | {out.stat().st_size / 1e6:.2f} MB |",
        f"| `omnitok bundle create --recipe default` (median of {runs}) | {statistics.median(create_t):.2f} s |",
        f"| `omnitok bundle install` with `--tiktoken-cache` (median of {runs}) | {statistics.median(install_t):.2f} s |",
        "",
    ]


def cache_step(corpus: Path, results: list[str]) -> None:
    from . import cache_bench

    subset = WORK / "corpus-20mb.jsonl"
    if not subset.exists():
        with open(corpus, "rb") as src, open(subset, "wb") as dst:
            size = 0
            for line in src:
                dst.write(line)
                size += len(line)
                if size >= 20_000_000:
                    break
    cache_bench.main(corpus, WORK, OMNITOK_BIN, results, timed)


def compress_step(results: list[str]) -> None:
    from . import compress_bench

    compress_bench.main(results)


def module_step(module: str, title: str, results: list[str], *args: str) -> None:
    """A benchmark that lives in its own module (it starts servers, a Ray cluster, fresh
    processes): run as `python -m benchmarks.MODULE`, its markdown output taken into the results."""
    out = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args], capture_output=True, text=True, check=True
    ).stdout
    results += [f"### {title}", "", out.strip(), ""]


def main() -> None:
    target_mb = int(os.environ.get("OMNITOK_BENCH_MB", "100"))
    corpus = WORK / "corpus.jsonl"
    print(f"building corpus ({target_mb} MB of text) in {corpus} ...", file=sys.stderr, flush=True)
    records, text_bytes = build(corpus, target_mb * 1_000_000)
    text_mb = text_bytes / 1e6
    results = [
        f"## omnitok benchmarks ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python {sys.version.split()[0]})",
        "",
        f"Corpus: {records:,} JSONL records of ~2 KB, {text_mb:.0f} MB of text, "
        f"{corpus.stat().st_size / 1e6:.0f} MB on disk: Python sources and docs found on this machine.",
        "",
    ]
    only = set(filter(None, os.environ.get("OMNITOK_BENCH_ONLY", "").split(",")))
    steps = [
        ("throughput o200k", lambda: throughput(corpus, text_mb, "gpt-4o", "o200k_base", results)),
        ("throughput cl100k", lambda: throughput(corpus, text_mb, "gpt-4", "cl100k_base", results)),
        ("throughput hf", lambda: throughput_hf(corpus, results, text_mb)),
        ("gigabyte", lambda: gigabyte(results)),
        ("fixed costs", lambda: fixed_costs(corpus, text_mb, results)),
        ("start-up", lambda: startup(results)),
        ("cache", lambda: cache_step(corpus, results)),
        ("bundle", lambda: bundle_step(results)),
        ("rouge", lambda: rouge_step(corpus, results)),
        (
            "bertscore",
            lambda: module_step(
                "embed_bench", "BERTScore (benchmarks/embed_bench.py)", results, "--skip", "speed,retention"
            ),
        ),
        ("memory", lambda: memory(corpus, results)),
        ("compress", lambda: compress_step(results)),
        ("serve", lambda: module_step("serve_bench", "omnitok serve under load (benchmarks/serve_bench.py)", results)),
        (
            "serve guard",
            lambda: module_step(
                "serve_guard_bench", "omnitok serve under CPU-heavy requests (benchmarks/serve_guard_bench.py)", results
            ),
        ),
        (
            "ray",
            lambda: module_step("ray_bench", "Local pipeline vs Ray on one host (benchmarks/ray_bench.py)", results),
        ),
        (
            "embed",
            lambda: module_step(
                "embed_bench", "Model-backed paths (benchmarks/embed_bench.py)", results, "--skip", "bertscore"
            ),
        ),
        (
            "calibrate",
            lambda: module_step(
                "calibrate_bench",
                "Claude offline: calibrated vs built-in estimate (benchmarks/calibrate_bench.py)",
                results,
                "--out",
                str(Path(__file__).parent / "RESULTS-calibrate.md"),
            ),
        ),
        (
            "heuristic",
            lambda: module_step(
                "calibrate", "The heuristic's held-out error (benchmarks/calibrate.py --check)", results, "--check"
            ),
        ),
    ]
    failed = []
    for name, step in steps:
        if only and name not in only:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            step()
        except Exception:  # one broken step must not lose the others' figures
            import traceback

            traceback.print_exc()
            failed.append(name)
            results += [f"### {name}: FAILED (the traceback is on stderr; no figures)", ""]
    text = "\n".join(results)
    # A partial or failed run must not replace the full figures.
    name = "RESULTS.partial.md" if only or failed else "RESULTS.md"
    (Path(__file__).parent / name).write_text(text)
    print(text)
    if failed:
        sys.exit(f"benchmark steps failed: {', '.join(failed)} (results in benchmarks/{name})")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
