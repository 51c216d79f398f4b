"""Pure ASGI layers around the app, outermost first: Guard (metrics, and a JSON 500 for anything
unexpected, never a traceback), BearerAuth (401 before the body is read), BodyLimit (413 before a
body over the limit is read)."""

from __future__ import annotations

import hmac
import logging
import time

import orjson

from .errors import error_body

log = logging.getLogger("omnitok.serve")

# Paths open without a token: the probes, and the API's own description.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect"})


async def send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value
    return None


class Guard:
    """Counts and times every request (Prometheus), and turns an exception that reached this far
    into `500 {"error": {"code": "internal", ...}}` with no details (the traceback goes to the
    server's log, never to the client)."""

    def __init__(self, app, metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def watched(message):
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, watched)
        except Exception:
            log.exception("omnitok serve: unexpected error on %s %s", scope.get("method"), scope.get("path"))
            status = 500
            if not response_started:
                await send_json(send, 500, error_body("internal", "internal server error"))
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.answered(scope.get("method", ""), path, status, time.perf_counter() - started)


class BearerAuth:
    """`Authorization: Bearer <token>` on every path but PUBLIC_PATHS; compared in constant time
    (hmac.compare_digest on bytes). The token is never logged nor echoed."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token.encode("utf-8")

    def _authorized(self, scope) -> bool:
        value = _header(scope, b"authorization")
        if value is None:
            return False
        scheme, _, given = value.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(given.strip(), self.token)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in PUBLIC_PATHS or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        await send_json(
            send,
            401,
            error_body("unauthorized", "a valid bearer token is required (Authorization: Bearer <token>)"),
            [(b"www-authenticate", b"Bearer")],
        )


class BodyLimit:
    """413 for a body over `max_bytes`: at once when Content-Length says so (nothing is read),
    else as soon as the bytes received pass the limit (a chunked upload)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> dict:
        mb = self.max_bytes / (1024 * 1024)
        return error_body("too_large", f"the request body is over the server's limit of {mb:g} MB")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await send_json(send, 400, error_body("bad_request", "Content-Length is not a number"))
                return
            if declared > self.max_bytes:
                await send_json(send, 413, self._too_large())
                return
        received = 0
        limit = self.max_bytes

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    from fastapi import HTTPException

                    raise HTTPException(413, self._too_large()["error"]["message"])
            return message

        await self.app(scope, limited, send)
