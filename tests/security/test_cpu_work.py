"""Issue 23, item 3: CPU-heavy work never holds the event loop, and --timeout holds on every route.

Before, /validate's ROUGE-L ran in the server's thread pool holding the GIL: one 2.3 MB body kept
/healthz from answering for 12.5 s, and --timeout 60 answered 504 at 286 s. Now /validate and
/compress run in worker processes (omnitok.serve.workers): killed at the deadline, replaced,
bounded (503 with Retry-After past the queue), gone with the server. Through a real `omnitok
serve`; the worker processes are found under the server's pid in /proc."""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import sys
import threading
import time

import pytest

import omnitok
from tests.mock_providers import API_KEY
from tests.serve_server import ModuleClient, Server

httpx = pytest.importorskip("httpx")
pytest.importorskip("rapidfuzz", reason="ROUGE-L needs the validate extra")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree in /proc")

TIMEOUT = 3.0  # the servers' --timeout: small, so that the tests are quick
LATE = 7.0  # how long after the deadline an answer may come on a loaded machine (still far from minutes)
MAX_BODY = 10 * 1024 * 1024  # the default --max-body-mb 10
# The servers' default model, whose warm-up (/readyz) is all it is used for here: a heuristic one
# loads in ~0.05 s of CPU where gpt-4o's tokenizer takes ~0.3 s, in each of the 7 servers' processes.
MODEL = ("--model", "gemini-2.5-flash")
SMALL = {"original": "the cat sat on the mat today", "compressed": "the cat sat", "metrics": ["rouge-l"]}
JSON = {"content-type": "application/json"}


