"""`omnitok serve` under CPU-heavy requests: does the event loop keep answering?

    .venv/bin/python -m benchmarks.serve_guard_bench [--seconds 15] [--heavy 4] [--timeout 20]

Issue 23's goal: while 4 maximal /validate requests run, /healthz answers with p99 <= 100 ms.
One `omnitok serve` (one worker, its defaults: --max-body-mb 10, --cpu-workers the cores) is
sampled on GET /healthz every 20 ms over one keep-alive connection, first idle (the reference,
same run, same client), then from the moment `--heavy` clients start to POST a /validate of two
~4.8 MB texts (a body just under the 10 MB limit: its upload and parsing are sampled too;
ROUGE-L of two such texts would take hours, so each runs until the server's --timeout). Prints the /healthz latencies of both phases, how late after the
deadline each heavy request got its 504, and how long until a fresh worker answered a small
/validate after the 504s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path

from benchmarks.serve_bench import _free_port, _start, stop, texts_1kb


class Probe:
    """GET /healthz over one keep-alive connection; each call's latency in ms."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def once(self) -> float:
        t = time.perf_counter()
        self.conn.request("GET", "/healthz")
        r = self.conn.getresponse()
        r.read()
        assert r.status == 200, r.status
        return (time.perf_counter() - t) * 1000


def sample(probe: Probe, seconds: float, every: float = 0.02) -> list[float]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(probe.once())
        time.sleep(every)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--heavy", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=20.0)
    args = ap.parse_args()
    if not args.seconds + 1 < args.timeout:
        sys.exit("--timeout must leave the sampling window (--seconds + 1 s) inside it")
    port = _free_port()
    omnitok = str(Path(sys.executable).with_name("omnitok"))
    argv = [omnitok, "serve", "--port", str(port), "--timeout", f"{args.timeout:g}", "--log-level", "warning"]
    server = _start(argv, port)
    try:
        run(port, args)
    finally:
        stop(server)


def run(port: int, args) -> None:
    half = 4_600  # texts of ~1 KB: ~4.8 MB a side, a body under the default 10 MB limit
    original, compressed = " ".join(texts_1kb(half, seed=1)), " ".join(texts_1kb(half, seed=2))
    body = json.dumps(
        {"original": original, "compressed": compressed, "metrics": ["rouge-l"]}, ensure_ascii=False
    ).encode()
    assert len(body) < 10 * 1024 * 1024, len(body)
    probe = Probe(port)  # after the bodies are made: the connection must not idle past keep-alive
    idle = sample(probe, args.seconds / 3)
    answers: list[tuple[int, float]] = []
    lock = threading.Lock()

    def heavy() -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=args.timeout + 60)
        t = time.monotonic()
        c.request("POST", "/validate", body=body, headers={"content-type": "application/json"})
        r = c.getresponse()
        r.read()
        with lock:
            answers.append((r.status, time.monotonic() - t))

    threads = [threading.Thread(target=heavy) for _ in range(args.heavy)]
    started = time.monotonic()
    for t in threads:
        t.start()
    busy = sample(probe, args.seconds)  # from the first byte of the uploads: their reading and parsing count
    for t in threads:
        t.join()
    ended = time.monotonic()
    # After the 504s: how long until a small /validate is answered by a worker again.
    small = json.dumps({"original": "the cat sat on the mat", "compressed": "cat sat on mat"}).encode()
    t = time.monotonic()
    while True:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("POST", "/validate", body=small, headers={"content-type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status == 200:
            break
        time.sleep(0.05)
    recovered = time.monotonic() - t

    statuses = sorted({s for s, _ in answers})
    late = [s - args.timeout for _, s in answers]
    print(f"One worker, `--timeout {args.timeout:g}`, {args.heavy} heavy clients; {os.cpu_count()} cores.")
    print()
    print("| /healthz | samples | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for name, xs in (("idle (reference)", idle), (f"while {args.heavy} maximal /validate run", busy)):
        print(f"| {name} | {len(xs)} | {pct(xs, 0.5):.2f} | {pct(xs, 0.99):.2f} | {max(xs):.2f} |")
    print()
    print(
        f"p99 under load / idle: {pct(busy, 0.99) / pct(idle, 0.99):.2f}x (goal: p99 <= 100 ms). "
        f"Heavy requests answered {statuses} {min(late):+.2f} to {max(late):+.2f} s after the deadline "
        f"(from the start of their upload); all {args.heavy} in {ended - started:.1f} s; "
        f"the next small /validate answered {recovered:.2f} s after the last 504."
    )


if __name__ == "__main__":
    main()
