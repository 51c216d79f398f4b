"""omnitok.serve.fast (plain POST /count-tokens answered in front of FastAPI) and
Runtime.count_inline: the same bytes as the FastAPI route for every request, good or bad, and the
requests it leaves to the route."""

from __future__ import annotations

import asyncio
import json

import pytest

import omnitok

pytest.importorskip("fastapi", reason="omnitok serve needs the serve extra: pip install 'omnitok[serve]'")
pytest.importorskip("httpx", reason="the test client is httpx")

from fastapi.testclient import TestClient  # noqa: E402

from omnitok import aio  # noqa: E402
from omnitok.runtime import INLINE_MAX_CHARS, default, key  # noqa: E402
from omnitok.serve import ServeConfig, create_app  # noqa: E402
from omnitok.serve.fast import FastCount, parse  # noqa: E402

JSON = {"content-type": "application/json"}
LOCAL = "http://127.0.0.1"  # a server bound to loopback answers the loopback names only
LONG = "word " * 1000 + "東京 😀 " * 200  # over INLINE_MAX_CHARS: counted in the thread pool

# (body, headers): requests the fast path answers itself.
PLAIN = [
    (b'{"text": "Hello, world!", "model_id": "gpt-4"}', JSON),
    (b'{"text": "hello world"}', JSON),  # the default model
    (b'{"text": "hello world"}', {}),  # no Content-Type: read as JSON
    (b'{"text": "hello world"}', {"content-type": "application/json; charset=utf-8"}),
    (b'{"text": "hello world"}', {"content-type": "Application/JSON"}),
    (b'{"text": "hello world", "model_id": "claude-sonnet-4-5"}', JSON),  # an estimate: error_band
    (b'{"text": "hello", "encoding": "o200k_base"}', JSON),
    (b'{"text": "hello", "model_id": null, "encoding": null, "online": null, "strict": null}', JSON),
    (b'{"text": "hello", "online": false, "strict": false, "model_id": "gpt-4o"}', JSON),
    (b'{"text": ""}', JSON),
    ('{"text": "caf\u00e9 \u6771\u4eac \\ud83d\\ude00 \\n\\t\\u0000"}'.encode(), JSON),
    (json.dumps({"text": LONG, "model_id": "gpt-4o"}).encode(), JSON),
    (b'{"text": "a", "text": "bb"}', JSON),  # the last one wins, as in Python's json
    # Errors from the library, through the app's own handlers.
    (b'{"text": "x", "model_id": "gpt-44o"}', JSON),  # unknown_model, with a hint
    (b'{"text": "x", "model_id": ""}', JSON),  # invalid_input
    (b'{"text": "x", "encoding": "nope_base"}', JSON),  # unknown_encoding
    (b'{"text": "x", "model_id": "claude-sonnet-4-5", "strict": true}', JSON),  # 503: no exact count offline
]

# Requests it leaves to FastAPI (which gives the answer or the error).
OTHER = [
    (b'{"text": ', JSON),
    (b"", JSON),
    (b"[1, 2]", JSON),
    (b'"text"', JSON),
    (b"{}", JSON),
    (b'{"text": 5}', JSON),
    (b'{"text": null}', JSON),
    (b'{"text": "x", "model_id": 4}', JSON),
    (b'{"text": "x", "online": "yes"}', JSON),
    (b'{"text": "x", "strict": 1}', JSON),
    (b'{"text": "x", "extra": 1}', JSON),  # ignored by the model: 200
    (b'{"text": "x", "messages": null}', JSON),
    (b'{"text": "x", "prefer_online": false}', JSON),
    (b'{"text": "x", "system": "s"}', JSON),
    (b'{"messages": [{"role": "user", "content": "hi"}], "model_id": "gpt-4o"}', JSON),
    (b'\xef\xbb\xbf{"text": "bom"}', JSON),  # Python's json reads past a UTF-8 BOM, orjson does not
    (b'{"text": "\\ud800"}', JSON),  # a lone surrogate escape
    (b'{"text": NaN}', JSON),
    (b'{"text": "\xff\xfe"}', JSON),  # not UTF-8
    (b'{"text": "hi"}', {"content-type": "text/plain"}),
    (b"text=hi", {"content-type": "application/x-www-form-urlencoded"}),
    (b'{"text": "hi"}', {"content-type": "application/merge-patch+json"}),
]


@pytest.fixture(scope="module")
def clients():
    with (
        TestClient(create_app(ServeConfig()), base_url=LOCAL) as fast,
        TestClient(create_app(ServeConfig(), fast_path=False), base_url=LOCAL) as slow,
    ):
        yield fast, slow
    aio.close()


def _answer(client, body: bytes, headers: dict):
    r = client.post("/count-tokens", content=body, headers=headers)
    return r.status_code, r.headers.get("content-type"), r.headers.get("content-length"), r.content


