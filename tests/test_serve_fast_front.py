"""omnitok.serve.fast as the app's outermost layer (issue 26 item 4): it answers plain POST
/count-tokens requests in front of Guard, HostCheck, BearerAuth, CORS and BodyLimit, doing their
checks itself, and hands every request it does not answer to them unchanged. Each test compares
the fast app with the same app without the fast path (fast_path=False): the same status, headers
and bytes, the same /metrics series and /stats, for good requests and refused ones."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

pytest.importorskip("fastapi", reason="omnitok serve needs the serve extra: pip install 'omnitok[serve]'")
pytest.importorskip("httpx", reason="the test client is httpx")

from fastapi.testclient import TestClient  # noqa: E402

from omnitok import aio  # noqa: E402
from omnitok.serve import ServeConfig, create_app  # noqa: E402
from omnitok.serve.fast import FastCount  # noqa: E402
from omnitok.serve.middleware import Guard  # noqa: E402

TOKEN = "front-test-token-0123456789"
GOOD = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
BODY = b'{"text": "Hello, world!", "model_id": "gpt-4"}'

# (headers, body, base URL): requests under a token and --allowed-host api.example (and, in
# the CORS case, --cors-origin https://app.example: the front then leaves every request to the app).
REQUESTS = [
    (GOOD, BODY, "http://api.example"),  # answered by the fast path
    ({**GOOD, "authorization": f"bearer {TOKEN}"}, BODY, "http://api.example"),  # the scheme in any case
    ({**GOOD, "authorization": f"Bearer {TOKEN}x"}, BODY, "http://api.example"),  # 401
    ({**GOOD, "authorization": f"Basic {TOKEN}"}, BODY, "http://api.example"),  # 401
    ({"content-type": "application/json"}, BODY, "http://api.example"),  # 401: no token
    (GOOD, BODY, "http://api.example:8080"),  # any port
    (GOOD, BODY, "http://other.example"),  # 400: a Host not answered
    (GOOD, BODY, "http://api.example."),  # the trailing dot
    ({**GOOD, "origin": "https://app.example"}, BODY, "http://api.example"),  # CORS headers: the app's
    ({**GOOD, "origin": "https://evil.example"}, BODY, "http://api.example"),
    (GOOD, json.dumps({"text": "a" * 3000}).encode(), "http://api.example"),  # 413: over --max-body-mb
    (GOOD, b'{"text": "x", "model_id": "gpt-44o"}', "http://api.example"),  # the library's 422
    (GOOD, b"{}", "http://api.example"),  # the route's 422
]


def _config(tmp_path, cors: bool = False) -> ServeConfig:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    return ServeConfig(
        auth_token_file=str(token),
        allowed_hosts=("api.example",),
        cors_origins=("https://app.example",) if cors else (),
        max_body_mb=0.002,  # 2,097 bytes
    )


def _seen(r) -> tuple:
    return r.status_code, {k: v for k, v in r.headers.items() if k != "date"}, r.content


def _series(text: str) -> list[str]:
    """The request and token series of /metrics (counts, not timings)."""
    keep = ("omnitok_http_requests_total{", "omnitok_tokens_counted_total{", "omnitok_texts_counted_total{")
    return sorted(line for line in text.splitlines() if line.startswith(keep) and "/metrics" not in line)


def _front(app) -> FastCount:
    layer = app.middleware_stack
    while not isinstance(layer, FastCount):
        layer = layer.app
    return layer


@pytest.mark.parametrize("cors", [False, True])
def test_the_front_answers_as_the_app_under_auth_hosts_and_cors(tmp_path, cors):
    config = _config(tmp_path, cors)
    try:
        with (
            TestClient(create_app(config)) as fast,
            TestClient(create_app(config, fast_path=False)) as slow,
        ):
            for headers, body, base in REQUESTS * 2:  # twice: the second counts inline
                a = fast.post(f"{base}/count-tokens", content=body, headers=headers)
                b = slow.post(f"{base}/count-tokens", content=body, headers=headers)
                assert _seen(a) == _seen(b), (headers, body[:40], base)
            assert _seen(fast.post("http://api.example/count-tokens", content=BODY, headers=GOOD))[0] == 200
            slow.post("http://api.example/count-tokens", content=BODY, headers=GOOD)
            m_fast = fast.get("http://api.example/metrics", headers=GOOD).text
            m_slow = slow.get("http://api.example/metrics", headers=GOOD).text
            assert _series(m_fast) == _series(m_slow)
            assert 'omnitok_http_requests_total{method="POST",route="/count-tokens",status="200"}' in m_fast
            assert 'route="unmatched",status="401"' in m_fast and 'route="unmatched",status="400"' in m_fast
            assert "omnitok_http_requests_in_flight 1.0" in m_fast  # the /metrics request itself
            s_fast = fast.get("http://api.example/stats", headers=GOOD).json()
            s_slow = slow.get("http://api.example/stats", headers=GOOD).json()
            assert s_fast["metrics"] == s_slow["metrics"]
    finally:
        aio.close()


def test_the_front_is_outermost_and_hands_refusals_on_untouched(tmp_path):
    """Answered requests reach no layer behind the front (not even Guard); every request it does
    not answer reaches the layers behind it with its headers as sent and its body unread."""
    config = _config(tmp_path)
    try:
        with TestClient(create_app(config)) as c:
            front = _front(c.app)
            layer, behind_front = c.app.middleware_stack, False
            while layer is not None and not isinstance(layer, Guard):
                behind_front = behind_front or isinstance(layer, FastCount)
                layer = getattr(layer, "app", None)
            assert behind_front, "the fast path is in front of Guard"
            inner = front.app
            reached = []

            async def spy(scope, receive, send):
                first = await receive()
                reached.append((dict(scope["headers"]).get(b"authorization"), first.get("body")))

                async def again():
                    return first

                await inner(scope, again, send)

            front.app = spy
            try:
                assert c.post("http://api.example/count-tokens", content=BODY, headers=GOOD).status_code == 200
                assert reached == []
                r = c.post("http://api.example/count-tokens", content=BODY, headers={**GOOD, "authorization": "x"})
                assert r.status_code == 401 and reached == [(b"x", BODY)]
                r = c.post("http://other.example/count-tokens", content=BODY, headers=GOOD)
                assert r.status_code == 400 and r.json()["error"]["code"] == "bad_host"
                big = json.dumps({"text": "a" * 3000}).encode()
                r = c.post("http://api.example/count-tokens", content=big, headers=GOOD)
                assert r.status_code == 413 and reached[-1][1] == big
                assert len(reached) == 3
            finally:
                front.app = inner
    finally:
        aio.close()


def _scope(headers: list, path: str = "/count-tokens") -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }


@pytest.mark.parametrize("fast_path", [True, False])
def test_the_body_timeout_and_the_inflight_cap_hold_on_the_front(fast_path):
    """A body that never arrives whole: 408 within --body-timeout, the connection closed; while
    it is being waited for, the bytes of it that came count against --max-inflight-mb (another
    body that would pass it: 503 with Retry-After), and no longer once the 408 is sent."""
    config = ServeConfig(max_body_mb=1, max_inflight_mb=1, body_timeout=0.3)
    app = create_app(config, fast_path=fast_path)
    json_type = (b"content-type", b"application/json")

    async def main():
        async def lifespan_receive():
            await asyncio.sleep(3600)

        sent = []

        async def never():  # all but the last byte of its 800,000, then nothing
            if not sent:
                sent.append(1)
                return {"type": "http.request", "body": b"x" * 799_999, "more_body": True}
            await asyncio.sleep(3600)

        first, second, third = [], [], []

        async def collect(into):
            async def send(message):
                into.append(message)

            return send

        slow = asyncio.create_task(
            app(_scope([json_type, (b"content-length", b"800000")]), never, await collect(first))
        )
        await asyncio.sleep(0.05)

        async def small():
            return {"type": "http.request", "body": b"x" * 10, "more_body": False}

        await app(_scope([json_type, (b"content-length", b"300000")]), small, await collect(second))
        await slow
        body = json.dumps({"text": "hi", "model_id": "gpt-4"}).encode()

        async def whole():
            return {"type": "http.request", "body": body, "more_body": False}

        await app(_scope([json_type, (b"content-length", str(len(body)).encode())]), whole, await collect(third))
        return first, second, third

    try:
        first, second, third = asyncio.run(main())
    finally:
        app.state.service.runtime.close()
    assert first[0]["status"] == 408 and (b"connection", b"close") in first[0]["headers"]
    assert json.loads(first[1]["body"])["error"]["code"] == "body_timeout"
    assert second[0]["status"] == 503 and (b"retry-after", b"1") in second[0]["headers"]
    assert json.loads(second[1]["body"])["error"]["code"] == "busy"
    assert third[0]["status"] == 200 and json.loads(third[1]["body"])["token_count"] == 1
    text = app.state.service.metrics.render().decode()
    assert re.search(r'route="unmatched",status="408"\} 1\.0', text)
    assert re.search(r'route="unmatched",status="503"\} 1\.0', text)


def test_two_host_headers_and_a_chunked_body_go_to_the_app():
    """Several Host headers (HostCheck's 400) and a body without Content-Length (BodyLimit reads
    it) are not the front's: the same answers as without it."""
    cases = [
        [(b"host", b"127.0.0.1"), (b"host", b"localhost"), (b"content-length", b"2")],
        [(b"host", b"127.0.0.1"), (b"transfer-encoding", b"chunked")],
        [(b"host", b"127.0.0.1"), (b"content-length", b" 47")],  # spaces: BodyLimit reads it
        [(b"host", b"127.0.0.1"), (b"content-length", b"4x")],  # not a number: BodyLimit's 400
    ]
    body = json.dumps({"text": "Hello, world!", "model_id": "gpt-4"}).encode()
    answers = {}
    for fast_path in (True, False):
        app = create_app(ServeConfig(), fast_path=fast_path)

        async def main(app=app):
            out = []
            for headers in cases:
                sent = []

                async def send(message, sent=sent):
                    sent.append(message)

                async def receive():
                    return {"type": "http.request", "body": body, "more_body": False}

                await app(_scope(headers), receive, send)
                out.append((sent[0]["status"], sent[1]["body"]))
            return out

        try:
            answers[fast_path] = asyncio.run(main())
        finally:
            app.state.service.runtime.close()
    try:
        assert answers[True] == answers[False]
        assert [status for status, _ in answers[True]] == [400, 200, 200, 400]
    finally:
        aio.close()
