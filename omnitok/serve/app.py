"""The FastAPI app: every route is a thin call into the library: counting through omnitok.aio (a
thread pool, or at once for a short text, aio.count_inline), /validate and /compress in worker
processes (omnitok.serve.workers: they hold the GIL), every one under --timeout;
omnitok.serve.fast answers plain /count-tokens requests in front of FastAPI with the same answers."""

from __future__ import annotations

import asyncio
import gc
import math
import os
import signal
import threading
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import aio
from .._version import __version__
from ..errors import InputError, OmnitokError, UsageError
from ..remote import budget
from . import workers
from .config import ServeConfig
from .errors import HTTP_CODES, ServeError, add_secret, classify, error_body, validation_message
from .fast import PATH as FAST_PATH
from .fast import FastCount
from .metrics import Metrics
from .middleware import BearerAuth, BodyLimit, Guard
from .schemas import (
    DEFAULT_TARGET_COMPRESSION,
    BatchRequest,
    BatchResponse,
    CacheStatsResponse,
    CompressRequest,
    CompressResponse,
    CountRequest,
    CountResponse,
    ErrorResponse,
    StatsResponse,
    ValidateRequest,
    ValidateResponse,
)

_ERR = {"model": ErrorResponse}
GET_ERRORS: dict = {400: _ERR, 401: _ERR, 500: _ERR}  # 400: a Host header the server does not answer
POST_ERRORS: dict = {400: _ERR, 401: _ERR, 408: _ERR, 413: _ERR, 422: _ERR, 500: _ERR, 503: _ERR, 504: _ERR}
PROBE_TEXT = "Hello, world!"


class _State:
    """Readiness and the compression totals behind /stats."""

    def __init__(self):
        self.ready = False
        self.not_ready = "loading the default model's tokenizer"
        self.ready_info: dict = {}
        self._lock = threading.Lock()
        self.compressions = 0
        self.original_tokens = 0
        self.compressed_tokens = 0
        self.ratio_sum = 0.0
        self.quality_sum = 0.0
        self.count_requests = 0
        self.tokens_counted = 0

    def compressed(self, r) -> None:
        with self._lock:
            self.compressions += 1
            self.original_tokens += r.original_tokens
            self.compressed_tokens += r.compressed_tokens
            self.ratio_sum += r.compression_ratio
            self.quality_sum += r.quality_score

    def counted(self, tokens: int) -> None:
        with self._lock:
            self.count_requests += 1
            self.tokens_counted += tokens

    def view(self) -> dict:
        with self._lock:
            n = self.compressions
            saved = self.original_tokens - self.compressed_tokens
            return {
                "total_compressions": n,
                "total_original_tokens": self.original_tokens,
                "total_compressed_tokens": self.compressed_tokens,
                "total_tokens_saved": saved,
                "avg_compression_ratio": self.ratio_sum / n if n else 0.0,
                "avg_quality_score": self.quality_sum / n if n else 0.0,
                "overall_compression_ratio": self.compressed_tokens / self.original_tokens
                if self.original_tokens
                else 0.0,
                "count_requests": self.count_requests,
                "tokens_counted": self.tokens_counted,
            }


class _Expired(Exception):
    """A batch's deadline passed: its thread stops counting."""


class _Until:
    """A batch's items, ending in _Expired once `stop` is set (at the request's deadline)."""

    def __init__(self, items, stop: threading.Event):
        self.items, self.stop = items, stop

    def __iter__(self):
        for item in self.items:
            if self.stop.is_set():
                raise _Expired
            yield item


