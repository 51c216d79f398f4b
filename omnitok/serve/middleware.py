"""Pure ASGI layers around the app, outermost first: Guard (metrics, and a JSON 500 for anything
unexpected, never a traceback), HostCheck (400 for a Host the server does not answer: DNS
rebinding), BearerAuth (401 before the body is read), BodyLimit (the body read whole before the
app sees it: 413 over the size limit, 408 past the body timeout, 503 while the bodies being read
at once would pass the in-flight limit; the state, Bodies, shared with the fast path).

A refusal sent before the body has been read closes the connection (`connection: close`): uvicorn
would otherwise keep reading and dropping what a slow client still sends, for as long as it sends."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

import orjson

from ..errors import shown
from .errors import error_body

log = logging.getLogger("omnitok.serve")

# Paths open without a token: the probes, and the API's own description.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect"}
    | {f"/docs/assets/{name}" for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")}
)


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


def _has_body(scope) -> bool:
    """Whether the request says a body follows (a non-zero Content-Length, or Transfer-Encoding)."""
    for key, value in scope.get("headers") or ():
        key = key.lower()
        if key == b"transfer-encoding" or (key == b"content-length" and value.strip() not in (b"0", b"")):
            return True
    return False


def _closing(scope) -> list:
    """The header that closes the connection after a refusal, when a body is left unread."""
    return [(b"connection", b"close")] if _has_body(scope) else []


def internal_error(scope) -> None:
    """Log an unexpected error on a request (the traceback to the server's log, the path from the
    client escaped and cut: the operator's terminal is safe)."""
    log.exception(
        "omnitok serve: unexpected error on %s %s",
        shown(scope.get("method", ""), quote=False),
        shown(scope.get("path", ""), quote=False),
    )


INTERNAL = error_body("internal", "internal server error")


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

        metrics = self.metrics
        metrics.in_flight += 1
        try:
            await self.app(scope, receive, watched)
        except Exception:
            internal_error(scope)
            status = 500
            if not response_started:
                await send_json(send, 500, INTERNAL)
        finally:
            metrics.in_flight -= 1
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            metrics.answered(scope.get("method", ""), path, status, time.perf_counter() - started)


def bearer_ok(value: bytes | None, token: bytes) -> bool:
    """Whether an Authorization header's value is `Bearer <token>` (compared in constant time)."""
    if value is None:
        return False
    scheme, _, given = value.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(given.strip(), token)


class BearerAuth:
    """`Authorization: Bearer <token>` on every path but PUBLIC_PATHS; compared in constant time
    (hmac.compare_digest on bytes). The token is never logged nor echoed."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token.encode("utf-8")

    def _authorized(self, scope) -> bool:
        return bearer_ok(_header(scope, b"authorization"), self.token)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in PUBLIC_PATHS or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        await send_json(
            send,
            401,
            error_body("unauthorized", "a valid bearer token is required (Authorization: Bearer <token>)"),
            [(b"www-authenticate", b"Bearer"), *_closing(scope)],
        )


class HostCheck:
    """400 for a request whose Host header is not among `names` (host names, any port; `*.domain`
    for its subdomains): a web page on another name that resolves to this server's address (DNS
    rebinding) cannot use it through a visitor's browser (a browser always sends Host: a request
    without one, HTTP/1.0, passes; several: 400). Sits outside BearerAuth and BodyLimit, so nothing
    is checked nor read first."""

    def __init__(self, app, names: frozenset[str]):
        from .config import host_name

        self.app = app  # None: the check alone (the fast path's)
        self.host_name = host_name
        self.exact = frozenset(n for n in names if not n.startswith("*."))
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*."))  # ".example.com"

    def allows(self, host: bytes) -> bool:
        """Whether one Host header's value names a host answered."""
        try:
            name = self.host_name(host.decode("ascii"))
        except UnicodeDecodeError:
            return False
        return name in self.exact or (bool(self.suffixes) and name.endswith(self.suffixes))

    def _allowed(self, scope) -> bool:
        hosts = [v for k, v in scope.get("headers") or () if k.lower() == b"host"]
        if len(hosts) != 1:
            return not hosts
        return self.allows(hosts[0])

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        message = "this server does not answer that Host header (the names it answers: --allowed-host)"
        await send_json(send, 400, error_body("bad_host", message), _closing(scope))


