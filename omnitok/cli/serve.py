"""`omnitok serve`: the REST API (omnitok.serve) on uvicorn."""

from __future__ import annotations

import typer

from .. import errors
from . import _options as opt

NEEDS_SERVE = "omnitok serve needs FastAPI and uvicorn: pip install 'omnitok[serve]'"

EPILOG = """\
Examples:

  omnitok serve                                       # http://127.0.0.1:8001

  omnitok serve --host 0.0.0.0 --port 8001 --workers 4 --auth-token-file /run/secrets/omnitok-token

  curl -s localhost:8001/count-tokens -H 'content-type: application/json' \\
    -d '{"text": "Hello, world!", "model_id": "gpt-4"}'
"""


def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8001, "--port", "-p", callback=opt.number(0, 65535, integer=True), help="Port."),
    workers: int = typer.Option(
        1, "--workers", "-w", callback=opt.number(1, 1024, integer=True), help="Worker processes."
    ),
    model: opt.Model = None,
    auth_token_file: str | None = typer.Option(
        None,
        "--auth-token-file",
        help="Require `Authorization: Bearer <token>` with the token in this file (all routes but "
        "/healthz, /readyz and the OpenAPI description).",
        show_default=False,
    ),
    max_body_mb: float = typer.Option(
        10.0, "--max-body-mb", callback=opt.number(0, low_open=True), help="Refuse larger request bodies (413)."
    ),
    max_records: int = typer.Option(
        10_000,
        "--max-records",
        callback=opt.number(1, integer=True),
        help="Most texts or records in one batch request (413 beyond).",
    ),
    timeout: float = typer.Option(
        60.0, "--timeout", callback=opt.number(0, low_open=True), help="Seconds of work per request; then 504."
    ),
    graceful_timeout: float = typer.Option(
        30.0,
        "--graceful-timeout",
        callback=opt.number(0),
        help="On SIGTERM: seconds in-flight requests get to finish.",
    ),
    cors_origin: list[str] | None = typer.Option(
        None, "--cors-origin", help="Allow browser calls from this origin (repeatable). CORS is off by default."
    ),
    online: opt.Online = None,
    strict: opt.Strict = False,
    engine: opt.Engine = "auto",
    cache: opt.CacheMode = "auto",
    cache_dir: opt.CacheDir = None,
    l3_url: opt.L3Url = None,
    compress_method: str = typer.Option(
        "auto", "--compress-method", help="/compress's method when a request names none: auto, combined, bm25, dense."
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        callback=opt.number(1, 1024, integer=True),
        help="Threads per worker running the library. Default: min(32, cores + 4).",
        show_default=False,
    ),
    log_level: str = typer.Option(
        "info", "--log-level", help="uvicorn's log level: critical, error, warning, info, debug."
    ),
    no_auth: bool = typer.Option(
        False,
        "--no-auth",
        help="Serve a non-loopback address without --auth-token-file (refused otherwise).",
    ),
    allowed_host: list[str] | None = typer.Option(
        None,
        "--allowed-host",
        help="A Host header the server answers (repeatable; '*' for any). Default: the loopback names "
        "when bound to loopback, any otherwise. Other hosts get 400.",
        show_default=False,
    ),
    max_upstream_per_request: int = typer.Option(
        64,
        "--max-upstream-per-request",
        callback=opt.number(1, 1_000_000, integer=True),
        help="Most provider calls one request may cause (422 beyond).",
    ),
    max_upstream_concurrency: int = typer.Option(
        16,
        "--max-upstream-concurrency",
        callback=opt.number(1, 1024, integer=True),
        help="Most provider calls in flight at once, server-wide.",
    ),
    body_timeout: float = typer.Option(
        30.0,
        "--body-timeout",
        callback=opt.number(0, low_open=True),
        help="Seconds for a whole request body to arrive (408 and the connection closed beyond).",
    ),
    max_inflight_mb: float = typer.Option(
        256.0,
        "--max-inflight-mb",
        callback=opt.number(0, low_open=True),
        help="Request bodies being read at once, in total (503 with Retry-After beyond).",
    ),
    cpu_workers: int | None = typer.Option(
        None,
        "--cpu-workers",
        callback=opt.number(1, 1024, integer=True),
        help="Processes for CPU-heavy work (/validate, /compress), per server worker. Default: the cores "
        "shared among --workers.",
        show_default=False,
    ),
) -> None:
    """Serve the library over HTTP: /count-tokens, /count-tokens/batch, /compress, /validate,
    /stats, /cache/stats, /healthz, /readyz, /metrics, /openapi.json."""
    import importlib.util
    import os

    # Looked up here, imported once the options are checked: a refused command line (a bad
    # --host, an unknown model) answers without FastAPI's and uvicorn's imports (~0.2 s of CPU).
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise errors.UsageError(NEEDS_SERVE)

    from ..serve.config import L3_ENV, ServeConfig

    if model is not None:
        from ..api import resolve

        resolve(model)  # an unknown model is a usage error now, not a server that is never ready
    if compress_method not in ("auto", "combined", "bm25", "dense"):
        raise errors.UsageError(f"--compress-method must be auto, combined, bm25 or dense; got {compress_method!r}")
    levels = ("critical", "error", "warning", "info", "debug", "trace")
    if log_level not in levels:
        raise errors.UsageError(f"--log-level must be one of {', '.join(levels)}; got {log_level!r}")
    config = ServeConfig(
        host=host,
        port=port,
        workers=workers,
        model=model,
        auth_token_file=auth_token_file,
        max_body_mb=max_body_mb,
        max_records=max_records,
        request_timeout=timeout,
        graceful_timeout=graceful_timeout,
        cors_origins=tuple(cors_origin or ()),
        online=online,
        strict=strict,
        engine=engine,
        cache=cache,
        cache_dir=cache_dir,
        l3_url=l3_url,
        compress_method=compress_method,
        threads=threads,
        log_level=log_level,
        no_auth=no_auth,
        allowed_hosts=tuple(allowed_host or ()),
        max_upstream_per_request=max_upstream_per_request,
        max_upstream_concurrency=max_upstream_concurrency,
        body_timeout=body_timeout,
        max_inflight_mb=max_inflight_mb,
        cpu_workers=cpu_workers,
    )
    config.read_token()  # a missing or empty token file fails here, before any worker starts
    if cache != "off":  # a bad cache setting (the L3 secret, a URL) is exit 2 now, not a server never ready
        from ..api import cache_settings

        cache_settings(cache_dir, l3_url)
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise errors.UsageError(NEEDS_SERVE) from None
    os.environ.pop(L3_ENV, None)
    os.environ.update(config.to_env())  # what the workers read (ServeConfig.from_env)
    _run(uvicorn, config)


