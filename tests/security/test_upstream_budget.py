"""Issue 23, item 2: a REST request may cause at most --max-upstream-per-request provider calls
(default 64; beyond: 422) and the server at most --max-upstream-concurrency at once (default 16);
cache hits make no call. Item 9 (part): an implausible upstream answer (0 tokens for a non-empty
text, more than its bytes + 1,000) is refused and the count falls back offline, labelled.

Driven through a real `omnitok serve` and the console script, against mock providers that count
the calls they receive."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests._http import serve_in_thread
from tests.console import omnitok
from tests.mock_providers import API_KEY, MockProviders, words
from tests.serve_server import Server

httpx = pytest.importorskip("httpx")

GEMINI = "gemini-2.5-flash"


def env_for(mock: MockProviders) -> dict:
    return {
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": mock.url,
        "GOOGLE_API_KEY": API_KEY,
        "GOOGLE_GEMINI_BASE_URL": mock.url,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory, mock):
    # Count routes only: one CPU worker (/validate's and /compress's), not one a core.
    srv = Server(tmp_path_factory.mktemp("budget"), "--cpu-workers", "1", env=env_for(mock))
    yield srv
    srv.stop()


def batch(server, texts: list[str], model: str = GEMINI) -> httpx.Response:
    return httpx.post(
        f"{server.url}/count-tokens/batch", json={"texts": texts, "model_id": model, "online": True}, timeout=60
    )


def test_a_batch_over_the_budget_is_422_within_64_calls(server, mock):
    before = mock.count("gemini")
    r = batch(server, [f"over budget text number {i}" for i in range(2000)])
    assert r.status_code == 422, r.text[:300]
    error = r.json()["error"]
    assert error["code"] == "upstream_limit" and "more than 64 provider calls" in error["message"]
    assert mock.count("gemini") - before <= 64  # refused before any call: it cannot fit


def test_the_call_past_the_limit_is_never_sent(server, mock):
    """64 Claude texts need 65 calls (the framing probe first, claude_text): the first 64 are
    made, the 65th is refused, and the answer is 422, not an offline fallback."""
    before = mock.count("anthropic")
    r = batch(server, [f"claude text {i}" for i in range(64)], model="claude-3-5-haiku-20241022")
    assert r.status_code == 422, r.text[:300]
    assert r.json()["error"]["code"] == "upstream_limit"
    assert mock.count("anthropic") - before == 64


def test_a_repeated_batch_is_served_from_the_cache(server, mock):
    texts = [f"cached text {i} " + "word " * (i % 7) for i in range(64)]
    before = mock.count("gemini")
    first = batch(server, texts)
    assert first.status_code == 200, first.text
    assert mock.count("gemini") - before == 64
    rows = first.json()["results"]
    assert [x["tokens"] for x in rows] == [words(t) for t in texts]
    assert {(x["strategy"], x["exact"]) for x in rows} == {("gemini-api", True)}
    second = batch(server, texts)
    assert second.status_code == 200, second.text
    assert second.json()["results"] == rows
    assert mock.count("gemini") - before == 64  # no call: every count came from the cache


def test_the_command_line_has_no_per_request_budget(mock, tmp_path):
    lines = b"".join(json.dumps({"text": f"cli text {i}"}).encode() + b"\n" for i in range(100))
    env = {**env_for(mock), "OMNITOK_CACHE_DIR": str(tmp_path / "cache")}
    before = mock.count("gemini")
    r = omnitok("count", "--online", "-m", GEMINI, stdin=lines, env=env)
    assert r.code == 0, r.err
    assert mock.count("gemini") - before == 100


# --- the calls in flight, server-wide ------------------------------------------------------------


class SlowTokenize:
    """vLLM's POST /tokenize, answering after `delay` seconds; records the most requests it held
    at once."""

    def __init__(self, delay: float):
        self.calls = 0
        self.in_flight = 0
        self.most = 0
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                with lock:
                    server.calls += 1
                    server.in_flight += 1
                    server.most = max(server.most, server.in_flight)
                time.sleep(delay)
                with lock:
                    server.in_flight -= 1
                n = words(body["prompt"])
                data = json.dumps({"count": n, "max_model_len": 8192, "tokens": list(range(n))}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        serve_in_thread(self.server)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_calls_in_flight_are_bounded_server_wide(tmp_path):
    slow = SlowTokenize(delay=0.25)
    srv = Server(tmp_path, "--max-upstream-concurrency", "4", "--threads", "4", env={"VLLM_ENDPOINT": slow.url})
    try:

        def one(k: int) -> httpx.Response:
            texts = [f"slow text {k} {i}" for i in range(8)]  # 8 calls at once from one request
            return httpx.post(
                f"{srv.url}/count-tokens/batch",
                json={"texts": texts, "model_id": "org/slow-model", "online": True},
                timeout=60,
            )

        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(one, range(3)))
        for r in answers:
            assert r.status_code == 200, r.text[:300]
            assert {(x["strategy"], x["exact"]) for x in r.json()["results"]} == {("vllm-api", True)}
        assert slow.calls == 24
        assert 1 <= slow.most <= 4, slow.most
    finally:
        srv.stop()
        slow.close()


# --- implausible answers (item 9) ----------------------------------------------------------------


def test_zero_tokens_for_a_text_falls_back_labelled_console(mock, tmp_path):
    text = "a text that is not empty"
    env = {**env_for(mock), "OMNITOK_CACHE_DIR": str(tmp_path / "cache")}
    mock.fail("gemini", (200, {}, {"totalTokens": 0}))
    r = omnitok("count", "--online", "-m", GEMINI, stdin=json.dumps({"text": text}).encode(), env=env)
    assert r.code == 0, r.err
    row = json.loads(r.out)
    assert row["exact"] is False and row["strategy"] != "gemini-api" and row["tokens"] > 0
    assert f"implausible answer: 0 tokens for a {len(text)}-byte text" in r.err
    mock.fail("gemini", (200, {}, {"totalTokens": 0}))
    r = omnitok("count", "--online", "--strict", "-m", GEMINI, stdin=json.dumps({"text": text}).encode(), env=env)
    assert r.code == 5, r.err  # --strict: the estimate behind it is not exact, so no count at all


@pytest.mark.parametrize("answer,exact", [(0, False), (-3, False), (1011, True), (1012, False)])
def test_implausible_answers_over_rest(server, mock, answer, exact):
    """A 11-byte text: 1 .. 1,011 tokens are plausible; 0, negative and 1,012 are not."""
    text = f"{answer:+05d} word"  # 10 bytes, distinct per case (no cache hit)
    text += "x"
    mock.fail("gemini", (200, {}, {"totalTokens": answer}))
    r = httpx.post(f"{server.url}/count-tokens", json={"text": text, "model_id": GEMINI, "online": True})
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert body["is_exact"] is exact
    assert (body["strategy_used"] == "gemini-api") is exact
    if exact:
        assert body["token_count"] == answer
