"""`omnitok serve` under load, next to two baselines that call tiktoken directly: a bare FastAPI
app, and a hand-written ASGI app (no framework, orjson) on the same uvicorn.

    .venv/bin/python -m benchmarks.serve_bench [--duration 10] [--clients 1,8,64] [--client raw,httpx]
        [--rounds 5]

The servers run as uvicorn processes with the same settings (one worker, 127.0.0.1, no access
log written: `omnitok serve --log-level warning`, the baselines with access_log=False; no Server
header, as `omnitok serve` sends none; uvicorn's own choice of HTTP parser and event loop,
httptools and uvloop when installed, the same for all three). A load client
keeps N requests in flight, one keep-alive connection each, for `--duration` seconds per case and
server (in `--rounds` turns that the servers take in turn), and records requests/s, p50 and
p99 latency, and errors (a non-200 answer, a transport error, or a count that differs from
tiktoken's). Two clients, each run against every server: `raw`, HTTP/1.1 written and read over
asyncio streams, and `httpx`, the httpx async client. Each row prints the client's own CPU time
a request, and each server's (its process's CPU time over the requests it answered, from
/proc/PID/stat: every thread it ran, ended ones included): where the client's is near the
servers' own (httpx), the client is the ceiling of the servers' requests/s on a 2-core machine
and squeezes the ratios towards 1; the raw client leaves the cores to the servers. On a machine
shared with other work the servers' CPU a request holds better than requests/s. Cases: POST /count-tokens with a ~1 KB text, and the batch form with 100 such
texts a request (omnitok: /count-tokens/batch; the baselines: the same list through
encode_ordinary_batch). Prints a markdown table; the ratio columns are omnitok's requests/s over
each baseline's, measured in turns with the same client. The load client shares the machine's
cores with the server under test.
"""

# No `from __future__ import annotations`: FastAPI must see the bare app's local body models.
import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

MODEL = "gpt-4"  # cl100k_base, for both servers
BATCH = 100


# --- the bare app: FastAPI + tiktoken, nothing else --------------------------------------------------


def _encoding():
    """tiktoken's own cl100k_base, its rank file read from omnitok's embedded copy (no network)."""
    import tiktoken
    import tiktoken_ext.openai_public as public

    import omnitok

    path = str(Path(omnitok.__file__).parent / "assets/data/openai/cl100k_base.tiktoken")
    real = public.load_tiktoken_bpe
    public.load_tiktoken_bpe = lambda url, expected_hash=None: real(path, expected_hash=expected_hash)
    try:
        return tiktoken.Encoding(**public.cl100k_base())
    finally:
        public.load_tiktoken_bpe = real


def bare_app():
    from fastapi import FastAPI
    from pydantic import BaseModel

    enc = _encoding()
    app = FastAPI()

    class One(BaseModel):
        text: str
        model_id: str = MODEL

    class Many(BaseModel):
        texts: list[str]
        model_id: str = MODEL

    @app.post("/count-tokens")
    async def count(req: One) -> dict:
        return {"token_count": len(enc.encode_ordinary(req.text)), "model_id": req.model_id}

    @app.post("/count-tokens/batch")
    async def batch(req: Many) -> dict:
        return {"results": [{"tokens": len(ids)} for ids in enc.encode_ordinary_batch(req.texts)]}

    return app