def _run(uvicorn, config) -> None:
    """uvicorn serving the app each worker builds from the environment (ServeConfig.from_env).
    uvicorn writes its access lines to stdout: where stdout was closed when omnitok started
    (cli.app's _closed_stdio: a write to it fails), they go to stderr with its other lines, in
    no colour."""
    import copy
    import signal

    from uvicorn.config import LOGGING_CONFIG

    from .app import CLOSED_AT_START, _on_sigterm

    # SIGTERM is uvicorn's (a graceful shutdown, then the signal raised again with the handler it
    # found): the default action, not the command line's Terminated (cli.app).
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    log_config = LOGGING_CONFIG
    if 1 in CLOSED_AT_START:
        log_config = copy.deepcopy(LOGGING_CONFIG)
        log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"
        for formatter in log_config["formatters"].values():
            # Not asked of stdout (sys.isatty), which --workers' spawned processes start without.
            formatter["use_colors"] = False
    uvicorn.run(
        "omnitok.serve.app:app_from_env",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers if config.workers > 1 else None,
        log_level=config.log_level,
        # uvicorn formats an access line per request even when its level hides it: only when shown.
        access_log=config.access_log,
        # X-Forwarded-For/-Proto from a trusted proxy: uvicorn's layer where the access line shows
        # the client; else the app's, for the requests FastAPI answers (app_from_env: the fast
        # path's answers read neither the client nor the scheme, and skip its ~1.5 us).
        proxy_headers=config.access_log,
        timeout_graceful_shutdown=config.graceful_timeout,
        server_header=False,
        http=_http_protocol(),
        log_config=log_config,
    )


def _http_protocol() -> str:
    """uvicorn's HTTP protocol: omnitok.serve.protocol's (a bound on a request's head; plain
    counts answered without an ASGI cycle where no access line is written), where the installed
    uvicorn has the class it extends; else uvicorn's own choice."""
    try:
        from ..serve import protocol
    except ImportError:  # no httptools: uvicorn's h11, which bounds a head itself
        return "auto"
    return "omnitok.serve.protocol:FastProtocol" if protocol.usable() else "auto"
