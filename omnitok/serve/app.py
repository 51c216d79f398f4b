"""The FastAPI app: routes per concern (omnitok.serve.routes: count, work, status), each a thin
call into the library on the app's own Service (omnitok.serve.service: its thread pool, lent
Counters and Compressors, CPU worker processes and metrics, on app.state.service); the
exception handlers of omnitok.serve.handlers; the ASGI layers of omnitok.serve.middleware around
it all, and omnitok.serve.fast, outermost, answering plain /count-tokens requests with the same
checks and answers as those layers and the route."""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import TypeAdapter

from .._version import __version__
from . import docs, handlers, workers
from .config import ServeConfig
from .errors import add_secret
from .fast import FastCount
from .middleware import BearerAuth, Bodies, BodyLimit, Guard
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


class App(FastAPI):
    """FastAPI with omnitok.serve.fast in front of its own __call__ as well as outermost in its
    stack: a plain /count-tokens request is answered before FastAPI's per-request work (its
    OpenTelemetry check, Starlette's scope set-up: ~9 us of a ~33 us request, measured), with the
    same answer. Where FastAPI's telemetry is on (an OpenTelemetry provider is configured:
    _telemetry_on) or a root path is set, every request goes through FastAPI, the fast layer in
    its stack as before."""

    _fast = None  # the ASGI callable of the stack's FastCount in front (made once); False: none
    fast_count: FastCount | None = None  # that FastCount (omnitok.serve.protocol answers with it)
    _inner = None  # FastAPI's own __call__, behind the app's proxy-header layer where it has one
    _otel_on = False
    _otel_next = 0.0
    forwarded_allow_ips: str | None = None  # create_app's: the app reads X-Forwarded-* itself

    async def __call__(self, scope, receive, send):
        fast = self._fast
        if fast is None:
            fast = self._find_fast()
        if fast is False or scope["type"] != "http" or self.root_path or _telemetry_on(self):
            await self._inner(scope, receive, send)
            return
        scope["app"] = self
        await fast(scope, receive, send)

    def _find_fast(self):
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        inner = super().__call__
        if self.forwarded_allow_ips is not None:
            from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

            inner = ProxyHeadersMiddleware(inner, trusted_hosts=self.forwarded_allow_ips)
        self._inner = inner
        layer = self.middleware_stack
        while layer is not None and not isinstance(layer, FastCount):
            layer = getattr(layer, "app", None)
        self.fast_count = layer
        self._fast = layer.front(inner) if layer is not None else False
        return self._fast


def _telemetry_on(app: App) -> bool:
    """Whether FastAPI's own OpenTelemetry is on (it asks per request: ~2.5-5 us of environment
    and provider look-ups): asked again at most once a TELEMETRY_RECHECK_S while off (a provider
    configured later is seen within that time), never again once on (a provider, once set, stays)."""
    now = time.monotonic()
    if app._otel_on or now < app._otel_next:
        return app._otel_on
    telemetry = getattr(app, "_native_telemetry", None)  # FastAPI's, where it has it
    if telemetry is None:
        # A FastAPI without native telemetry has nothing to skip; one that has it under another
        # name is never skipped: every request goes through FastAPI.
        app._otel_on = importlib.util.find_spec("fastapi.telemetry") is not None
    else:
        app._otel_on = bool(telemetry.enabled())
    app._otel_next = now + TELEMETRY_RECHECK_S
    return app._otel_on


TELEMETRY_RECHECK_S = 1.0


def create_app(
    config: ServeConfig | None = None,
    *,
    fast_path: bool = True,
    freeze_gc: bool = False,
    forwarded_allow_ips: str | None = None,
) -> FastAPI:
    """The app for `config` (defaults: ServeConfig()). Reads the bearer token file now, so a bad
    one fails at start, not at the first request. fast_path=False leaves out omnitok.serve.fast
    (every request through FastAPI: the tests compare the two). freeze_gc=True (the server
    process's app, app_from_env) moves every object alive once the default model is loaded out of
    the garbage collector's generations (gc.freeze), for the life of the process.
    forwarded_allow_ips: None where the server in front reads X-Forwarded-For and -Proto (uvicorn
    does by default); else the app does, as uvicorn's own layer with these trusted addresses,
    for every request FastAPI answers (the fast path's answers depend on neither).

    The app owns its runtime (app.state.service); what stays process-wide is the bounds on
    provider calls (omnitok.remote.budget: the last app made sets them)."""
    config = config or ServeConfig()
    token = config.read_token()
    add_secret(token)
    from ..remote import budget

    budget.configure(config.max_upstream_per_request, config.max_upstream_concurrency)
    service = Service(config, freeze_gc=freeze_gc)
    app = App(
        title="omnitok",
        version=__version__,
        description="Token counting, compression and validation for LLM workloads (omnitok's library over HTTP).",
        lifespan=_lifespan,
        docs_url=None,  # omnitok.serve.docs: Swagger UI with its files served from here
        redoc_url=None,
        strict_content_type=False,  # a body without Content-Type is read as JSON
    )
    app.forwarded_allow_ips = forwarded_allow_ips
    app.state.service = service
    handlers.install(app)
    for router in (count.router, work.router, status.router, docs.router):
        app.include_router(router)

    # --- layers, innermost first ---------------------------------------------------------------
    bodies = Bodies(config.max_body_bytes, config.body_timeout, config.max_inflight_bytes)
    app.add_middleware(BodyLimit, bodies=bodies)
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
    if fast_path:  # outermost: it checks for itself what the layers above check (omnitok.serve.fast)
        count_adapter = TypeAdapter(CountResponse)
        app.add_middleware(
            FastCount,
            service=service,
            handlers=app.exception_handlers,
            dump=lambda answer: count_adapter.dump_json(count_adapter.validate_python(answer)),
            bodies=bodies,
            token=token,
            hosts=config.host_names,
            cors=bool(config.cors_origins),
        )
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
    # Where uvicorn does not read X-Forwarded-* (omnitok.cli.serve: no access line), the app
    # does, trusting what uvicorn would (its default, or FORWARDED_ALLOW_IPS).
    trusted = None if config.access_log else os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
    return create_app(config, freeze_gc=True, forwarded_allow_ips=trusted)
