"""Issue 24, item 4: each app of `omnitok serve` owns its runtime (app.state.service: thread pool,
lent Counters, CPU workers, metrics, totals), so two apps in one process each answer by their own
config, and neither the Python async API's default runtime nor the other app is touched when one
app counts or shuts down."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("fastapi", reason="omnitok serve needs the serve extra: pip install 'omnitok[serve]'")
pytest.importorskip("httpx", reason="the test client is httpx")

from fastapi.testclient import TestClient  # noqa: E402

from omnitok import aio, runtime  # noqa: E402
from omnitok.serve import ServeConfig, create_app  # noqa: E402

LOCAL = "http://127.0.0.1"
TOKEN = "two-apps-token-0123456789abcdef"


def _ready(client) -> None:
    for _ in range(600):
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(client.get("/readyz").text)


def _models(rt) -> set:
    return {c.resolution.model for c in rt.counters.objects()}


def test_two_apps_in_one_process_each_keep_their_own_config_and_runtime(tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    a = create_app(ServeConfig(auth_token_file=str(token), threads=2, max_records=2, cpu_workers=1))
    b = create_app(ServeConfig(threads=3, max_records=5, model="gpt-4", cpu_workers=1))
    sa, sb = a.state.service, b.state.service
    assert sa.runtime is not sb.runtime and runtime.default() not in (sa.runtime, sb.runtime)
    assert (sa.runtime.threads, sb.runtime.threads) == (2, 3)
    auth = {"authorization": f"Bearer {TOKEN}"}
    texts = {"texts": ["one", "two", "three"], "model_id": "gpt-4.1-mini"}
    try:
        with TestClient(b, base_url=LOCAL) as cb:
            with TestClient(a, base_url=LOCAL) as ca:
                # Both warmed up first: two threads counting with one encoding at once is the
                # engine's matter (gigatoken's "Already borrowed"), not this test's.
                _ready(ca), _ready(cb)
                # Auth and the batch limit: each app's own.
                assert ca.post("/count-tokens", json={"text": "hi"}).status_code == 401
                assert ca.post("/count-tokens/batch", json=texts, headers=auth).status_code == 413
                assert cb.post("/count-tokens/batch", json=texts).json()["summary"]["total_tokens"] == 3
                # The default model: a's is the server's default, b's gpt-4.
                assert cb.post("/count-tokens", json={"text": "Hello, world!"}).json()["model_id"] == "gpt-4"
                r = ca.post("/count-tokens", json={"text": "hello", "model_id": "gpt-4o-mini"}, headers=auth)
                assert r.status_code == 200 and r.json()["token_count"] == 1
                # Counters are lent by the app that counted, never by the other or the default runtime.
                assert "gpt-4o-mini" in _models(sa.runtime) and "gpt-4o-mini" not in _models(sb.runtime)
                assert "gpt-4.1-mini" in _models(sb.runtime) and "gpt-4.1-mini" not in _models(sa.runtime)
                assert not {"gpt-4o-mini", "gpt-4.1-mini"} & _models(runtime.default())
                # Metrics and /stats: each app counts its own requests.
                assert ca.get("/stats", headers=auth).json()["metrics"]["count_requests"] == 1
                assert cb.get("/stats").json()["metrics"]["count_requests"] == 2
                assert 'route="/count-tokens/batch",status="413"' in ca.get("/metrics", headers=auth).text
                assert 'status="413"' not in cb.get("/metrics").text
            # a has shut down: its runtime is closed, b's counters are still loaded and count at once.
            assert _models(sa.runtime) == set()
            assert "gpt-4.1-mini" in _models(sb.runtime)
            assert sb.runtime.count_inline("hello", "gpt-4", **sb.count_options(None)[1]) is not None
            assert cb.post("/count-tokens", json={"text": "Hello, world!"}).json()["token_count"] == 4
            # The Python async API runs on the default runtime, beside the app.
            assert asyncio.run(aio.acount("Hello, world!", model="gpt-4")).tokens == 4
            assert "gpt-4" in _models(runtime.default())
    finally:
        aio.close()
