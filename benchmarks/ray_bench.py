"""omnitok count on one host: the local pipeline (`omnitok count` as a process) vs Ray Data
(`omnitok.ray.count_paths`, a fresh local Ray in its own process), on the same Parquet dataset.

    .venv/bin/python -m benchmarks.ray_bench            # 200 MB of text; OMNITOK_BENCH_MB=100 for less

The dataset is benchmarks.corpus's (Python sources and docs on this machine, ~2 KB records),
written as Parquet files (row groups of ~8 MB of text) under benchmarks/.work/. Both runs write
their per-record results as Parquet and are checked to agree on records, errors and total tokens.

Reported: the local wall time; Ray's start-up (Python + Ray start + the probe task that builds
the core on a worker) apart from its run (planning + the job); the overhead ratio of the Ray run
(and of the whole Ray process) to the local run; MB/s of text per worker; and what that rate means
for 1 TB of text an hour. Results go to benchmarks/.work/ray_bench.json and are printed as Markdown.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .corpus import build

WORK = Path(__file__).parent / ".work"
OMNITOK_BIN = str(Path(sys.executable).parent / "omnitok")
MODEL = "gpt-4o"
FILES = 4
GROUP_BYTES = 8 << 20

RAY_RUN = r"""
import json, sys, time
t0 = time.perf_counter()
import ray
import omnitok.ray as oray
files, out, cpus, store = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t_import = time.perf_counter() - t0
runs = []
for i in range(2):  # the first starts Ray; the second finds it up (actors still start afresh)
    ro = oray.RayOptions(address="local", init={"num_cpus": cpus, "object_store_memory": store})
    r = oray.count_paths(files, f"{out}-{i}", "gpt-4o", ray_options=ro)
    runs.append(r.summary)
print(json.dumps({"import_s": t_import, "runs": runs}))
"""


def dataset(mb: int) -> tuple[Path, int, int]:
    """The Parquet dataset of `mb` MB of text: (directory, records, text bytes)."""
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    jsonl = WORK / f"ray-corpus-{mb}mb.jsonl"
    records, text_bytes = build(jsonl, mb * 1_000_000)
    out = WORK / f"ray-parquet-{mb}mb"
    stamp = out / "_built.json"
    if stamp.exists() and json.loads(stamp.read_text()) == {"records": records, "text_bytes": text_bytes}:
        return out, records, text_bytes
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    table = pajson.read_json(jsonl, pajson.ReadOptions(block_size=16 << 20))
    per_file = -(-table.num_rows // FILES)
    rows_per_group = max(1, int(GROUP_BYTES / (text_bytes / records)))
    for k in range(FILES):
        part = table.slice(k * per_file, per_file)
        pq.write_table(part, out / f"part-{k}.parquet", row_group_size=rows_per_group)
    stamp.write_text(json.dumps({"records": records, "text_bytes": text_bytes}))
    return out, records, text_bytes


def run_local(files: list[str], jobs: int) -> dict:
    out = WORK / "ray-bench-local.parquet"
    out.unlink(missing_ok=True)
    cmd = [OMNITOK_BIN, "count", "-m", MODEL, "--jobs", str(jobs), "-o", str(out), "--summary", "--quiet", *files]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, check=True)
    wall = time.perf_counter() - t
    return {"wall_s": wall, "summary": json.loads(p.stdout), "command": " ".join(cmd)}


def run_ray(files: list[str], cpus: int) -> dict:
    out = WORK / "ray-bench-ray"
    for i in range(2):
        shutil.rmtree(f"{out}-{i}", ignore_errors=True)
    store = 300 << 20
    cmd = [sys.executable, "-c", RAY_RUN, json.dumps(files), str(out), str(cpus), str(store)]
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, check=True, env=env)
    wall = time.perf_counter() - t
    lines = [line for line in p.stdout.decode().splitlines() if line.startswith("{")]
    return {"wall_s": wall, **json.loads(lines[-1])}


def main() -> None:
    mb = int(os.environ.get("OMNITOK_BENCH_MB", "200"))
    cpus = len(os.sched_getaffinity(0))
    directory, records, text_bytes = dataset(mb)
    files = sorted(str(p) for p in directory.glob("*.parquet"))
    parquet_bytes = sum(os.path.getsize(f) for f in files)
    local = run_local(files, cpus)
    ray_ = run_ray(files, cpus)
    cold, warm = ray_["runs"]
    for s in (cold, warm):
        for key in ("records", "errors", "total_tokens"):
            assert s[key] == local["summary"][key], (key, s[key], local["summary"][key])
    text_mb = text_bytes / 1e6
    workers = warm["workers"]
    run_s = warm["seconds"]["plan"] + warm["seconds"]["run"]
    per_worker = text_mb / run_s / workers
    tb_hour = 1e12 / 3600 / 1e6  # MB/s of text for 1 TB an hour
    result = {
        "cores": cpus,
        "records": records,
        "text_mb": round(text_mb, 1),
        "parquet_mb": round(parquet_bytes / 1e6, 1),
        "files": len(files),
        "local": {"wall_s": round(local["wall_s"], 3), "mb_s": round(text_mb / local["wall_s"], 1)},
        "ray": {
            "process_wall_s": round(ray_["wall_s"], 3),
            "python_and_import_s": round(ray_["import_s"], 3),
            "cold": cold["seconds"],
            "warm": warm["seconds"],
            "workers": workers,
            "shards": warm["shards"],
        },
        "overhead_run": round(run_s / local["wall_s"], 2),
        "overhead_cold_run": round((cold["seconds"]["plan"] + cold["seconds"]["run"]) / local["wall_s"], 2),
        "overhead_whole_process": round(ray_["wall_s"] / 2 / local["wall_s"], 2),
        "mb_s_per_worker": round(per_worker, 1),
        "workers_for_1tb_hour": int(-(-tb_hour // per_worker)),
        "total_tokens": local["summary"]["total_tokens"],
        "local_command": local["command"],
    }
    (WORK / "ray_bench.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    print()
    print(
        f"| {text_mb:.0f} MB of text, {records:,} records, {len(files)} Parquet files, {cpus} cores | seconds | MB/s |"
    )
    print("|---|---:|---:|")
    print(
        f"| local `omnitok count --jobs {cpus}` (process wall) | {local['wall_s']:.2f} | {text_mb / local['wall_s']:.1f} |"
    )
    print(f"| Ray start-up (ray.init + probe), first run | {cold['seconds']['startup']:.2f} | |")
    print(f"| Ray run (plan + job), first run | {cold['seconds']['plan'] + cold['seconds']['run']:.2f} | |")
    print(f"| Ray run (plan + job), Ray already up | {run_s:.2f} | {text_mb / run_s:.1f} |")
    print(f"| overhead, Ray run / local | {result['overhead_run']:.2f}x | |")
    print(f"| per worker ({workers} workers) | | {per_worker:.1f} |")


if __name__ == "__main__":
    main()
