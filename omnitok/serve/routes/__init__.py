"""The app's routes, one router per concern: count (/count-tokens, /count-tokens/batch), work
(/compress, /validate: in worker processes), status (/stats, /cache/stats, /healthz, /readyz,
/metrics). Each route reaches its app's Service (omnitok.serve.service) through the request."""

from __future__ import annotations

from fastapi import Request

from ..schemas import ErrorResponse
from ..service import Service

_ERR = {"model": ErrorResponse}
GET_ERRORS: dict = {400: _ERR, 401: _ERR, 500: _ERR}  # 400: a Host header the server does not answer
POST_ERRORS: dict = {400: _ERR, 401: _ERR, 408: _ERR, 413: _ERR, 422: _ERR, 500: _ERR, 503: _ERR, 504: _ERR}
NOT_READY: dict = {503: _ERR}


def service(request: Request) -> Service:
    """The Service of the app that answers `request`."""
    return request.app.state.service