def _finite(value):
    """JSON has no infinity: a non-finite number becomes null (validate's ratio of an empty original)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class _App(FastAPI):
    """FastAPI, with POST /count-tokens (the fast path's route: omnitok.serve.fast) taken in at
    the app's own first layer, Guard, past Starlette's outer ones (ServerErrorMiddleware, whose
    500 Guard gives first, as JSON; FastAPI's exception telemetry and app-wide body limit, which
    do nothing while OpenTelemetry is not set up and max_body_size is not set). Set up
    OpenTelemetry and every request goes the whole way again."""

    shortcut = False
    _front = None

    async def __call__(self, scope, receive, send):
        if (
            self.shortcut
            and scope["type"] == "http"
            and scope["path"] == FAST_PATH
            and not self.root_path
            and self.max_body_size is None
            and "fastapi.telemetry" not in scope
            and not self._telemetry_on()
        ):
            front = self._front or self._find_front()
            if front is not None:
                scope["app"] = self
                await front(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _telemetry_on(self) -> bool:
        telemetry = getattr(self, "_native_telemetry", None)
        return telemetry is None or telemetry.enabled()

    def _find_front(self):
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        layer = self.middleware_stack
        while layer is not None and not isinstance(layer, Guard):
            layer = getattr(layer, "app", None)
        self._front = layer
        return layer


def create_app(config: ServeConfig | None = None, *, fast_path: bool = True, freeze_gc: bool = False) -> FastAPI:
    """The app for `config` (defaults: ServeConfig()). Reads the bearer token file now, so a bad
    one fails at start, not at the first request. fast_path=False leaves out omnitok.serve.fast
    (every request through FastAPI: the tests compare the two). freeze_gc=True (the server
    process's app, app_from_env) moves every object alive once the default model is loaded out of
    the garbage collector's generations (gc.freeze), for the life of the process."""
    config = config or ServeConfig()
    token = config.read_token()
    add_secret(token)
    if config.threads:
        aio.set_threads(config.threads)
    aio.set_upstream_limits(config.max_upstream_per_request, config.max_upstream_concurrency)
    metrics = Metrics()
    state = _State()
    pool = workers.CpuPool(
        config.cpu_workers or workers.default_size(config.workers),
        init=(workers.limit_upstream, (config.max_upstream_per_request, config.max_upstream_concurrency)),
    )

    def count_options(
        model_id: str | None, encoding: str | None = None, online: bool | None = None, strict: bool | None = None
    ) -> tuple[str | None, dict]:
        model = model_id if model_id is not None else config.model
        options: dict[str, Any] = {"engine": config.engine, "cache": config.cache}
        if config.cache_dir:
            options["cache_dir"] = config.cache_dir
        if config.l3_url:
            options["l3_url"] = config.l3_url
        if encoding:
            options["encoding"] = encoding
        online = config.online if online is None else online
        if online is not None:
            options["online"] = online
        if config.strict if strict is None else strict:
            options["strict"] = True
        return model, options

    async def within(awaitable, on_timeout=None):
        """`awaitable` under --timeout: at the deadline it is cancelled (a worker process's job is
        killed with it), `on_timeout()` is called, and the client gets 504."""
        try:
            return await asyncio.wait_for(awaitable, config.request_timeout)
        except asyncio.TimeoutError:
            if on_timeout is not None:
                on_timeout()
            raise ServeError(
                504, "timeout", f"the request took longer than the server's limit of {config.request_timeout:g} s"
            ) from None

    async def in_worker(job, *args):
        """A job of omnitok.serve.workers under --timeout (waiting for a worker included)."""
        deadline = asyncio.get_running_loop().time() + config.request_timeout
        return await within(pool.run(job, *args, deadline=deadline))

    async def warm_up() -> None:
        model, options = count_options(None)
        try:
            r = await aio.acount(PROBE_TEXT, model, **options)
        except OmnitokError as e:
            state.not_ready = f"the default model cannot count: {e}"  # /readyz shows it without paths
            from .middleware import log

            log.warning("omnitok serve: not ready: %s", state.not_ready)  # the operator's log: in full
            return
        except Exception as e:  # a broken install: reported by /readyz, never raised
            state.not_ready = f"the default model cannot count ({type(e).__name__})"
            return
        state.ready_info = {"model": r.model, "encoding": r.encoding, "strategy": r.strategy, "exact": r.exact}
        if freeze_gc:
            # What is loaded now (the libraries, the tokenizer) lives as long as the process: out
            # of the collector's sight, so that a full collection under load scans only what
            # requests made instead of every object of the libraries (a pause each time).
            gc.collect()
            gc.freeze()
        state.ready, state.not_ready = True, ""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool.start()
        task = asyncio.create_task(warm_up())
        try:
            yield
        finally:
            task.cancel()
            await pool.close()
            await asyncio.get_running_loop().run_in_executor(None, aio.close)

    app = _App(
        title="omnitok",
        version=__version__,
        description="Token counting, compression and validation for LLM workloads (omnitok's library over HTTP).",
        lifespan=lifespan,
        redoc_url=None,
        strict_content_type=False,  # a body without Content-Type is read as JSON
    )
    app.state.omnitok = state
    app.state.cpu_pool = pool
    app.state.config = config
    app.shortcut = fast_path

    # --- errors --------------------------------------------------------------------------------

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        code, message = validation_message(list(exc.errors()))
        kind = request.headers.get("content-type", "")
        if kind and "json" not in kind.lower():
            message = f"the body must be JSON, sent with Content-Type: application/json (not {kind[:80]})"
        return JSONResponse(error_body(code, message), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        status = exc.status_code
        code = HTTP_CODES.get(status, "error")
        message = exc.detail if isinstance(exc.detail, str) and exc.detail else code.replace("_", " ")
        if status == 400 and request.method == "POST":  # FastAPI could not decode the body (not UTF-8)
            status, code, message = 422, "malformed_json", "the body is not valid JSON in UTF-8"
        return JSONResponse(error_body(code, message), status, headers=getattr(exc, "headers", None))

    @app.exception_handler(OmnitokError)
    async def _omnitok(request: Request, exc: OmnitokError):
        status, code = classify(exc)
        return JSONResponse(error_body(code, exc.message, exc.hint), status)

    @app.exception_handler(ServeError)
    async def _serve(request: Request, exc: ServeError):
        return JSONResponse(error_body(exc.code, exc.message, exc.hint), exc.status)

    @app.exception_handler(workers.Busy)
    async def _busy(request: Request, exc: workers.Busy):
        """Every CPU worker busy and the queue full: come back when one is free."""
        return JSONResponse(error_body("busy", str(exc)), 503, headers={"Retry-After": str(exc.retry_after)})

    # --- counting ------------------------------------------------------------------------------

    def counted(tokens: int, model: str, encoding: str, strategy: str, exact: bool, error_band) -> dict:
        """Record one count (/stats, /metrics) and give /count-tokens' answer for it."""
        state.counted(tokens)
        metrics.counted(model, strategy, tokens, 1)
        metadata = {"encoding": encoding}
        if error_band is not None:
            metadata["error_band"] = error_band
        return {
            "token_count": tokens,
            "model_id": model,
            "strategy_used": strategy,
            "is_exact": exact,
            "metadata": metadata,
        }

    async def count_text(
        text: str, model_id: str | None, encoding: str | None, online: bool | None, strict: bool | None
    ) -> dict:
        """/count-tokens for a text (the route and the fast path in front of it, omnitok.serve.fast):
        counted at once when aio.count_inline can, else in the thread pool under the timeout."""
        model, options = count_options(model_id, encoding, online, strict)
        r = aio.count_inline(text, model, **options)
        if r is None:
            r = await within(aio.acount(text, model, **options))
        return counted(r.tokens, r.model, r.encoding, r.strategy, r.exact, r.error_band)

    @app.post("/count-tokens", response_model=CountResponse, responses=POST_ERRORS)
    async def count_tokens(req: CountRequest) -> dict:
        """Count one text, or one chat `messages` array (with its `system` and `tools`)."""
        if (req.text is None) == (req.messages is None):
            raise ServeError(422, "invalid_request", "give either text or messages")
        if req.text is not None:
            if req.system is not None or req.tools is not None:
                raise ServeError(422, "invalid_request", "system and tools go with messages, not text")
            return await count_text(req.text, req.model_id, req.encoding, req.online, req.strict)
        model, options = count_options(req.model_id, req.encoding, req.online, req.strict)
        record: dict[str, Any] = {"messages": req.messages}
        if req.system is not None:
            record["system"] = req.system
        if req.tools is not None:
            record["tools"] = req.tools
        try:
            rows, _ = await within(aio.acount_rows([record], model, id_field=None, source="request", **options))
        except InputError as e:
            raise UsageError(e.reason) from None
        row = rows[0]
        return counted(
            row["tokens"], row["model"], row["encoding"], row["strategy"], row["exact"], row.get("error_band")
        )

    @app.post("/count-tokens/batch", response_model=BatchResponse, responses=POST_ERRORS)
    async def count_tokens_batch(req: BatchRequest) -> dict:
        """Count many texts or records in one call: rows as `omnitok count --format jsonl` writes
        them (pos, id, tokens, model, encoding, strategy, exact), in input order."""
        model, options = count_options(req.model_id, req.encoding, req.online, req.strict)
        if (req.texts is None) == (req.records is None):
            raise ServeError(422, "invalid_request", "give either texts or records")
        items = req.texts if req.texts is not None else req.records
        if len(items) > config.max_records:
            raise ServeError(
                413, "too_many_records", f"{len(items)} items; the server takes at most {config.max_records} a request"
            )
        fields = [req.field] if isinstance(req.field, str) else req.field
        if req.texts is not None and fields:
            raise ServeError(422, "invalid_request", "field applies to records, not texts")
        # In the thread pool, not a worker process: the engines release the GIL while they
        # encode, the per-record work gives it up every switch interval, and a batch's records
        # would cost the loop more to pickle than to count (omnitok.serve.workers). At the
        # deadline the thread stops at its next record.
        stop = threading.Event()
        rows, summary = await within(
            aio.run_sync(
                budget.fresh,  # one request's budget of provider calls, as aio.acount_rows runs it
                aio.count_rows,
                _Until(items, stop),
                model,
                fields=fields,
                id_field=req.id_field,
                on_error=req.on_error,
                source="texts" if req.texts is not None else "records",
                **options,
            ),
            on_timeout=stop.set,
        )
        state.counted(summary["total_tokens"])
        metrics.counted(summary["model"], summary["strategy"], summary["total_tokens"], summary["counted"])
        return {"results": rows, "summary": summary}

    # --- compress and validate -----------------------------------------------------------------

    @app.post("/compress", response_model=CompressResponse, responses=POST_ERRORS)
    async def compress(req: CompressRequest) -> dict:
        """Compress a context to a token budget for a model (omnitok.compress)."""
        model = req.model_id if req.model_id is not None else config.model
        budgets = {"budget": req.budget, "ratio": req.ratio, "target_compression": req.target_compression}
        if all(v is None for v in budgets.values()):
            budgets["target_compression"] = DEFAULT_TARGET_COMPRESSION
        options: dict[str, Any] = {
            "method": req.method or config.compress_method,
            "gap_marker": req.gap_marker,
            "engine": config.engine,
            "cache": config.cache,
        }
        if config.cache_dir:
            options["cache_dir"] = config.cache_dir
        r = await in_worker(workers.compress, req.context, req.query, model, budgets, options)
        state.compressed(r)
        metrics.compressions.labels(r.model_id).inc()
        metrics.tokens_saved.inc(r.original_tokens - r.compressed_tokens)
        return r.to_dict()

    @app.post("/validate", response_model=ValidateResponse, responses=POST_ERRORS)
    async def validate(req: ValidateRequest) -> dict:
        """Score a compressed text against its original (ROUGE-L, compression, BERTScore) and gate."""
        r = await in_worker(
            workers.validate,
            req.original,
            req.compressed,
            {
                "metrics": tuple(req.metrics),
                "min_rouge_l": req.min_rouge_l,
                "max_ratio": req.max_ratio,
                "min_bertscore": req.min_bertscore,
                "model": req.model_id if req.model_id is not None else config.model,
                "stem": req.stem,
            },
        )
        return _finite(
            {
                "passed": r.passed,
                "rouge_l_score": r.rouge_l_score,
                "bertscore_f1": r.details.get("bertscore_f1"),
                "details": r.details,
                "failures": r.failures,
            }
        )

    # --- statistics, probes, metrics -----------------------------------------------------------

    @app.get("/stats", response_model=StatsResponse, responses=GET_ERRORS)
    async def stats() -> dict:
        """Compressions served (count, tokens saved, average ratio and quality) and counting totals."""
        return {"service": "omnitok", "status": "ready" if state.ready else "starting", "metrics": state.view()}

    @app.get("/cache/stats", response_model=CacheStatsResponse, responses=GET_ERRORS)
    async def cache_stats() -> dict:
        """The caches this server's counters use: l1_hits, l2_hits, l3_hits, misses, total_hits,
        total_requests, hit_rate (percent), l1_size, l2_size (omnitok's cache field names)."""
        own = await within(aio.run_sync(aio.cache_stats))
        return {"cache_enabled": config.cache != "off", "stats": workers.add_stats([own, *pool.cache_views()])}

    @app.get("/healthz", responses=GET_ERRORS)
    async def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={**GET_ERRORS, 503: _ERR})
    async def readyz():
        """Readiness: the default model's tokenizer is loaded and counts."""
        if not state.ready:
            return JSONResponse(error_body("not_ready", state.not_ready), 503)
        return {"status": "ready", **state.ready_info}

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}, **GET_ERRORS},
    )
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition."""
        return Response(metrics.render(), media_type=metrics.content_type)

    # --- layers, innermost first ---------------------------------------------------------------
    if fast_path:
        count_route = next(r for r in app.routes if getattr(r, "endpoint", None) is count_tokens)
        count_adapter = TypeAdapter(CountResponse)
        app.add_middleware(
            FastCount,
            count_text=count_text,
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
    metrics.keep_model(config.model)  # the default model is a label of its own in /metrics
    app.add_middleware(Guard, metrics=metrics)
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
