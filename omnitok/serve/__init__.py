"""`omnitok serve`: the library API over HTTP (FastAPI on uvicorn; `pip install 'omnitok[serve]'`).

    POST /count-tokens        {text | messages (+ system, tools), model_id} -> token_count, ...
    POST /count-tokens/batch  {texts | records, model_id} -> rows as `omnitok count --format jsonl`
    POST /compress            {context, query, model_id, target_compression | budget | ratio}
    POST /validate            {original, compressed, metrics}
    GET  /stats, /cache/stats, /healthz, /readyz, /metrics, /openapi.json

Every endpoint calls the library: counting through the app's own omnitok.runtime.Runtime (a
thread pool, on app.state.service), /validate and
/compress in worker processes (omnitok.serve.workers), each under --timeout; errors are JSON
`{"error": {"code", "message"}}`. README "Security" says what each bound protects.
"""

from __future__ import annotations

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ServeConfig":
        from .config import ServeConfig

        return ServeConfig
    raise AttributeError(f"module 'omnitok.serve' has no attribute {name!r}")