class Bodies:
    """The request bodies being read, and their bounds (`max_bytes`, `timeout`, `max_inflight`),
    shared by BodyLimit and the fast path (omnitok.serve.fast) so that one in-flight total and
    one timer hold for both. See BodyLimit for the rules."""

    RETRY_AFTER = b"1"

    def __init__(self, max_bytes: int, timeout: float = 30.0, max_inflight: int | None = None):
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_inflight = max_inflight if max_inflight is not None else 256 * 1024 * 1024
        self.inflight = 0  # bytes of the bodies being read now (one event loop: no lock)
        # The reads in progress (task -> deadline), watched by one timer for them all rather than
        # a timer each (a body that arrives with its headers costs two dict operations): every
        # tick it cancels the tasks past their deadline, so a 408 comes at most a tick late.
        self._reading: dict[asyncio.Task, float] = {}
        self._expired: set[asyncio.Task] = set()
        self._tick = min(1.0, timeout / 10)
        self._reaper: asyncio.TimerHandle | None = None
        self._reaper_loop = None  # the loop it runs on (an app may outlive one: TestClient)

    def _reap(self) -> None:
        loop = self._reaper_loop
        now = loop.time()
        for task, deadline in list(self._reading.items()):
            if deadline <= now:
                del self._reading[task]
                self._expired.add(task)
                task.cancel()
        self._reaper = loop.call_later(self._tick, self._reap) if self._reading else None

    def too_large(self) -> dict:
        mb = self.max_bytes / (1024 * 1024)
        return error_body("too_large", f"the request body is over the server's limit of {mb:g} MB")

    def busy(self) -> dict:
        mb = self.max_inflight / (1024 * 1024)
        return error_body(
            "busy", f"the server is reading its limit of {mb:g} MB of request bodies at once; try again in a moment"
        )

    def slow(self) -> dict:
        return error_body(
            "body_timeout", f"the request body did not arrive within the server's limit of {self.timeout:g} s"
        )

    def admits(self, declared: int) -> bool:
        """Whether a body of `declared` bytes would fit in the in-flight total as it is now (the
        bytes of the bodies being read that have come): the caller's 503 where it would not."""
        return self.inflight + declared <= self.max_inflight

    async def read(self, receive, declared: int) -> tuple[bytes | None, tuple | None]:
        """(the whole body, None), or (None, (status, body, headers)) for a refusal while reading
        (413, 503, 408), or (None, None) when the client left. Its bytes count in the in-flight
        total as they come (not its declared size: idle uploads that only declare large bodies
        held the whole total, and every POST got 503 for --body-timeout), until it is read."""
        held = 0
        refusal = None
        chunks: list[bytes] = []
        task = asyncio.current_task()
        loop = task.get_loop()  # not get_running_loop(): each asks the kernel for the pid (3.11)
        self._reading[task] = loop.time() + self.timeout
        if self._reaper is None or self._reaper_loop is not loop:
            self._reaper_loop = loop
            self._reaper = loop.call_later(self._tick, self._reap)
        try:
            received = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":  # the client left: nobody to answer
                    return None, None
                body = message.get("body", b"")
                if body:
                    received += len(body)
                    if received > self.max_bytes:
                        refusal = (413, self.too_large(), [])
                        break
                    if received > held:  # counted as it arrives
                        more = received - held
                        if self.inflight + more > self.max_inflight:
                            refusal = (503, self.busy(), [(b"retry-after", self.RETRY_AFTER)])
                            break
                        self.inflight += more
                        held = received
                    chunks.append(body)
                if not message.get("more_body", False):
                    break
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            if hasattr(task, "uncancel"):  # Python 3.11+: this cancellation was ours, and is handled
                task.uncancel()
            refusal = (408, self.slow(), [])
        finally:
            self.inflight -= held
            if self._reading.pop(task, None) is None:  # reaped: its cancel has been seen or is moot
                self._expired.discard(task)
        if refusal is not None:
            return None, refusal
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), None


class BodyLimit:
    """Reads the request body whole before the app sees it (the app then reads it from memory):
    - 413 for a body over `max_bytes`: at once when Content-Length says so (nothing is read), else
      as soon as the bytes received pass it (a chunked upload);
    - 408 when the whole body has not arrived within `timeout` seconds of the request's headers
      (a client trickling a body holds a connection and its buffer no longer than that);
    - 503 with Retry-After when the bytes received of the bodies being read at once would pass
      `max_inflight`: at once where a body's Content-Length would not fit in what they hold now
      (nothing read), else as soon as its bytes would pass it. A crowd of slow uploads cannot
      hold the server's memory, and one of uploads that only declare large bodies holds none
      of it. A body stops counting once it is read.
    Each refusal closes the connection. Limits are per worker process; the state is `bodies`
    (Bodies), shared with the fast path, or one of its own."""

    def __init__(
        self,
        app,
        max_bytes: int | None = None,
        timeout: float = 30.0,
        max_inflight: int | None = None,
        bodies: Bodies | None = None,
    ):
        self.app = app
        self.bodies = bodies or Bodies(max_bytes, timeout, max_inflight)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = 0
        chunked = False
        for key, value in scope.get("headers") or ():
            key = key.lower()
            if key == b"content-length":
                if not value.strip().isdigit():
                    await send_json(
                        send, 400, error_body("bad_request", "Content-Length is not a number"), _closing(scope)
                    )
                    return
                digits = value.strip().lstrip(b"0")
                # Past 18 digits it is past any limit (and int() refuses over 4,300 digits).
                declared = max(declared, int(digits or b"0") if len(digits) <= 18 else 1 << 62)
            elif key == b"transfer-encoding":
                chunked = True
        if not declared and not chunked:  # no body
            await self.app(scope, receive, send)
            return
        bodies = self.bodies
        if declared > bodies.max_bytes:
            await send_json(send, 413, bodies.too_large(), [(b"connection", b"close")])
            return
        if not bodies.admits(declared):
            await send_json(send, 503, bodies.busy(), [(b"retry-after", bodies.RETRY_AFTER), (b"connection", b"close")])
            return
        whole, refusal = await bodies.read(receive, declared)
        if refusal is not None:
            status, body, headers = refusal
            await send_json(send, status, body, [*headers, (b"connection", b"close")])
            return
        if whole is None:  # the client left
            return
        await self.app(scope, _replay(whole, receive), send)


def _replay(body: bytes, receive):
    """A receive that gives the body already read as one message, then reads on (a disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