@pytest.mark.parametrize("body,headers", PLAIN + OTHER)
def test_the_fast_path_answers_byte_for_byte_as_the_route(clients, body, headers):
    fast, slow = clients
    for _ in range(2):  # the first call may load the counter in the thread pool; the second counts inline
        assert _answer(fast, body, headers) == _answer(slow, body, headers)


def test_plain_requests_never_reach_the_route_and_others_always_do(clients):
    fast, _ = clients
    app = fast.app
    layer = app.middleware_stack
    while not isinstance(layer, FastCount):
        layer = layer.app
    behind = layer.app
    reached = []

    async def spy(scope, receive, send):
        reached.append(scope["path"])
        await behind(scope, receive, send)

    layer.app = spy
    try:
        for body, headers in PLAIN:
            fast.post("/count-tokens", content=body, headers=headers)
        assert reached == []
        for body, headers in OTHER:
            fast.post("/count-tokens", content=body, headers=headers)
        assert reached == ["/count-tokens"] * len(OTHER)
        assert fast.get("/healthz").json() == {"status": "ok"} and reached[-1] == "/healthz"
    finally:
        layer.app = behind
    assert all(parse(body) is not None for body, _ in PLAIN)


def test_the_fast_path_keeps_the_limits_auth_and_metrics(tmp_path):
    token = tmp_path / "token"
    token.write_text("fast-path-token-0123456789\n")
    config = ServeConfig(auth_token_file=str(token), max_body_mb=0.001)  # 1048 bytes
    auth = {"authorization": "Bearer fast-path-token-0123456789", **JSON}
    with TestClient(create_app(config), base_url=LOCAL) as c:
        r = c.post("/count-tokens", content=b'{"text": "hi"}', headers=JSON)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        big = json.dumps({"text": "a" * 2000}).encode()
        r = c.post("/count-tokens", content=big, headers=auth)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        r = c.post("/count-tokens", content=b'{"text": "hi", "model_id": "gpt-4"}', headers=auth)
        assert r.status_code == 200 and r.json()["token_count"] == 1
        metrics = c.get("/metrics", headers=auth).text
        assert 'omnitok_http_requests_total{method="POST",route="/count-tokens",status="200"} 1.0' in metrics
        assert 'omnitok_tokens_counted_total{model="gpt-4",strategy="tiktoken"} 1.0' in metrics
        assert c.get("/stats", headers=auth).json()["metrics"]["tokens_counted"] == 1


def _series(metrics: str, name: str) -> float:
    line = next(x for x in metrics.splitlines() if x.startswith(name + " "))
    return float(line.rsplit(" ", 1)[1])


@pytest.mark.parametrize("kept", [True, False], ids=["shapes-kept", "past-the-shapes-kept"])
def test_metrics_and_stats_hold_every_fast_count_exactly(monkeypatch, kept):
    """The fast path adds its counts to /metrics and /stats when they are read, not a request at
    a time: every read, by either route, in any order, sees them all, with the route's own counts
    of the same series beside them."""
    import omnitok.serve.fast as fast_module

    if not kept:
        monkeypatch.setattr(fast_module, "_HEADERS_KEPT", 0)  # every answer's shape made anew
    ok = 'omnitok_http_requests_total{method="POST",route="/count-tokens",status="200"}'
    timed = 'omnitok_http_request_duration_seconds_count{method="POST",route="/count-tokens"}'
    tokens = 'omnitok_tokens_counted_total{model="gpt-4",strategy="tiktoken"}'
    texts = 'omnitok_texts_counted_total{model="gpt-4"}'
    slow = {"content-type": "application/merge-patch+json"}  # FastAPI reads it; the fast path does not
    with TestClient(create_app(ServeConfig()), base_url=LOCAL) as c:
        answered = []
        for n, headers in ((3, JSON), (1, slow), (2, JSON), (1, slow)):
            for i in range(n):
                body = json.dumps({"text": "hello world " * (i + 1), "model_id": "gpt-4"}).encode()
                r = c.post("/count-tokens", content=body, headers=headers)
                assert r.status_code == 200
                answered.append(r.json()["token_count"])
            stats_first = len(answered) % 2 == 0
            for read in ("stats", "metrics") if stats_first else ("metrics", "stats"):
                if read == "stats":
                    totals = c.get("/stats").json()["metrics"]
                    assert (totals["count_requests"], totals["tokens_counted"]) == (len(answered), sum(answered))
                else:
                    metrics = c.get("/metrics").text
                    assert _series(metrics, ok) == _series(metrics, timed) == len(answered)
                    assert (_series(metrics, texts), _series(metrics, tokens)) == (len(answered), sum(answered))


