"""Issue 26's many-core run, prepared so that a machine lent for a few minutes does it in one call:
`omnitok count -m gpt-4o --summary` on 1 GB of distinct text at --jobs 1, 2, 4, 8, 16 (those up to
the machine's cores), and `omnitok serve --workers N` under a load of several client processes,
written as markdown (stdout, and `--out`).

    .venv/bin/python -m benchmarks.scaling [--mb 1000] [--jobs 1,2,4,8,16] [--workers 1,2,4,8,16]
        [--runs 3] [--duration 5] [--out FILE] [--work DIR]

Count: the corpus of `make bench`'s 1 GB step (benchmarks/corpus.py's build_shifted: the first
100 MB of text copied with its letters shifted, so no copy repeats another's words), each --jobs
value a whole process from the file (in the page cache), `--runs` times in interleaved rounds;
medians, MB/s, the speed-up over the smallest --jobs, and the token totals, which must be equal
(a difference fails the run). Goal (issue 26): `--jobs 16` >= 8x `--jobs 1`.

Serve: `omnitok serve --workers N` (N uvicorn processes on one port) answering POST /count-tokens
with ~1 KB texts (benchmarks/serve_bench.py's texts, checks and raw HTTP/1.1 client), loaded by
C forked client processes (C: half the cores, at least 1) of 8 x N connections in all, for
`--duration` seconds a case: requests/s summed over the clients, p50 and p99 over all requests,
and errors (a non-200 answer or a count other than tiktoken's). The clients share the machine
with the servers: the table names the cores each side had to share.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

from .corpus import build_shifted, into_page_cache

WORK = Path(__file__).parent / ".work"
OMNITOK_BIN = str(Path(sys.executable).parent / "omnitok")
BASE_MB = 100  # the text each shifted copy holds, as in `make bench`'s 1 GB step


def _numbers(value: str) -> list[int]:
    out = sorted({int(x) for x in value.split(",") if x.strip()})
    if not out or out[0] < 1:
        raise argparse.ArgumentTypeError(f"a comma-separated list of positive integers, not {value!r}")
    return out


def corpus(work: Path, mb: int) -> tuple[Path, int, int]:
    """The shifted corpus of `mb` MB of text (BASE_MB a copy; a smaller `mb` is one copy of that
    size): (path, records, text bytes)."""
    base = min(mb, BASE_MB)
    path = work / f"corpus-scaling-{mb}mb.jsonl"
    records, text_bytes = build_shifted(path, base * 1_000_000, math.ceil(mb / base))
    into_page_cache(path)
    return path, records, text_bytes


def count_scaling(path: Path, text_bytes: int, jobs: list[int], runs: int) -> list[str]:
    times: dict[int, list[float]] = {n: [] for n in jobs}
    totals: dict[int, set[int]] = {n: set() for n in jobs}
    for _ in range(runs):
        for n in jobs:
            cmd = [OMNITOK_BIN, "count", "-m", "gpt-4o", "--summary", "-j", str(n), str(path)]
            start = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, check=True)
            times[n].append(time.perf_counter() - start)
            totals[n].add(orjson.loads(r.stdout)["total_tokens"])
    every = set().union(*totals.values())
    if len(every) != 1:
        raise RuntimeError(f"token totals differ between --jobs values: {totals}")
    first = statistics.median(times[jobs[0]])
    mb = text_bytes / 1e6
    lines = [
        f"### `omnitok count -m gpt-4o --summary` by --jobs, {mb:,.0f} MB of distinct text, "
        f"{os.cpu_count()} cores (median of {runs}, interleaved)",
        "",
        f"| --jobs | median s | best s | MB/s | vs --jobs {jobs[0]} |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n in jobs:
        med = statistics.median(times[n])
        lines.append(f"| {n} | {med:.2f} | {min(times[n]):.2f} | {mb / med:.0f} | **{first / med:.2f}x** |")
    lines += ["", f"Token totals: {every.pop():,} at every --jobs value.", ""]
    if jobs[0] == 1 and 16 in times:
        verdict = "met" if first / statistics.median(times[16]) >= 8 else "NOT met"
        lines += [f"Goal `--jobs 16` >= 8x `--jobs 1`: {verdict}.", ""]
    return lines


_BODIES: list = []  # (request, expected) of the load, set before the client processes fork
_CHECK = None


def _client(url: str, connections: int, duration: float) -> tuple:
    from .serve_bench import _run, load_raw

    return _run(load_raw(url, _BODIES, _CHECK, connections, duration, None))


def _all_ready(url: str, workers: int, seconds: float = 120) -> None:
    """Wait until /readyz answers 200 on 4 x `workers` fresh connections in a row (each may reach
    another worker process: one that is still loading answers 503)."""
    import httpx

    deadline = time.monotonic() + seconds
    streak = 0
    while streak < 4 * workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"omnitok serve --workers {workers} was not ready in {seconds:g} s")
        try:
            ok = httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            ok = False
        streak = streak + 1 if ok else 0
        if not ok:
            time.sleep(0.1)


def serve_scaling(workers: list[int], duration: float) -> list[str]:
    global _BODIES, _CHECK
    from .serve_bench import _figures, _free_port, _start, cases, stop, texts_1kb

    _, _BODIES, _, _CHECK = cases(texts_1kb(1000))[0]
    cores = os.cpu_count() or 1
    procs = max(1, cores // 2)
    lines = [
        f"### `omnitok serve --workers N`, POST /count-tokens (1 KB text), {cores} cores shared by the "
        f"server and {procs} client process(es), {duration:g} s a case",
        "",
        "| --workers | connections | requests/s | vs 1 worker | p50 ms | p99 ms | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    first = None
    ctx = multiprocessing.get_context("fork")
    for n in workers:
        port = _free_port()
        server = _start(
            [OMNITOK_BIN, "serve", "--port", str(port), "--workers", str(n), "--log-level", "warning"], port
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _all_ready(url, n)
            connections = 8 * n
            shares = [connections // procs + (i < connections % procs) for i in range(procs)]
            shares = [k for k in shares if k]
            with concurrent.futures.ProcessPoolExecutor(len(shares), mp_context=ctx) as pool:
                slices = list(pool.map(_client, [url] * len(shares), shares, [duration] * len(shares)))
        finally:
            stop(server)
        rps = sum(len(lat) / elapsed for lat, elapsed, _ in slices)
        fig = _figures(slices)
        first = first or rps
        lines.append(
            f"| {n} | {connections} | {rps:.0f} | **{rps / first:.2f}x** | {fig['p50']:.2f} | {fig['p99']:.2f} "
            f"| {fig['errors']} |"
        )
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> None:
    cores = os.cpu_count() or 1
    default = ",".join(str(n) for n in (1, 2, 4, 8, 16) if n <= cores)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=1000, help="MB of text to count (default 1000)")
    ap.add_argument("--jobs", type=_numbers, default=default, help=f"--jobs values (default {default})")
    ap.add_argument("--workers", type=_numbers, default=default, help=f"serve --workers values (default {default})")
    ap.add_argument("--runs", type=int, default=3, help="count runs of each --jobs value (default 3)")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of load a serve case (default 5)")
    ap.add_argument("--out", type=Path, help="also write the markdown here")
    ap.add_argument("--work", type=Path, default=WORK, help="where the corpus is built (default benchmarks/.work)")
    args = ap.parse_args(argv)  # (argparse converts the string defaults with _numbers too)
    if args.mb < 1 or args.runs < 1 or not args.duration > 0:
        ap.error("--mb and --runs must be at least 1, --duration above 0")
    path, _, text_bytes = corpus(args.work, args.mb)
    lines = [f"## omnitok scaling ({time.strftime('%Y-%m-%d')}, {cores} cores, Python {sys.version.split()[0]})", ""]
    lines += count_scaling(path, text_bytes, args.jobs, args.runs)
    lines += serve_scaling(args.workers, args.duration)
    text = "\n".join(lines)
    if args.out is not None:
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, args.out)
    print(text)


if __name__ == "__main__":
    main()
