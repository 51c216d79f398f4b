"""`omnitok serve` under CPU-heavy requests: does the event loop keep answering?

    .venv/bin/python -m benchmarks.serve_guard_bench [--seconds 15] [--heavy 4] [--timeout 20]

Issue 23's goal: while 4 maximal /validate requests run, /healthz answers with p99 <= 100 ms.
One `omnitok serve` (one worker, its defaults: --max-body-mb 10, --cpu-workers the cores) is
sampled on GET /healthz every 20 ms over one keep-alive connection, first idle (the reference,
same run, same client), then from the moment `--heavy` clients start to POST a /validate of two
~4.9 MB texts (a 9.8 MB body, under the 10 MB limit: its upload and parsing are sampled too;
ROUGE-L of two such texts would take hours, so each runs until the server's --timeout). Prints the /healthz latencies of both phases, how late after the
deadline each heavy request got its 504, and how long until a fresh worker answered a small
/validate after the 504s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "her",
    "they",
    "this",
    "which",
    "be",
    "are",
    "were",
    "river",
    "mountain",
    "city",
    "council",
    "budget",
    "winter",
    "harvest",
    "engine",
    "signal",
    "market",
    "theory",
    "letter",
    "station",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prose(n_bytes: int, seed: int) -> str:
    rng = random.Random(seed)
    out, size = [], 0
    while size < n_bytes:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))).capitalize() + ". "
        out.append(sentence)
        size += len(sentence)
    return "".join(out)[:n_bytes]


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

    port = free_port()
    omnitok = str(Path(sys.executable).with_name("omnitok"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMNITOK_CACHE_DIR": str(Path(tmp) / "cache")}
        env.pop("L3_CACHE_URL", None)
        server = subprocess.Popen(
            [omnitok, "serve", "--port", str(port), "--timeout", f"{args.timeout:g}", "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    c.request("GET", "/readyz")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("omnitok serve did not get ready")
                time.sleep(0.1)
            run(port, args)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()


def run(port: int, args) -> None:
    probe = Probe(port)
    idle = sample(probe, args.seconds / 3)
    half = 4_900_000
    body = json.dumps({"original": prose(half, 1), "compressed": prose(half, 2), "metrics": ["rouge-l"]}).encode()
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