def test_count_inline_only_counts_what_it_can_at_once(tmp_path):
    rt = default()

    async def main():
        # No counter for the key yet: None (acount makes one in the thread pool).
        assert rt.count_inline("hello world", "gpt-4.1", engine="auto", cache="off") is None
        first = await aio.acount("hello world", "gpt-4.1", engine="auto", cache="off")
        now = rt.count_inline("hello world", "gpt-4.1", engine="auto", cache="off")
        assert now == first == omnitok.count("hello world", model="gpt-4.1")
        # Over the bound: None; acount counts it in the pool, with the same result as the library.
        long = "x " * INLINE_MAX_CHARS
        assert rt.count_inline(long, "gpt-4.1", engine="auto", cache="off") is None
        assert (await aio.acount(long, "gpt-4.1", engine="auto", cache="off")) == omnitok.count(long, model="gpt-4.1")
        # Messages are never counted inline.
        assert rt.count_inline([{"role": "user", "content": "hi"}], "gpt-4.1", engine="auto", cache="off") is None
        # A counter with cache tiers (an L2 file) waits on I/O: never counted inline.
        cached = {"engine": "auto", "cache": "on", "cache_dir": str(tmp_path)}
        assert (await aio.acount("hello world", "gpt-4.1", **cached)) == first
        assert rt.count_inline("hello world", "gpt-4.1", **cached) is None
        # All lent out (a thread holds it): None at once, never a wait.
        k = key("gpt-4.1", {"engine": "auto", "cache": "off"})
        with rt.counters.lease(k):
            held = [rt.counters.lease(k) for _ in range(rt.counters.size - 1)]
            for lease in held:
                lease.__enter__()
            try:
                assert rt.count_inline("hello world", "gpt-4.1", engine="auto", cache="off") is None
            finally:
                for lease in held:
                    lease.__exit__(None, None, None)
        assert rt.count_inline("hello world", "gpt-4.1", engine="auto", cache="off") == first

    try:
        asyncio.run(main())
    finally:
        aio.close()


def test_an_unexpected_error_on_the_fast_path_is_a_json_500(clients):
    fast, _ = clients
    layer = fast.app.middleware_stack
    while not isinstance(layer, FastCount):
        layer = layer.app
    count_text, count_now = layer.count_text, layer.count_now

    def broken(*args):
        raise RuntimeError("a bug, with a detail the client must not see")

    async def broken_later(*args):
        broken()

    for now, later in ((broken, count_text), (lambda *args: None, broken_later)):  # at once; in the pool
        layer.count_now, layer.count_text = now, later
        try:
            r = fast.post("/count-tokens", content=b'{"text": "hi"}', headers=JSON)
        finally:
            layer.count_text, layer.count_now = count_text, count_now
        assert r.status_code == 500
        assert r.json() == {"error": {"code": "internal", "message": "internal server error"}}
        assert "detail" not in r.text


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_body_longer_than_its_content_length_is_the_routes_413(fast_path):
    """A server that delivered more body than Content-Length said: BodyLimit's refusal mid-read
    reaches the route, which answers 413 JSON, fast path or not."""
    app = create_app(ServeConfig(max_body_mb=0.001), fast_path=fast_path)
    body = json.dumps({"text": "a" * 2000}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/count-tokens",
        "raw_path": b"/count-tokens",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    chunks = [body[:600], body[600:1200], body[1200:]]

    async def receive():
        if chunks:
            part = chunks.pop(0)
            return {"type": "http.request", "body": part, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "too_large"


@pytest.mark.parametrize("setting", ["cache", "cors"])
def test_the_fast_path_answers_as_the_route_under_other_settings(tmp_path, setting):
    """With the cache tiers on (counted in the thread pool, never inline) and with CORS (its
    headers added outside the fast path): the same status, headers and bytes as the route."""
    if setting == "cache":
        config, headers = ServeConfig(cache="on", cache_dir=str(tmp_path)), JSON
    else:
        config, headers = ServeConfig(cors_origins=("https://app.example",)), {**JSON, "origin": "https://app.example"}
    bodies = [b'{"text": "Hello, world!", "model_id": "gpt-4"}', b'{"text": "x", "model_id": "gpt-44o"}', b"{}"]
    try:
        with (
            TestClient(create_app(config), base_url=LOCAL) as fast,
            TestClient(create_app(config, fast_path=False), base_url=LOCAL) as slow,
        ):
            for body in bodies * 2:
                a = fast.post("/count-tokens", content=body, headers=headers)
                b = slow.post("/count-tokens", content=body, headers=headers)
                assert (a.status_code, a.content) == (b.status_code, b.content)
                assert {k: v for k, v in a.headers.items() if k != "date"} == {
                    k: v for k, v in b.headers.items() if k != "date"
                }
                if setting == "cors":
                    assert a.headers["access-control-allow-origin"] == "https://app.example"
    finally:
        aio.close()
