"""POST /count-tokens and /count-tokens/batch: counting in the app's thread pool (or at once for
a short text: Service.count_text), under --timeout. omnitok.serve.fast answers plain
/count-tokens requests in front of these routes with the same answers."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request

from ...errors import InputError, UsageError
from ...records import fields_given
from ..jsonbody import JSONRoute, records_form
from ..schemas import BatchRequest, BatchResponse, CountRequest, CountResponse
from . import POST_ERRORS, service

router = APIRouter(route_class=JSONRoute)  # bodies read by the command line's JSON rules


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


@router.post("/count-tokens", response_model=CountResponse, responses=POST_ERRORS)
async def count_tokens(req: CountRequest, request: Request) -> dict:
    """Count one text, or one chat `messages` array (with its `system` and `tools`)."""
    svc = service(request)  # the request's form was checked with its body (CountRequest)
    if req.text is not None:
        return await svc.count_text(req.text, req.model_id, req.encoding, req.online, req.strict)
    model, options = svc.count_options(req.model_id, req.encoding, req.online, req.strict)
    record: dict[str, Any] = {"messages": req.messages}
    if req.system is not None:
        record["system"] = req.system
    if req.tools is not None:
        record["tools"] = req.tools
    rt = svc.runtime
    try:
        rows, _ = await svc.within(
            rt.request(rt.count_rows, [record], model, id_field=None, source="request", **options)
        )
    except InputError as e:
        raise UsageError(e.reason) from None
    row = rows[0]
    return svc.counted(
        row["tokens"], row["model"], row["encoding"], row["strategy"], row["exact"], row.get("error_band")
    )


@router.post("/count-tokens/batch", response_model=BatchResponse, responses=POST_ERRORS)
@records_form  # a lone surrogate escape is its record's error, as a JSONL line's
async def count_tokens_batch(req: BatchRequest, request: Request) -> dict:
    """Count many texts or records in one call: rows as `omnitok count --format jsonl` writes
    them (pos, id, tokens, model, encoding, strategy, exact), in input order."""
    svc = service(request)
    model, options = svc.count_options(req.model_id, req.encoding, req.online, req.strict)
    items = req.texts if req.texts is not None else req.records  # at most --max-records (JSONRoute)
    fields = fields_given(req.field)  # with records (BatchRequest): `-f`'s rule, commas included
    # In the thread pool, not a worker process: the engines release the GIL while they encode,
    # the per-record work gives it up every switch interval, and a batch's records would cost the
    # loop more to pickle than to count (omnitok.serve.workers). At the deadline the thread stops
    # at its next record.
    stop = threading.Event()
    rt = svc.runtime
    rows, summary = await svc.within(
        rt.request(  # one request's budget of provider calls
            rt.count_rows,
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
    svc.totals.counted(summary["total_tokens"])
    svc.metrics.counted(summary["model"], summary["strategy"], summary["total_tokens"], summary["counted"])
    return {"results": rows, "summary": summary}
