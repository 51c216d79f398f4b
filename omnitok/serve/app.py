"""The FastAPI app: routes per concern (omnitok.serve.routes: count, work, status), each a thin
call into the library on the app's own Service (omnitok.serve.service: its thread pool, lent
Counters and Compressors, CPU worker processes and metrics, on app.state.service); the
exception handlers of omnitok.serve.handlers; the ASGI layers of omnitok.serve.middleware around
it all, and omnitok.serve.fast, innermost, answering plain /count-tokens requests with the same
answers as the route."""

from __future__ import annotations

import os
import signal
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import TypeAdapter

from .._version import __version__
from . import docs, handlers, workers
from .config import ServeConfig
from .errors import add_secret
from .fast import PATH as FAST_PATH
from .fast import FastCount
from .middleware import BearerAuth, BodyLimit, Guard
from .routes import count, status, work
from .schemas import CountResponse
from .service import Service


@asynccontextmanager
async def _lifespan(app: FastAPI):
    service: Service = app.state.service
    await service.start()
    try:
        yield
    finally:
        await service.stop()


def create_app(config: ServeConfig | None = None, *, fast_path: bool = True, freeze_gc: bool = False) -> FastAPI:
    """The app for `config` (defaults: ServeConfig()). Reads the bearer token file now, so a bad
    one fails at start, not at the first request. fast_path=False leaves out omnitok.serve.fast
    (every request through FastAPI: the tests compare the two). freeze_gc=True (the server
    process's app, app_from_env) moves every object alive once the default model is loaded out of
    the garbage collector's generations (gc.freeze), for the life of the process.

    The app owns its runtime (app.state.service); what stays process-wide is the bounds on
    provider calls (omnitok.remote.budget: the last app made sets them)."""
    config = config or ServeConfig()
    token = config.read_token()
    add_secret(token)
    from ..remote import budget

    budget.configure(config.max_upstream_per_request, config.max_upstream_concurrency)
    service = Service(config, freeze_gc=freeze_gc)
    app = FastAPI(
        title="omnitok",
        version=__version__,
        description="Token counting, compression and validation for LLM workloads (omnitok's library over HTTP).",
        lifespan=_lifespan,
        docs_url=None,  # omnitok.serve.docs: Swagger UI with its files served from here
        redoc_url=None,
        strict_content_type=False,  # a body without Content-Type is read as JSON
    )
    app.state.service = service
    handlers.install(app)
    for router in (count.router, work.router, status.router, docs.router):
        app.include_router(router)

    # --- layers, innermost first ---------------------------------------------------------------
    if fast_path:
        count_route = next(r for r in count.router.routes if r.path == FAST_PATH)  # Guard labels with its path
        count_adapter = TypeAdapter(CountResponse)
        app.add_middleware(
            FastCount,
            count_text=service.count_text,
            handlers=app.exception_handlers,
            route=count_route,
            dump=lambda answer: count_adapter.dump_json(count_adapter.validate_python(answer)),
        )
    app.add_middleware(
        BodyLimit,
        max_bytes=config.max_body_bytes,
        timeout=config.body_timeout,
        max_inflight=config.max_inflight_bytes,
    )
    if token:
        app.add_middleware(BearerAuth, token=token)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type"],
        )
    if config.host_names is not None:
        from .middleware import HostCheck

        app.add_middleware(HostCheck, names=config.host_names)  # before CORS, auth and the body
    app.add_middleware(Guard, metrics=service.metrics)
    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory (`omnitok.serve.app:app_from_env`): the config `omnitok serve` put in
    the environment (OMNITOK_SERVE_CONFIG). Under --workers N this process is one of uvicorn's
    workers: it stops (SIGTERM, gracefully, its CPU workers with it) when uvicorn's supervisor
    exits, even by kill -9, instead of serving on, orphaned."""
    config = ServeConfig.from_env()
    if config.workers > 1:
        parent = os.getppid()
        if workers.die_with_parent(signal.SIGTERM) and os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
    return create_app(config, freeze_gc=True)
