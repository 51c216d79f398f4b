"""`omnitok serve`, driven over real HTTP: a real uvicorn (the `omnitok serve` console script in a
subprocess on a free 127.0.0.1 port) and httpx, never only an in-process test client.

Every response any test receives is checked on the way in (an httpx event hook): never a 500,
never a traceback, never a provider key or the bearer token."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from importlib.util import find_spec
from pathlib import Path

import pytest

import omnitok
from tests.console import omnitok as run_omnitok
from tests.serve_server import Server, free_port

# Looked up, not imported: each xdist worker collects this file, and only the server and two tests
# below use FastAPI (importing it here cost every worker ~0.25 s of CPU).
pytestmark = pytest.mark.skipif(
    find_spec("fastapi") is None or find_spec("uvicorn") is None,
    reason="omnitok serve needs the serve extra: pip install 'omnitok[serve]'",
)
httpx = pytest.importorskip("httpx", reason="the serve tests drive the server with httpx (the test extra)")


TOKEN = "serve-test-token-4f8a1c9e7b"
CANARY_KEY = "sk-ant-canary-0123456789abcdefSECRET"
SEEN: list[str] = []  # every response body, for the final leak check


def _check(response) -> None:
    response.read()
    text = response.text
    SEEN.append(text)
    assert response.status_code != 500, text
    assert "Traceback" not in text
    assert CANARY_KEY not in text and TOKEN not in text


async def _acheck(response) -> None:
    await response.aread()
    _check(response)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    dead = free_port()  # nothing listens here: the "provider" is down
    srv = Server(
        tmp,
        "--auth-token-file",
        str(token_file),
        "--max-body-mb",
        "1",
        "--max-records",
        "100",
        "--compress-method",
        "bm25",
        # One CPU worker: each worker loads what its jobs need (BERTScore: torch and a model, when
        # the fuzzing asks for it) afresh; one is loaded once. Pools: tests/security/test_cpu_work.py.
        "--cpu-workers",
        "1",
        "--log-level",
        "info",
        env={"ANTHROPIC_API_KEY": CANARY_KEY, "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{dead}"},
    )
    yield srv
    code = srv.stop()
    log = srv.log()
    assert code in (0, -signal.SIGTERM), log
    assert TOKEN not in log and CANARY_KEY not in log  # the token and the keys are never logged
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def client(server):
    # One client for the module (each new one builds an SSL context: ~20 ms of CPU); no test changes
    # its headers, and the server sets no cookies.
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60, event_hooks={"response": [_check]}) as c:
        yield c


@pytest.fixture(scope="module")
def anonymous(server):
    """A client without the token."""
    with httpx.Client(base_url=server.url, event_hooks={"response": [_check]}) as c:
        yield c


def post(client, path: str, body) -> httpx.Response:
    return client.post(path, json=body)


def error_of(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) <= {"code", "message", "hint"} and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


# --- the endpoints and the seed's values ------------------------------------------------------------


def test_count_tokens_seed_example(client):
    r = post(client, "/count-tokens", {"text": "Hello, world!", "model_id": "gpt-4"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "token_count": 4,
        "model_id": "gpt-4",
        "strategy_used": "tiktoken",
        "is_exact": True,
        "metadata": {"encoding": "cl100k_base"},
    }


def test_count_tokens_default_model_and_estimates(client):
    r = post(client, "/count-tokens", {"text": "hello world"})
    assert r.json()["token_count"] == omnitok.count("hello world").tokens == 2
    r = post(client, "/count-tokens", {"text": "hello world", "model_id": "claude-sonnet-4-5"})
    body = r.json()
    lib = omnitok.count("hello world", model="claude-sonnet-4-5")
    assert body["token_count"] == lib.tokens and body["is_exact"] is False
    assert body["metadata"] == {"encoding": lib.encoding, "error_band": lib.error_band}


def test_count_tokens_chat_messages_and_tools(client):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi", "name": "ann"}]
    r = post(client, "/count-tokens", {"messages": messages, "model_id": "gpt-4o"})
    assert r.json()["token_count"] == omnitok.count(messages, model="gpt-4o").tokens
    # A top-level system goes in as a system message, as `count` reads a chat record.
    r2 = post(client, "/count-tokens", {"messages": messages[1:], "system": "be brief", "model_id": "gpt-4o"})
    assert r2.json()["token_count"] == r.json()["token_count"]
    # OpenAI publishes no rule for tools: an error, as `count` gives, never an undercount.
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    err = error_of(post(client, "/count-tokens", {"messages": messages, "tools": tools, "model_id": "gpt-4o"}), 422)
    assert "tool" in err["message"]
    # What `count` says of the same record, through the CLI.
    line = json.dumps({"messages": messages, "tools": tools}).encode()
    assert run_omnitok("count", "-m", "gpt-4o", stdin=line + b"\n").code != 0
    err = error_of(post(client, "/count-tokens", {"messages": [{"role": "user", "content": 5}]}), 422)
    assert "content" in err["message"]
    error_of(post(client, "/count-tokens", {"text": "a", "messages": messages}), 422, "invalid_request")
    error_of(post(client, "/count-tokens", {}), 422, "invalid_request")


def test_batch_texts_equal_the_library(client):
    texts = ["hello world", "", "<|endoftext|> is plain text", "naïve café " * 50, "日本語のテキスト"]
    r = post(client, "/count-tokens/batch", {"texts": texts, "model_id": "gpt-4.1"})
    assert r.status_code == 200, r.text
    rows = r.json()["results"]
    assert [row["tokens"] for row in rows] == [c.tokens for c in omnitok.count_batch(texts, model="gpt-4.1")]
    assert [row["pos"] for row in rows] == list(range(len(texts)))
    assert r.json()["summary"]["total_tokens"] == sum(row["tokens"] for row in rows)


def test_batch_records_equal_count_jsonl_rows(client, tmp_path):
    records = [
        {"id": "a", "text": "hello world"},
        {"id": 7, "messages": [{"role": "user", "content": "hi"}]},
        {"text": "no id here"},
        {"id": "d", "messages": [{"role": "user", "content": "q"}], "system": "sys"},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    # The server counts with gigatoken; the command line gives a small input to tiktoken (the
    # same counts, rows naming the engine), so the engine is named here for the rows to be equal.
    cli = run_omnitok("count", "-m", "gpt-4o", str(path), "--format", "jsonl", "--engine", "gigatoken")
    assert cli.code == 0, cli.err
    expected = [json.loads(line) for line in cli.out.splitlines()]
    r = post(client, "/count-tokens/batch", {"records": records, "model_id": "gpt-4o"})
    assert r.json()["results"] == expected
    # Several fields: the per-field map, as count -f a,b gives it.
    recs = [{"q": "question one", "a": "answer"}]
    path.write_text(json.dumps(recs[0]) + "\n")
    cli = run_omnitok("count", "-m", "gpt-4o", str(path), "-f", "q,a", "--format", "jsonl", "--engine", "gigatoken")
    r = post(client, "/count-tokens/batch", {"records": recs, "field": ["q", "a"], "model_id": "gpt-4o"})
    assert r.json()["results"] == [json.loads(cli.out)]


def test_batch_bad_records_and_limits(client):
    records = [{"text": "ok"}, {"body": "no text field"}, 5]
    err = error_of(post(client, "/count-tokens/batch", {"records": records}), 422, "bad_record")
    assert err["message"].startswith("records:2: ")
    r = post(client, "/count-tokens/batch", {"records": records, "on_error": "record"})
    rows = r.json()["results"]
    assert rows[0]["tokens"] == 1 and "error" in rows[1] and rows[1]["record"] == {"body": "no text field"}
    assert r.json()["summary"]["errors"] == 2
    r = post(client, "/count-tokens/batch", {"records": records, "on_error": "skip"})
    assert [row["pos"] for row in r.json()["results"]] == [0]
    error_of(post(client, "/count-tokens/batch", {"texts": ["x"] * 101}), 413, "too_many_records")
    error_of(post(client, "/count-tokens/batch", {"texts": ["x"], "records": [{}]}), 422)
    error_of(post(client, "/count-tokens/batch", {"texts": ["x"], "on_error": "explode"}), 422, "invalid_request")


def test_compress_matches_the_library(client):
    context = [
        "The first Nobel Prize in Physics was awarded in 1901 to Wilhelm Röntgen. He discovered X-rays.",
        "Reading Football Club is based in Reading, Berkshire. It plays at the Madejski Stadium.",
        "Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911.",
    ]
    body = {"context": context, "query": "first nobel prize physics", "model_id": "gpt-4", "target_compression": 0.5}
    r = post(client, "/compress", {**body, "method": "bm25"})
    assert r.status_code == 200, r.text
    got = r.json()
    for field in (
        "original_tokens",
        "compressed_tokens",
        "compression_ratio",
        "quality_score",
        "compressed_text",
        "model_id",
        "is_exact_tokenization",
    ):
        assert field in got
    lib = omnitok.compress(context, "first nobel prize physics", model="gpt-4", target_compression=0.5, method="bm25")
    assert got == lib.to_dict()
    assert got["compressed_tokens"] <= got["budget"] == int((1 - 0.5) * got["original_tokens"])
    # No budget form: the earlier service's default, target_compression 0.944.
    r = post(client, "/compress", {"context": " ".join(context) * 3, "model_id": "gpt-4"})
    assert r.json()["budget"] == int((1 - 0.944) * r.json()["original_tokens"] + 1e-9)
    error_of(post(client, "/compress", {"context": "x", "budget": 5, "ratio": 0.5}), 422, "invalid_input")
    error_of(post(client, "/compress", {"context": "x", "target_compression": 2}), 422, "invalid_request")
    stats = client.get("/stats").json()["metrics"]
    assert stats["total_compressions"] >= 2
    assert stats["total_tokens_saved"] == stats["total_original_tokens"] - stats["total_compressed_tokens"] > 0
    assert 0 < stats["avg_compression_ratio"] < 1 and 0 <= stats["avg_quality_score"] <= 1


def test_validate_matches_the_library(client):
    body = {"original": "the cat sat on the mat today", "compressed": "the cat sat", "metrics": ["rouge-l"]}
    r = post(client, "/validate", body)
    lib = omnitok.validate(body["original"], body["compressed"], metrics=["rouge-l"])
    assert r.json()["passed"] is True and r.json()["rouge_l_score"] == lib.rouge_l_score
    assert r.json()["details"] == lib.details
    r = post(client, "/validate", {**body, "metrics": ["rouge-l", "compression"], "min_rouge_l": 0.9})
    assert r.json()["passed"] is False and r.json()["failures"]
    # An empty original has no finite ratio: null, not a 500 (JSON has no Infinity).
    r = post(client, "/validate", {"original": "", "compressed": "x", "metrics": ["compression"]})
    assert r.json()["details"]["ratio"] is None
    error_of(post(client, "/validate", {**body, "metrics": ["meteor"]}), 422, "invalid_request")
    error_of(post(client, "/validate", {**body, "min_rouge_l": "high"}), 422, "invalid_request")


def test_validate_bleu_and_chrf(client):
    """BLEU and chrF over REST: the library's scores (sacrebleu's sentence scores / 100) and gates."""
    body = {"original": "猫がマットの上に座った。The cat sat on the mat.", "compressed": "猫が座った。The cat sat."}
    lib = omnitok.validate(body["original"], body["compressed"], metrics=["bleu", "chrf"], min_bleu=0.9)
    r = post(client, "/validate", {**body, "metrics": ["bleu", "chrf"], "min_bleu": 0.9})
    assert r.json()["details"] == lib.details and set(lib.details) == {"bleu", "chrf"}
    assert r.json()["passed"] is False and r.json()["failures"] == lib.failures
    r = post(client, "/validate", {**body, "min_chrf": 0.2})
    assert r.json()["passed"] is True and r.json()["details"]["chrf"] == lib.details["chrf"]
    for bad in ({"min_bleu": 30}, {"min_chrf": -1}):
        assert post(client, "/validate", {**body, **bad}).status_code == 422


def test_cache_stats_and_stats_fields(client):
    r = client.get("/cache/stats")
    assert r.json()["cache_enabled"] is True
    stats = r.json()["stats"]
    for field in (
        "l1_hits",
        "l2_hits",
        "l3_hits",
        "misses",
        "total_hits",
        "total_requests",
        "hit_rate",
        "l1_size",
        "l2_size",
    ):
        assert field in stats
    body = client.get("/stats").json()
    assert body["service"] == "omnitok" and "total_compressions" in body["metrics"]


def test_probes_metrics_and_openapi(anonymous, client):
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    ready = anonymous.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model"] == "gpt-4o" and ready["exact"] is True
    paths = set(anonymous.get("/openapi.json").json()["paths"])
    assert {
        "/count-tokens",
        "/count-tokens/batch",
        "/compress",
        "/validate",
        "/stats",
        "/cache/stats",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= paths
    post(client, "/count-tokens", {"text": "x"})
    text = client.get("/metrics").text
    assert 'omnitok_http_requests_total{method="POST",route="/count-tokens",status="200"}' in text
    assert "omnitok_tokens_counted_total" in text and 'status="500"' not in text


# --- safety ------------------------------------------------------------------------------------------


def test_auth(anonymous):
    c = anonymous
    body = {"text": "hi"}
    err = error_of(c.post("/count-tokens", json=body), 401, "unauthorized")
    assert TOKEN not in err["message"]
    r = c.post("/count-tokens", json=body, headers={"Authorization": "Bearer wrong-token"})
    assert error_of(r, 401) and r.headers["www-authenticate"] == "Bearer"
    error_of(c.post("/count-tokens", json=body, headers={"Authorization": TOKEN}), 401)
    error_of(c.post("/count-tokens", json=body, headers={"Authorization": f"Basic {TOKEN}"}), 401)
    error_of(c.post("/count-tokens", json=body, headers={"Authorization": f"Bearer {TOKEN}x"}), 401)
    error_of(c.get("/cache/stats"), 401)
    error_of(c.get("/metrics"), 401)
    assert c.post("/count-tokens", json=body, headers=AUTH).json()["token_count"] == 1
    assert c.post("/count-tokens", json=body, headers={"authorization": f"bearer {TOKEN}"}).status_code == 200


def test_body_limit(server, client):
    big = {"text": "a" * (1024 * 1024 + 10)}  # over --max-body-mb 1
    err = error_of(post(client, "/count-tokens", big), 413, "too_large")
    assert "1 MB" in err["message"]
    # A chunked upload (no Content-Length) is cut off once it passes the limit.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /count-tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"a" * 65536
        try:
            head = b'{"text": "'
            s.sendall(b"%x\r\n%s\r\n" % (len(head), head))
            for _ in range(24):  # 1.5 MB
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            s.sendall(b'2\r\n"}\r\n0\r\n\r\n')
        except OSError:  # the server answered and closed while we were still sending
            pass
        reply = b""
        while b'"}}' not in reply:  # the whole JSON error, or the connection closes
            data = s.recv(65536)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"too_large"' in reply
    # Just under the limit is fine.
    assert post(client, "/count-tokens", {"text": "a" * (1024 * 1024 - 100)}).status_code == 200


def test_bad_input_is_a_clear_422(client):
    r = client.post("/count-tokens", content=b'{"text": ', headers={"content-type": "application/json"})
    assert "not valid JSON" in error_of(r, 422, "malformed_json")["message"]
    r = client.post("/count-tokens", content=b'{"text": "\xff\xfe"}', headers={"content-type": "application/json"})
    error_of(r, 422, "malformed_json")
    r = client.post("/count-tokens", content=b"text=hi", headers={"content-type": "application/x-www-form-urlencoded"})
    assert "Content-Type: application/json" in error_of(r, 422)["message"]
    r = client.post("/count-tokens", content=b'{"text": "hi"}')  # no Content-Type: read as JSON
    assert r.json()["token_count"] == 1
    for body in ({"text": 5}, {"text": None, "messages": "hi"}, {"text": "x", "model_id": 4}, [1, 2], "text"):
        err = error_of(post(client, "/count-tokens", body), 422, "invalid_request")
        assert "5" not in err["message"] or body != {"text": 5}  # where and what, not the value
    error_of(post(client, "/count-tokens", {"text": "x", "online": "yes"}), 422, "invalid_request")
    error_of(post(client, "/count-tokens/batch", {"texts": "not a list"}), 422, "invalid_request")
    err = error_of(post(client, "/count-tokens", {"text": "x", "model_id": "gpt-44o"}), 422, "unknown_model")
    assert "gpt-44o" in err["message"] and "gpt-4o" in err.get("hint", "")
    error_of(post(client, "/count-tokens", {"text": "x", "model_id": ""}), 422, "invalid_input")
    error_of(post(client, "/count-tokens", {"text": "x", "encoding": "nope_base"}), 422, "unknown_encoding")
    error_of(post(client, "/count-tokens/batch", {"texts": ["x"], "model_id": "nope"}), 422, "unknown_model")
    error_of(post(client, "/compress", {"context": "x", "model_id": "nope"}), 422, "unknown_model")
    error_of(client.get("/no-such-route"), 404, "not_found")
    error_of(client.get("/count-tokens"), 405, "method_not_allowed")


def test_online_provider_down_under_strict_is_503_and_keys_never_echoed(client):
    body = {"text": "hello", "model_id": "claude-sonnet-4-5", "online": True}
    err = error_of(post(client, "/count-tokens", {**body, "strict": True}), 503, "exact_unavailable")
    assert "anthropic" in err["message"].lower()
    # Without strict the count falls back to the offline estimate, and says so.
    r = post(client, "/count-tokens", body)
    assert r.status_code == 200 and r.json()["is_exact"] is False
    # The seed's name for the option works too.
    r = post(client, "/count-tokens", {**body, "online": None, "prefer_online": True, "strict": True})
    error_of(r, 503, "exact_unavailable")
    # Offline, strict: there is no exact strategy for Claude without the provider.
    error_of(post(client, "/count-tokens", {"text": "x", "model_id": "claude-sonnet-4-5", "strict": True}), 503)


def test_cors_is_off_by_default(client):
    r = client.get("/stats", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    r = client.options(
        "/count-tokens", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in r.headers


def test_cors_when_origins_are_named():
    from fastapi.testclient import TestClient

    from omnitok.serve import ServeConfig, create_app

    app = create_app(ServeConfig(cors_origins=("https://app.example",), cpu_workers=1))
    with TestClient(app, base_url="http://127.0.0.1") as c:  # loopback: the loopback names only
        r = c.options(
            "/count-tokens", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        )
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = c.get("/healthz", headers={"Origin": "https://other.example"})
        assert "access-control-allow-origin" not in r.headers


def test_concurrent_requests_are_all_correct(server):
    texts = [f"request number {i}: " + "word " * (i % 17) for i in range(64)]
    expected = [c.tokens for c in omnitok.count_batch(texts, model="gpt-4o")]

    async def main():
        async with httpx.AsyncClient(
            base_url=server.url, headers=AUTH, timeout=60, event_hooks={"response": [_acheck]}
        ) as c:
            return await asyncio.gather(
                *(c.post("/count-tokens", json={"text": t, "model_id": "gpt-4o"}) for t in texts)
            )

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 64
    assert [r.json()["token_count"] for r in responses] == expected


def test_no_response_ever_leaked_a_secret():
    assert SEEN, "the other tests ran first"
    assert not any(CANARY_KEY in s or TOKEN in s or "Traceback" in s for s in SEEN)


# --- the command, shutdown, fuzzing ------------------------------------------------------------------


def test_serve_command_line_errors(tmp_path):
    r = run_omnitok("serve", "--model", "gpt-44o", "--port", "0")
    assert r.code == 2 and "unknown model" in r.err
    r = run_omnitok("serve", "--auth-token-file", str(tmp_path / "missing"), "--port", "0")
    assert r.code == 2 and "auth-token-file" in r.err
    (tmp_path / "empty").write_text("  \n")
    r = run_omnitok("serve", "--auth-token-file", str(tmp_path / "empty"), "--port", "0")
    assert r.code == 2 and "empty" in r.err
    assert run_omnitok("serve", "--port", "70000").code == 2
    assert run_omnitok("serve", "--workers", "0").code == 2
    r = run_omnitok("serve", "--help")
    assert r.code == 0 and b"--auth-token-file" in r.out
    # FastAPI present but not importable (a broken install): the same one line as its absence, once
    # the options are checked (they are, without importing it)
    broken = tmp_path / "site" / "fastapi"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("a broken install")\n')
    r = run_omnitok("serve", "--port", "0", env={"PYTHONPATH": str(broken.parent)})
    assert (r.code, r.err) == (
        2,
        "omnitok: error: omnitok serve needs FastAPI and uvicorn: pip install 'omnitok[serve]'\n",
    )
    r = run_omnitok("serve", "--log-level", "loud", env={"PYTHONPATH": str(broken.parent)})
    assert r.code == 2 and r.err.startswith("omnitok: error: --log-level must be one of")


def test_graceful_shutdown_finishes_the_request_in_flight(tmp_path):
    # One CPU worker (not one a core): this test counts tokens, in the server process.
    srv = Server(tmp_path, "--graceful-timeout", "20", "--cpu-workers", "1")
    text = "slow upload " * 20_000
    payload = json.dumps({"text": text, "model_id": "gpt-4o"}).encode()
    parts = [payload[i : i + 16384] for i in range(0, len(payload), 16384)]
    sent_first = threading.Event()
    result: dict = {}

    def body():
        for i, part in enumerate(parts):
            yield part
            if i == 0:
                sent_first.set()
            time.sleep(1.5 / len(parts))  # the upload takes about 1.5 s

    def request():
        try:
            with httpx.Client(timeout=60) as c:
                result["response"] = c.post(
                    f"{srv.url}/count-tokens", content=body(), headers={"content-type": "application/json"}
                )
        except Exception as e:  # reported below
            result["error"] = e

    t = threading.Thread(target=request)
    t.start()
    assert sent_first.wait(10)
    time.sleep(0.3)  # the request is in flight: its body is still arriving
    srv.proc.send_signal(signal.SIGTERM)
    t.join(60)
    code = srv.stop()
    assert "error" not in result, f"{result.get('error')!r}\n{srv.log()}"
    r = result["response"]
    assert r.status_code == 200, r.text
    assert r.json()["token_count"] == omnitok.count(text, model="gpt-4o").tokens
    # uvicorn finishes its graceful shutdown, then exits by the signal it caught (as Kubernetes expects).
    assert code in (0, -signal.SIGTERM), srv.log()
    assert "Shutting down" in srv.log() and "Finished server process" in srv.log()


@pytest.mark.skipif(not Path(sys.executable).with_name("st").exists(), reason="schemathesis is not installed")
def test_schemathesis_finds_no_500_and_responses_match_the_schema(server, tmp_path):
    """Property-based requests from /openapi.json (schemathesis): no 500, every status documented,
    every body and content type as the schema says, through the bearer token and the body and
    record limits. Its fuzzing phase (25 examples an operation, every operation): the coverage
    phase's ~660 boundary cases, 86% of a full run's, are tests/test_api_contract.py's run, with
    every check (a superset of these) on the same schema."""
    st = str(Path(sys.executable).with_name("st"))
    checks = ",".join(
        (
            "not_a_server_error",
            "status_code_conformance",
            "content_type_conformance",
            "response_schema_conformance",
            "response_headers_conformance",
        )
    )
    p = subprocess.run(
        [st, "run", f"{server.url}/openapi.json", "--checks", checks, "--header", f"Authorization: Bearer {TOKEN}"]
        + ["--phases", "examples,fuzzing,stateful"]
        + ["--max-examples", "25", "--seed", "20240501", "--generation-database", "none", "--no-color"]
        # The client waits past the server's 60 s deadline: a request that meets it on a loaded
        # machine gets its documented 504, not a client-side "Network Error" (a run at -n 4: a
        # combined /compress loading its model in a fresh CPU worker took over 30 s).
        + ["--request-timeout", "90", "--workers", "1"],  # threads trip a CPython 3.11 ast bug in hypothesis
        capture_output=True,
        text=True,
        timeout=600,  # a bound on a hung run, not a speed check
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-2000:]


# --- the async library API and in-process limits ------------------------------------------------------


def test_aio_matches_the_library_and_never_blocks_the_loop():
    from omnitok import aio, runtime
    from omnitok.errors import InputError, UnknownModelError

    texts = [("paragraph of text " * 3000) + str(i) for i in range(120)]  # ~6 MB

    async def main():
        assert (await aio.acount("Hello, world!", model="gpt-4")).tokens == 4
        ticks = 0
        done = False

        async def ticker():
            nonlocal ticks
            while not done:
                await asyncio.sleep(0.005)
                ticks += 1

        t = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        started = time.perf_counter()
        results = await aio.acount_batch(texts, model="gpt-4o")
        took = time.perf_counter() - started
        done = True
        await t
        assert [r.tokens for r in results] == [r.tokens for r in omnitok.count_batch(texts, model="gpt-4o")]
        assert ticks >= 2 or took < 0.02, (ticks, took)  # the loop ran while the count did
        # 32 calls at once: all right, from at most the pool's size of counters for that key.
        many = await asyncio.gather(*(aio.acount(f"text {i}", model="gpt-4.1") for i in range(32)))
        assert [r.tokens for r in many] == [
            r.tokens for r in omnitok.count_batch([f"text {i}" for i in range(32)], model="gpt-4.1")
        ]
        counters = runtime.default().counters
        leased = [c for c in counters.objects() if c.resolution.model == "gpt-4.1"]
        assert 1 <= len(leased) <= counters.size
        rows, summary = await aio.acount_rows([{"id": "a", "text": "hello world"}], "gpt-4o")
        assert rows == [
            {
                "pos": 0,
                "id": "a",
                "tokens": 2,
                "model": "gpt-4o",
                "encoding": "o200k_base",
                "strategy": "tiktoken",
                "engine": "gigatoken",
                "exact": True,
            }
        ]
        with pytest.raises(InputError, match="records:2: "):
            await aio.acount_rows([{"text": "x"}, {"nope": 1}], "gpt-4o")
        with pytest.raises(UnknownModelError):
            await aio.acount("x", model="gpt-44o")
        r = await aio.acompress("one. two. three. four.", None, model="gpt-4o", budget=3, method="bm25")
        assert r.compressed_tokens <= 3
        v = await aio.avalidate("a b c", "a b")
        assert v.rouge_l_score == omnitok.validate("a b c", "a b").rouge_l_score

    try:
        asyncio.run(main())
    finally:
        aio.close()


def test_request_timeout_is_a_504():
    from fastapi.testclient import TestClient

    from omnitok.serve import ServeConfig, create_app

    context = " ".join(f"Sentence number {i} talks about topic {i % 97}." for i in range(20_000))
    config = ServeConfig(request_timeout=0.001, compress_method="bm25", cpu_workers=1)
    with TestClient(create_app(config), base_url="http://127.0.0.1") as c:
        r = c.post("/compress", json={"context": context, "query": "topic 5", "budget": 100})
        assert r.status_code == 504, r.text
        assert r.json()["error"]["code"] == "timeout"


def test_several_workers_serve_and_stop(tmp_path):
    # One CPU worker per server worker (the fewest): what is tested is the server workers.
    srv = Server(tmp_path, "--workers", "2", "--cpu-workers", "1")
    try:
        with httpx.Client(base_url=srv.url, timeout=30, event_hooks={"response": [_check]}) as c:
            counts = {
                c.post("/count-tokens", json={"text": "Hello, world!", "model_id": "gpt-4"}).json()["token_count"]
                for _ in range(8)
            }
            assert counts == {4}
    finally:
        code = srv.stop()
    assert code in (0, -signal.SIGTERM), srv.log()
    assert srv.log().count("Started server process") == 2


FORWARDED = {"x-forwarded-proto": "https", "x-forwarded-for": "203.0.113.7"}


def _redirected_to(client, **kwargs) -> str:
    """Where FastAPI redirects `/count-tokens/` (the URL it builds from the request's scheme)."""
    r = client.post("/count-tokens/", content=b"{}", headers=FORWARDED, follow_redirects=False, **kwargs)
    assert r.status_code == 307, r.text
    return r.headers["location"]


def test_a_trusted_proxys_forwarded_headers_are_read_at_every_log_level(client, tmp_path):
    """X-Forwarded-Proto and -For from a trusted proxy (uvicorn's default: loopback) are read
    whatever the log level: by uvicorn's own layer where the access log shows the client (the
    module's server, --log-level info), else by the app, with the same layer, for what FastAPI
    answers."""
    assert _redirected_to(client).startswith("https://")
    srv = Server(tmp_path, "--log-level", "warning", "--cpu-workers", "1")
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert _redirected_to(c).startswith("https://")
            r = c.post("/count-tokens", json={"text": "Hello, world!", "model_id": "gpt-4"}, headers=FORWARDED)
            assert (
                r.status_code == 200 and r.json()["token_count"] == omnitok.count("Hello, world!", model="gpt-4").tokens
            )
    finally:
        srv.stop()


def test_the_app_reads_forwarded_headers_only_from_the_addresses_it_trusts(monkeypatch):
    from fastapi.testclient import TestClient

    from omnitok.serve import ServeConfig, create_app
    from omnitok.serve.app import app_from_env

    config = ServeConfig(cpu_workers=1)
    for trusted, scheme in ((None, "http"), ("127.0.0.1", "http"), ("testclient", "https"), ("*", "https")):
        with TestClient(create_app(config, forwarded_allow_ips=trusted), base_url="http://127.0.0.1") as c:
            assert _redirected_to(c).startswith(f"{scheme}://"), trusted
    # `omnitok serve`'s app reads them where uvicorn does not (no access log), trusting what it would.
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    for level, trusted in (("info", None), ("debug", None), ("warning", "127.0.0.1,::1"), ("error", "127.0.0.1,::1")):
        monkeypatch.setenv("OMNITOK_SERVE_CONFIG", json.dumps({"log_level": level, "cpu_workers": 1}))
        assert app_from_env().forwarded_allow_ips == trusted, level
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1")
    assert app_from_env().forwarded_allow_ips == "10.0.0.1"
