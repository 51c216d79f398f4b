"""POST /compress and /validate: CPU-heavy work in the app's worker processes
(omnitok.serve.workers: they hold the GIL), under --timeout."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request

from .. import workers
from ..jsonbody import JSONRoute
from ..schemas import (
    DEFAULT_TARGET_COMPRESSION,
    CompressRequest,
    CompressResponse,
    ValidateRequest,
    ValidateResponse,
)
from . import POST_ERRORS, service

router = APIRouter(route_class=JSONRoute)  # bodies read by the command line's JSON rules


def _finite(value):
    """JSON has no infinity: a non-finite number becomes null (validate's ratio of an empty original)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


@router.post("/compress", response_model=CompressResponse, responses=POST_ERRORS)
async def compress(req: CompressRequest, request: Request) -> dict:
    """Compress a context to a token budget for a model (omnitok.compress)."""
    svc = service(request)
    config = svc.config
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
    r = await svc.in_worker(workers.compress, req.context, req.query, model, budgets, options)
    svc.totals.compressed(r)
    svc.metrics.compressions.labels(r.model_id).inc()
    svc.metrics.tokens_saved.inc(r.original_tokens - r.compressed_tokens)
    return r.to_dict()


@router.post("/validate", response_model=ValidateResponse, responses=POST_ERRORS)
async def validate(req: ValidateRequest, request: Request) -> dict:
    """Score a compressed text against its original (ROUGE-L, compression, BERTScore, BLEU, chrF) and gate."""
    svc = service(request)
    r = await svc.in_worker(
        workers.validate,
        req.original,
        req.compressed,
        {
            "metrics": tuple(req.metrics),
            "min_rouge_l": req.min_rouge_l,
            "max_ratio": req.max_ratio,
            "min_bertscore": req.min_bertscore,
            "min_bleu": req.min_bleu,
            "min_chrf": req.min_chrf,
            "model": req.model_id if req.model_id is not None else svc.config.model,
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
