"""GET /stats, /cache/stats, /healthz, /readyz and /metrics: what the app has done, whether it
answers and counts, and its Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .. import workers
from ..errors import error_body
from ..schemas import CacheStatsResponse, StatsResponse
from . import GET_ERRORS, NOT_READY, service

router = APIRouter()


@router.get("/stats", response_model=StatsResponse, responses=GET_ERRORS)
async def stats(request: Request) -> dict:
    """Compressions served (count, tokens saved, average ratio and quality) and counting totals."""
    svc = service(request)
    return {"service": "omnitok", "status": "ready" if svc.ready else "starting", "metrics": svc.totals.view()}


@router.get("/cache/stats", response_model=CacheStatsResponse, responses=GET_ERRORS)
async def cache_stats(request: Request) -> dict:
    """The caches this server's counters use: l1_hits, l2_hits, l3_hits, misses, total_hits,
    total_requests, hit_rate (percent), l1_size, l2_size (omnitok's cache field names)."""
    svc = service(request)
    own = await svc.within(svc.runtime.run_sync(svc.runtime.cache_stats))
    return {"cache_enabled": svc.config.cache != "off", "stats": workers.add_stats([own, *svc.cpu.cache_views()])}


@router.get("/healthz", responses=GET_ERRORS)
async def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={**GET_ERRORS, **NOT_READY})
async def readyz(request: Request):
    """Readiness: the default model's tokenizer is loaded and counts."""
    svc = service(request)
    if not svc.ready:
        return JSONResponse(error_body("not_ready", svc.not_ready), 503)
    return {"status": "ready", **svc.ready_info}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **GET_ERRORS},
)
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    metrics = service(request).metrics
    return Response(metrics.render(), media_type=metrics.content_type)
