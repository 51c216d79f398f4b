"""The app's exception handlers: every error a JSON `{"error": {"code", "message"}}` body
(omnitok.serve.errors), with the status the error's kind says. The fast path answers its errors
through the same handlers (app.exception_handlers)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import OmnitokError
from . import workers
from .errors import HTTP_CODES, ServeError, classify, error_body, validation_message


async def invalid(request: Request, exc: RequestValidationError):
    code, message = validation_message(list(exc.errors()))
    kind = request.headers.get("content-type", "")
    if kind and "json" not in kind.lower():
        message = f"the body must be JSON, sent with Content-Type: application/json (not {kind[:80]})"
    return JSONResponse(error_body(code, message), 422)


async def http(request: Request, exc: StarletteHTTPException):
    status = exc.status_code
    code = HTTP_CODES.get(status, "error")
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else code.replace("_", " ")
    if status == 400 and request.method == "POST":  # FastAPI could not decode the body (not UTF-8)
        status, code, message = 422, "malformed_json", "the body is not valid JSON in UTF-8"
    return JSONResponse(error_body(code, message), status, headers=getattr(exc, "headers", None))


async def omnitok_error(request: Request, exc: OmnitokError):
    status, code = classify(exc)
    return JSONResponse(error_body(code, exc.message, exc.hint), status)


async def serve_error(request: Request, exc: ServeError):
    return JSONResponse(error_body(exc.code, exc.message, exc.hint), exc.status)


async def busy(request: Request, exc: workers.Busy):
    """Every CPU worker busy and the queue full: come back when one is free."""
    return JSONResponse(error_body("busy", str(exc)), 503, headers={"Retry-After": str(exc.retry_after)})


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(OmnitokError, omnitok_error)
    app.add_exception_handler(ServeError, serve_error)
    app.add_exception_handler(workers.Busy, busy)