def maximal_body() -> bytes:
    """A /validate body just under the default limit: two texts of random words (no common
    prefix or suffix for the LCS to skip), whose ROUGE-L would take minutes. The words are 4 hex
    digits of random bytes (bytes.hex's separator: made in C, ~0.05 s of CPU where a join of
    random.choices took ~0.2 s), about a million tokens a text."""
    rng = random.Random(23)
    half = (MAX_BODY - 100) // 2
    texts = [rng.randbytes(half // 5 * 2).hex(" ", 2)[: half - 10] for _ in range(2)]
    body = json.dumps({"original": texts[0], "compressed": texts[1], "metrics": ["rouge-l"]}).encode()
    assert MAX_BODY - 200 < len(body) <= MAX_BODY
    return body


@pytest.fixture(scope="module")
def heavy_body() -> bytes:
    return maximal_body()


# --- the process tree ---------------------------------------------------------------------------


def _procs() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        out[int(entry)] = (int(ppid), state)
    return out


def descendants(pid: int, procs: dict | None = None) -> set[int]:
    procs = _procs() if procs is None else procs
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, (ppid, _) in procs.items() if ppid in frontier} - found
        found |= frontier
    return found


def alive(pid: int, procs: dict | None = None) -> bool:
    """The process exists and is not a zombie (a zombie burns no CPU)."""
    state = (_procs() if procs is None else procs).get(pid)
    return state is not None and state[1] not in ("Z", "X")


def any_alive(pids) -> bool:
    procs = _procs()  # one read of /proc for them all (~1.5 ms of CPU each, polled 20 times a second)
    return any(alive(pid, procs) for pid in pids)


def cpu_workers(server: Server) -> list[int]:
    procs = _procs()
    pids = []
    for pid in descendants(server.proc.pid, procs):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"omnitok.serve.workers" in cmdline and alive(pid, procs):
            pids.append(pid)
    return sorted(pids)


def wait_for(predicate, timeout: float = 30, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_workers(server: Server, n: int) -> list[int]:
    return wait_for(lambda: (lambda p: p if len(p) == n else None)(cpu_workers(server)), what=f"{n} CPU workers")


def cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait_busy(pids: list[int]) -> int:
    """The first of `pids` seen burning CPU (a job runs in it)."""
    start = {pid: cpu_ticks(pid) for pid in pids}

    def busy():
        return next((pid for pid in pids if cpu_ticks(pid) - start[pid] >= 10), None)

    return wait_for(busy, 20, "a busy CPU worker")


# For single requests: as httpx.post, a new connection for each (no keep-alive: each may reach
# another uvicorn worker), with one SSL context for them all; the threads below share it.
http = ModuleClient(limits=httpx.Limits(max_keepalive_connections=0))
_close_http = http.closing()


def post_in_thread(url: str, body: bytes, results: list) -> threading.Thread:
    def go():
        started = time.monotonic()
        try:
            r = http().post(url, content=body, headers=JSON, timeout=120)
        except httpx.TransportError as e:
            r = e
        results.append((r, time.monotonic() - started))

    t = threading.Thread(target=go)
    t.start()
    return t


def assert_timeout(r, elapsed: float) -> None:
    assert isinstance(r, httpx.Response), r
    assert r.status_code == 504, r.text[:300]
    assert r.json()["error"]["code"] == "timeout"
    # At the deadline, not minutes later (the job alone runs for minutes). The slack is for a 2-core
    # machine running the suite 4-wide beside four CPU workers: a fresh-clone CI run answered 2.6 s
    # after the deadline; benchmarks/serve_guard_bench.py measures the latency itself.
    assert TIMEOUT - 0.05 <= elapsed < TIMEOUT + LATE, elapsed


@functools.cache
def small_reference():
    return omnitok.validate(SMALL["original"], SMALL["compressed"], metrics=["rouge-l"])


def assert_small_validate(server: Server) -> None:
    # A worker just started may still be importing when the job reaches it: on a loaded 2-core
    # machine (a fresh-clone CI run) that took past the 3 s deadline once. A 504 then is tried
    # again; what is checked is that the workers answer, and answer right.
    for _ in range(5):
        r = http().post(f"{server.url}/validate", json=SMALL, timeout=30)
        if r.status_code != 504:
            break
    assert r.status_code == 200, r.text
    lib = small_reference()
    assert r.json()["rouge_l_score"] == lib.rouge_l_score and r.json()["details"] == lib.details


# --- four maximal /validate requests -----------------------------------------------------------


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("cpu4"), *MODEL, "--cpu-workers", "4", "--timeout", str(TIMEOUT))
    yield srv
    srv.stop()


def test_healthz_answers_while_four_maximal_validates_run_then_workers_are_replaced(four, heavy_body):
    before = wait_workers(four, 4)
    assert_small_validate(four)
    results: list = []
    threads = [post_in_thread(f"{four.url}/validate", heavy_body, results) for _ in range(4)]
    latencies = []
    with httpx.Client(base_url=four.url, timeout=60) as c:
        while any(t.is_alive() for t in threads):
            started = time.perf_counter()
            r = c.get("/healthz")
            latencies.append(time.perf_counter() - started)
            assert r.status_code == 200
            # A probe each 50 ms (each costs the server and this process ~2 ms of CPU): an event
            # loop held for more than that is still seen, and the bound below is seconds.
            time.sleep(0.05)
    for t in threads:
        t.join()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(
        f"\n/healthz during 4 maximal /validate ({len(heavy_body) / 1e6:.1f} MB each): {len(latencies)} probes, "
        f"p50 {latencies[len(latencies) // 2] * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, max {latencies[-1] * 1e3:.1f} ms"
    )
    # Before: no answer until ROUGE-L ended, minutes later (probes timed out at 5 s for 15 s). The
    # bound leaves room for a loaded 2-core machine (the suite runs in parallel) and still fails
    # that by far; benchmarks/serve_guard_bench.py measures the p99 against its 100 ms goal.
    assert len(latencies) >= 10
    assert latencies[-1] <= 5.0  # a fresh-clone CI run saw 2.5 s once (the suite 4-wide on 2 cores)
    for r, elapsed in results:
        assert_timeout(r, elapsed)
    # The jobs were killed with their deadline: no CPU burns on, and four fresh workers serve.
    wait_for(lambda: not any_alive(before), 30, "the killed workers to be gone")
    after = wait_workers(four, 4)
    assert not set(after) & set(before)
    assert_small_validate(four)
    assert cpu_workers(four) == after


# --- a full pool, and the count routes' deadline -------------------------------------------------


@pytest.fixture(scope="module")
def one(tmp_path_factory, mock):
    env = {"GOOGLE_API_KEY": API_KEY, "GOOGLE_GEMINI_BASE_URL": mock.url}
    srv = Server(tmp_path_factory.mktemp("cpu1"), *MODEL, "--cpu-workers", "1", "--timeout", str(TIMEOUT), env=env)
    yield srv
    srv.stop()


def test_a_full_pool_answers_503_with_retry_after(one, heavy_body):
    [pid] = wait_workers(one, 1)
    assert_small_validate(one)
    results: list = []
    first = post_in_thread(f"{one.url}/validate", heavy_body, results)
    wait_busy([pid])
    second = post_in_thread(f"{one.url}/validate", heavy_body, results)  # waits: the queue's one place
    time.sleep(0.8)
    r = http().post(f"{one.url}/validate", json=SMALL, timeout=30)
    # Refused at admission, not queued: the pool raises Busy (503) only there; a queued job that
    # met its deadline would be a 504. (Not timed: a CI run on a loaded 2-core machine took 4.2 s
    # for this answer, past the 2 s bound this test had.)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "busy"
    assert 1 <= int(r.headers["retry-after"]) <= TIMEOUT
    first.join()
    second.join()
    for r, elapsed in results:
        assert_timeout(r, elapsed)  # the queued one too: its deadline counts from its arrival
    assert_small_validate(one)  # a fresh worker
    assert cpu_workers(one) != [pid]


def test_count_routes_answer_504_at_the_deadline(one, mock):
    """The count routes run in threads (a provider call here, stalled for 6 s): 504 at --timeout."""
    stalled = (200, {}, {"totalTokens": 2}, 6.0)
    mock.fail("gemini", stalled, stalled)
    results: list = []
    body = {"model_id": "gemini-2.5-flash", "online": True}
    threads = [
        post_in_thread(f"{one.url}/count-tokens", json.dumps({**body, "text": "stalled one"}).encode(), results),
        post_in_thread(
            f"{one.url}/count-tokens/batch", json.dumps({**body, "texts": ["stalled two"]}).encode(), results
        ),
    ]
    for t in threads:
        t.join()
    assert len(results) == 2
    for r, elapsed in results:
        assert_timeout(r, elapsed)


# --- the workers end with the server ------------------------------------------------------------


@pytest.mark.parametrize("server_workers", [1, 2])
def test_kill_9_of_the_server_leaves_no_worker_alive(tmp_path, heavy_body, server_workers):
    # Under --workers 2 the uvicorn workers stop gracefully when their supervisor dies: 1 s.
    args = ("--workers", str(server_workers), "--cpu-workers", "2", "--timeout", "60", "--graceful-timeout", "1")
    srv = Server(tmp_path, *MODEL, *args)
    try:
        workers = wait_workers(srv, 2 * server_workers)
        tree = descendants(srv.proc.pid)
        results: list = []
        request = post_in_thread(f"{srv.url}/validate", heavy_body, results)
        wait_busy(workers)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        wait_for(lambda: not any_alive(tree), 10, "every process under the server to end")
        request.join(30)
        assert not request.is_alive()
    finally:
        srv.stop()


def test_sigterm_stops_every_workers_pool_within_the_graceful_timeout(tmp_path, heavy_body):
    grace = 1  # short: the busy worker burns a core until the graceful timeout ends its request
    srv = Server(
        tmp_path, *MODEL, "--workers", "2", "--cpu-workers", "1", "--timeout", "60", "--graceful-timeout", str(grace)
    )
    try:
        workers = wait_workers(srv, 2)  # one pool per uvicorn worker
        for _ in range(6):
            assert_small_validate(srv)
        tree = descendants(srv.proc.pid)
        results: list = []
        request = post_in_thread(f"{srv.url}/validate", heavy_body, results)
        wait_busy(workers)
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        code = srv.proc.wait(grace + 20)
        took = time.monotonic() - started
        assert code in (0, -signal.SIGTERM), srv.log()
        assert took < grace + 3, took
        wait_for(lambda: not any_alive(tree), 5, "every process under the server to end")
        request.join(30)  # answered by uvicorn when the graceful timeout cancelled it
        assert not request.is_alive()
    finally:
        srv.stop()


# --- a cancelled job unwinds ---------------------------------------------------------------------


def _python_loop(marker: str) -> tuple:
    """A job of Python code that runs until it is cancelled, then leaves a mark on its way out."""
    with open(marker, "w") as f:
        f.write("running")
    try:
        while True:
            pass
    finally:
        with open(marker, "w") as f:
            f.write("unwound")


def test_a_cancelled_job_unwinds_then_its_worker_ends(tmp_path, monkeypatch):
    """At the deadline the worker gets CANCEL first: the job's `finally` blocks run (a half-written
    export's temporary file is removed), and the process ends; SIGKILL only if it does not."""
    import asyncio

    from omnitok.serve import workers
    from omnitok.serve.workers import CpuPool

    # SIGKILL's grace, long enough for a loaded machine to schedule the worker's `finally` (the
    # suite 4-wide on 2 cores missed the 0.5 s once, and 5 s once): CANCEL's unwinding is what is tested here.
    monkeypatch.setattr(workers, "KILL_GRACE", 30.0)

    marker = tmp_path / "marker"

    async def main():
        pool = CpuPool(1)
        try:
            job = asyncio.ensure_future(pool.run(_python_loop, str(marker)))
            # Cancelled once it runs (a worker's start takes longer on a loaded machine).
            for _ in range(600):
                if marker.exists() and marker.read_text() == "running":
                    break
                await asyncio.sleep(0.05)
            assert marker.read_text() == "running"
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
        finally:
            await pool.close()  # waits for the cancelled worker's end

    asyncio.run(main())
    assert marker.read_text() == "unwound"  # CANCEL unwound it before KILL_GRACE's SIGKILL