def asgi_app():
    """The hand-written baseline: a plain ASGI callable (no framework), orjson and tiktoken. It
    reads the body, takes `text` (or `texts`: a list of strings) and counts it as the FastAPI app
    does (encode_ordinary, encode_ordinary_batch for the batch form); anything else is a 400."""
    import orjson

    enc = _encoding()
    json_headers = [(b"content-type", b"application/json")]

    async def respond(send, status: int, data: bytes) -> None:
        headers = [(b"content-length", str(len(data)).encode()), *json_headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        path = scope["path"]
        try:
            req = orjson.loads(body) if scope["method"] == "POST" else None
        except orjson.JSONDecodeError:
            req = None
        if type(req) is dict and path == "/count-tokens" and type(req.get("text")) is str:
            answer = {"token_count": len(enc.encode_ordinary(req["text"])), "model_id": req.get("model_id", MODEL)}
        elif type(req) is dict and path == "/count-tokens/batch" and type(req.get("texts")) is list:
            texts = req["texts"]
            if not all(type(t) is str for t in texts):
                return await respond(send, 400, b'{"detail":"texts: strings"}')
            answer = {"results": [{"tokens": len(ids)} for ids in enc.encode_ordinary_batch(texts)]}
        else:
            return await respond(send, 404 if path not in ("/count-tokens", "/count-tokens/batch") else 400, b"{}")
        await respond(send, 200, orjson.dumps(answer))

    return app


# --- servers -------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(argv: list[str], port: int) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code in (200, 404):
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def start_omnitok(port: int) -> subprocess.Popen:
    omnitok = str(Path(sys.executable).with_name("omnitok"))
    return _start([omnitok, "serve", "--port", str(port), "--log-level", "warning", "--max-body-mb", "50"], port)


def start_bare(port: int, factory: str = "bare_app") -> subprocess.Popen:
    code = (
        f"import uvicorn; from benchmarks.serve_bench import {factory}; "
        f"uvicorn.run({factory}(), host='127.0.0.1', port={port}, log_level='warning', access_log=False, "
        "server_header=False)"
    )
    return _start([sys.executable, "-c", code], port)


def start_asgi(port: int) -> subprocess.Popen:
    return start_bare(port, "asgi_app")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process from /proc/PID/stat: every thread it ran, those that
    have ended included (tiktoken's encode_ordinary_batch runs a thread pool a call; the per-task
    files under /proc/PID/task list only the live ones). Linux; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    except (OSError, ValueError, IndexError):
        return None
    return total / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


# --- the load client -------------------------------------------------------------------------------------


def texts_1kb(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    words = [
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
        "it",
        "an",
        "were",
        "which",
        "are",
        "this",
        "be",
        "tokenizer",
        "model",
        "prompt",
        "context",
        "budget",
        "token",
        "count",
        "language",
        "large",
        "cache",
        "server",
        "request",
        "latency",
        "naïve",
        "café",
        "résumé",
        "東京",
        "数据",
        "😀",
        "x=1;",
        "def",
        "f():",
        "return",
        "[i",
        "*",
        "2",
        "for",
        "i",
        "in",
        "range(10)]",
    ]
    out = []
    for _ in range(n):
        s = []
        while sum(len(w) + 1 for w in s) < 1000:
            s.append(rng.choice(words))
        out.append(" ".join(s)[:1000])
    return out


async def load(url: str, bodies: list, check, clients: int, duration: float, max_requests: int | None) -> tuple:
    import httpx

    latencies: list[float] = []
    errors = 0
    sent = 0
    # One client (one keep-alive connection) per simulated user: a single pool shared by 64
    # tasks spends more time in httpx's pool bookkeeping than the servers spend answering.
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    pool = [httpx.AsyncClient(base_url=url, timeout=60, limits=one) for _ in range(clients)]
    stop_at = time.perf_counter() + duration  # after the clients are made (each builds an SSL context)

    async def worker(k: int) -> None:
        nonlocal errors, sent
        client = pool[k]
        i = k
        while time.perf_counter() < stop_at and (max_requests is None or sent < max_requests):
            sent += 1
            body, expected = bodies[i % len(bodies)]
            i += clients
            t0 = time.perf_counter()
            try:
                r = await client.post(body[0], json=body[1])
                ok = r.status_code == 200 and check(r.json(), expected)
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    try:
        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        elapsed = time.perf_counter() - start
    finally:
        for client in pool:
            await client.aclose()
    return latencies, elapsed, errors


class _Exchange(asyncio.Protocol):
    """One keep-alive connection of `load_raw`: writes a request, reads the response (status
    line, headers, Content-Length bytes of body) as it arrives, hands it to the run, which writes
    the next request at once (no task switch between requests)."""

    def __init__(self, run: "_RawRun | None"):
        self.run = run
        self.buf = bytearray()
        self.need: int | None = None
        self.status = 0
        self.transport = None
        self.expected = None
        self.t0 = 0.0
        self.in_flight = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.in_flight:
            if self.need is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(self.buf[:end]).split(b"\r\n")
                del self.buf[: end + 4]
                try:
                    self.status = int(lines[0].split(b" ", 2)[1])
                    self.need = next(
                        int(value)
                        for name, _, value in (x.partition(b":") for x in lines[1:])
                        if name.strip().lower() == b"content-length"
                    )
                except (ValueError, IndexError, StopIteration):  # no Content-Length: not these servers
                    self.run.failed(self)
                    self.transport.close()
                    return
            if len(self.buf) < self.need:
                return
            body = bytes(self.buf[: self.need])
            del self.buf[: self.need]
            self.need = None
            self.run.answered(self, self.status, body)

    def connection_lost(self, exc) -> None:
        if self.in_flight:
            self.run.failed(self)


class _RawRun:
    def __init__(self, prepared: list, check, clients: int, duration: float, max_requests: int | None):
        self.prepared = prepared
        self.check = check
        self.clients = clients
        self.stop_at = time.perf_counter() + duration
        self.max_requests = max_requests
        self.latencies: list[float] = []
        self.errors = 0
        self.sent = 0
        self.active = clients
        self.finished = asyncio.get_running_loop().create_future()

    def send_next(self, conn: _Exchange) -> None:
        if time.perf_counter() < self.stop_at and (self.max_requests is None or self.sent < self.max_requests):
            request, conn.expected = self.prepared[self.sent % len(self.prepared)]
            self.sent += 1
            conn.in_flight = True
            conn.t0 = time.perf_counter()
            conn.transport.write(request)
            return
        conn.in_flight = False
        self.active -= 1
        if self.active == 0 and not self.finished.done():
            self.finished.set_result(None)

    def answered(self, conn: _Exchange, status: int, body: bytes) -> None:
        import json

        self.latencies.append(time.perf_counter() - conn.t0)
        try:
            ok = status == 200 and self.check(json.loads(body), conn.expected)
        except (ValueError, KeyError, TypeError):
            ok = False
        self.errors += not ok
        self.send_next(conn)

    def failed(self, conn: _Exchange) -> None:
        """A request without a proper answer: an error, and this connection's last."""
        self.latencies.append(time.perf_counter() - conn.t0)
        self.errors += 1
        conn.in_flight = False
        self.active -= 1
        if self.active == 0 and not self.finished.done():
            self.finished.set_result(None)


async def load_raw(url: str, bodies: list, check, clients: int, duration: float, max_requests: int | None) -> tuple:
    """As `load`, with HTTP/1.1 written and read by hand (an asyncio Protocol a connection): the
    same requests (POST, JSON body, Content-Type and Content-Length), the same checks, at a small
    fraction of httpx's CPU a request."""
    import json

    host, port = url.removeprefix("http://").split(":")
    prepared = []
    for (path, obj), expected in bodies:
        data = json.dumps(obj).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        prepared.append((head.encode() + data, expected))
    loop = asyncio.get_running_loop()
    conns = []
    try:
        for _ in range(clients):
            conns.append(await loop.create_connection(lambda: _Exchange(None), host, int(port)))
        run = _RawRun(prepared, check, clients, duration, max_requests)  # the clock starts here
        for _, conn in conns:
            conn.run = run
        start = time.perf_counter()
        for _, conn in conns:
            run.send_next(conn)
        await run.finished
        elapsed = time.perf_counter() - start
    finally:
        for transport, _ in conns:
            transport.close()
    return run.latencies, elapsed, run.errors


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _figures(slices: list[tuple]) -> dict:
    """requests/s, p50, p99 and errors of (latencies, elapsed, errors) slices taken together."""
    latencies = sorted(x for lat, _, _ in slices for x in lat)
    elapsed = sum(e for _, e, _ in slices)
    errors = sum(e for _, _, e in slices)
    n = len(latencies)
    return {
        "requests": n,
        "rps": n / elapsed,
        "p50": latencies[n // 2] * 1000 if n else float("nan"),
        "p99": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
        "errors": errors,
    }


CLIENTS = {"raw": load_raw, "httpx": load}


def _run(coro):
    """The client's event loop: uvloop where installed (the cheaper loop for the load client)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _stack() -> str:
    import importlib.util

    import uvicorn

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn {uvicorn.__version__} with {http} and {loop}"


INLINE_MODELS = ("gpt-4o", "gpt-4", "claude-sonnet-4-5")


def inline_worst() -> tuple[float, str]:
    """The longest a text of runtime.INLINE_MAX_CHARS characters takes to count (the most a count on
    `omnitok serve`'s event loop holds it), over inputs chosen to be slow (one long piece of
    emoji, random astral, CJK or other BMP characters, letters without spaces) and the models
    in INLINE_MODELS: (milliseconds, what), the best of 3 tries of each."""
    from omnitok import runtime
    from omnitok.counter import Counter

    n = runtime.INLINE_MAX_CHARS
    rng = random.Random(2)

    def pick(lo: int, hi: int) -> str:
        return "".join(chr(rng.randrange(lo, hi)) for _ in range(n))

    inputs = {
        "emoji": "\U0001f600" * n,
        "random astral": pick(0x10000, 0x1FFFF),
        "random CJK": pick(0x4E00, 0x9FFF),
        "random BMP": pick(0xA0, 0xD7FF),
        "random ASCII, no spaces": pick(0x21, 0x7F),
        "random letters": pick(0x61, 0x7B),
    }
    worst, what = 0.0, ""
    for model in INLINE_MODELS:
        counter = Counter(model)
        for label, text in inputs.items():
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                counter.count_batch([text])
                best = min(best, time.perf_counter() - t0)
            if best > worst:
                worst, what = best, f"{label}, {model}"
    return worst * 1000, what


def cases(texts: list[str]):
    """(name, omnitok bodies, bare bodies, omnitok check, bare check): bodies are ((path, json), expected)."""
    enc = _encoding()
    counts = [len(enc.encode_ordinary(t)) for t in texts]
    one_o = [(("/count-tokens", {"text": t, "model_id": MODEL}), n) for t, n in zip(texts, counts, strict=True)]
    one_b = one_o
    groups = [list(range(i, i + BATCH)) for i in range(0, len(texts) - BATCH + 1, BATCH)] or [list(range(len(texts)))]
    many_o = [
        (("/count-tokens/batch", {"texts": [texts[i] for i in g], "model_id": MODEL}), [counts[i] for i in g])
        for g in groups
    ]
    many_b = many_o
    single = ("POST /count-tokens (1 KB text)", one_o, one_b, lambda r, n: r["token_count"] == n)
    batch = (
        f"POST /count-tokens/batch ({BATCH} x 1 KB)",
        many_o,
        many_b,
        lambda r, ns: [row["tokens"] for row in r["results"]] == ns,
    )
    return [single, batch]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per case (default 10)")
    ap.add_argument("--clients", default="1,8,64", help="concurrent clients, comma-separated (default 1,8,64)")
    ap.add_argument("--max-requests", type=int, default=None, help="stop a case after this many requests")
    ap.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="split each case's duration into this many turns, taken by the two servers in turn (default 5)",
    )
    ap.add_argument(
        "--client", default="raw,httpx", help="load clients, comma-separated: raw, httpx (default raw,httpx)"
    )
    args = ap.parse_args(argv)
    levels = [int(x) for x in args.clients.split(",")]
    kinds = [k.strip() for k in args.client.split(",") if k.strip()]
    if not kinds or any(k not in CLIENTS for k in kinds):
        ap.error(f"--client takes {', '.join(CLIENTS)}")
    texts = texts_1kb(1000)
    starters = {"omnitok": start_omnitok, "fastapi": start_bare, "asgi": start_asgi}
    ports = {who: _free_port() for who in starters}
    servers = {}
    rows = []
    total_errors = 0
    load_before = os.getloadavg()
    try:
        for who, starter in starters.items():
            servers[who] = starter(ports[who])
        for kind in kinds:
            client = CLIENTS[kind]
            for name, bodies_o, bodies_b, check in cases(texts):
                for clients in levels:
                    bodies = {"omnitok": bodies_o, "fastapi": bodies_b, "asgi": bodies_b}
                    server_cpu: dict[str, float | None] = dict.fromkeys(starters, 0.0)
                    slices: dict[str, list] = {who: [] for who in starters}
                    client_cpu = 0.0
                    for who in starters:
                        _run(client(f"http://127.0.0.1:{ports[who]}", bodies[who], check, clients, 1.0, 50))  # warm up
                    # Rounds taken in turn, the order turned each round (omnitok, fastapi, asgi;
                    # fastapi, asgi, omnitok; ...), so that other work on the machine falls on
                    # every server alike.
                    order = list(starters)
                    for r in range(args.rounds):
                        for who in order[r % 3 :] + order[: r % 3]:
                            url = f"http://127.0.0.1:{ports[who]}"
                            per = args.duration / args.rounds
                            cpu0, server0 = time.process_time(), cpu_seconds(servers[who].pid)
                            slices[who].append(_run(client(url, bodies[who], check, clients, per, args.max_requests)))
                            client_cpu += time.process_time() - cpu0
                            server1 = cpu_seconds(servers[who].pid)
                            if server0 is None or server1 is None or server_cpu[who] is None:
                                server_cpu[who] = None
                            else:
                                server_cpu[who] += server1 - server0
                    res = {who: _figures(slices[who]) for who in slices}
                    client_us = client_cpu / sum(res[who]["requests"] for who in starters) * 1e6
                    for who in starters:
                        used = server_cpu[who]
                        res[who]["cpu_us"] = None if used is None else used / res[who]["requests"] * 1e6
                        total_errors += res[who]["errors"]
                    rows.append((kind, name, clients, res, client_us))
                    print(
                        f"# {kind}: {name}, {clients} clients: "
                        + ", ".join(f"{who} {res[who]['rps']:.0f} req/s" for who in starters),
                        file=sys.stderr,
                    )
    finally:
        for proc in servers.values():
            stop(proc)
    load_after = os.getloadavg()
    inline_ms, inline_what = inline_worst()
    cpu = os.cpu_count()
    print(
        f"\n`python -m benchmarks.serve_bench --duration {args.duration:g} --clients {args.clients} "
        f"--client {args.client} --rounds {args.rounds}`"
    )
    print(
        f"({cpu} cores shared by the load client and the servers; one uvicorn worker each, {_stack()}; "
        f"Python {sys.version.split()[0]}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after. "
        "Baselines: `fastapi`, a FastAPI app calling tiktoken (pydantic request models); `asgi`, a "
        "hand-written ASGI app on the same uvicorn with orjson and tiktoken, no framework. Server CPU: "
        "/proc/PID/stat, every thread the process ran, ended ones included.)\n"
    )
    print(
        "| client | case | clients | omnitok req/s | p50 ms | p99 ms | FastAPI+tiktoken req/s | ASGI+orjson+tiktoken "
        "req/s | p50 ms | p99 ms | vs FastAPI | vs ASGI | errors | server CPU us/request, omnitok / FastAPI / ASGI "
        "| client CPU us/request |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, name, clients, res, client_us in rows:
        o, f, a = res["omnitok"], res["fastapi"], res["asgi"]
        print(
            f"| {kind} | {name} | {clients} | {o['rps']:.0f} | {o['p50']:.2f} | {o['p99']:.2f} | {f['rps']:.0f} | "
            f"{a['rps']:.0f} | {a['p50']:.2f} | {a['p99']:.2f} | {o['rps'] / f['rps']:.2f} | "
            f"**{o['rps'] / a['rps']:.2f}** | {o['errors'] + f['errors'] + a['errors']} | "
            f"{_us(o['cpu_us'])} / {_us(f['cpu_us'])} / {_us(a['cpu_us'])} | {client_us:.0f} |"
        )
    from omnitok import runtime

    print(
        f"\nLongest count of a {runtime.INLINE_MAX_CHARS:,}-character text (the most `omnitok serve` counts on its "
        f"event loop) among slow inputs: {inline_ms:.2f} ms ({inline_what}; best of 3)."
    )
    if total_errors:
        print(f"\n{total_errors} errors under load", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
