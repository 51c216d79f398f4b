"""The fast path for the commonest request, `POST /count-tokens` with a JSON body of a text and
simple options: an ordinary ASGI middleware (app.add_middleware), the app's outermost, in front
of the other layers (omnitok.serve.middleware), FastAPI's routing, request model and response
model. For the requests it answers it does itself what those layers do, with the same state and
the same answers: the Host allow-list (HostCheck's rule), the bearer token (compared in constant
time, BearerAuth's rule), the body's size, time and in-flight limits (BodyLimit's Bodies, shared,
so one in-flight total and one timer hold for both), Prometheus metrics and /stats (Guard's and
the route's series), a JSON 500 without details for an unexpected error (Guard's); the count is
the route's (Service.count_result: at once on the event loop for a short text an idle local
Counter can take, else in the thread pool under --timeout), its errors answered by the app's own
exception handlers, its JSON as pydantic writes it (orjson for plain types, a response prefix
made once per model and strategy).

It takes a request only when every check passes without a refusal and the answer is one it
knows FastAPI would give the same way; anything else goes on to the app unchanged, before the
body is read (the layers behind give the refusal: 400 for a Host not answered, 401, 413, 503;
every request when CORS is on, whose layer adds its headers to every answer) or with the body it read (`parse` refused it: chat
`messages`, `prefer_online`, an unknown key, a wrong type, JSON that orjson refuses but Python's
json might read): a Content-Length (so the size is known before reading), no Transfer-Encoding,
no Content-Type or `application/json`, a body orjson reads as an object whose keys are among
`text` (a string), `model_id`, `encoding` (strings or null), `online`, `strict` (booleans or null).
It uses public APIs only: app.exception_handlers, Starlette's Request, prometheus_client's."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable

import orjson

from ..errors import OmnitokError
from .errors import ServeError
from .middleware import INTERNAL, Bodies, HostCheck, _replay, bearer_ok, internal_error, send_json

PATH = "/count-tokens"
_OPTIONAL = (("model_id", str), ("encoding", str), ("online", bool), ("strict", bool))
_KEYS = frozenset(["text", *(name for name, _ in _OPTIONAL)])
_PLAIN = (str, int, float, bool, type(None))
_PREFIX = b'{"token_count":'
_HEADERS_KEPT = 256  # Host values and answer shapes kept checked and made (beyond: each time)
_JSON = (b"content-type", b"application/json")
_BEHIND = "omnitok.fast_passed"  # a scope key: the front passed this request on to the app


def parse(body: bytes) -> tuple | None:
    """(text, model_id, encoding, online, strict) for a body the fast path takes, else None."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or type(data.get("text")) is not str or not data.keys() <= _KEYS:
        return None
    get = data.get
    model_id, encoding, online, strict = get("model_id"), get("encoding"), get("online"), get("strict")
    if (
        (model_id is not None and type(model_id) is not str)
        or (encoding is not None and type(encoding) is not str)
        or (online is not None and type(online) is not bool)
        or (strict is not None and type(strict) is not bool)
    ):
        return None
    return data["text"], model_id, encoding, online, strict


def _json_content_type(value: bytes | None) -> bool:
    """Whether FastAPI reads a body with this Content-Type as JSON: none or an empty one (the
    app reads bodies without one as JSON), or application/json with or without parameters. (FastAPI also takes
    `+json` types: those go the slow way.)"""
    if value is None or value == b"application/json":
        return True
    kind = value.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or not value


def _plain(answer: dict) -> bool:
    """Whether orjson writes `answer` as pydantic writes it through CountResponse (plain types)."""
    return (
        type(answer["token_count"]) is int
        and type(answer["is_exact"]) is bool
        and type(answer["model_id"]) is str
        and type(answer["strategy_used"]) is str
        and all(type(v) in _PLAIN for v in answer["metadata"].values())
    )


class FastCount:
    """See the module's docstring. `service` is the app's Service; `count_text(text, model_id,
    encoding, online, strict)` gives the CountResult or raises (the service's count_result),
    `count_now` the same at once or None (the service's count_now);
    `handlers` are the app's exception handlers; `dump` writes an answer as the route's response
    model would (for the answers orjson cannot write alike); `token` the bearer token (None: no
    auth), `hosts` the Host names answered (None: any), `cors` whether CORS is on (then every
    request goes to the app: Starlette's CORS layer adds headers, `Vary: Origin`, to every
    answer), `bodies` the body limits' state."""

    def __init__(
        self,
        app,
        *,
        service,
        handlers: dict,
        dump: Callable[[dict], bytes],
        bodies: Bodies,
        token: str | None = None,
        hosts: frozenset[str] | None = None,
        cors: bool = False,
    ):
        self.app = app
        self.service = service
        self.count_text: Callable[..., Awaitable] = service.count_result
        self.count_now: Callable[..., object] = service.count_now
        self.handlers = handlers
        self.dump = dump
        self.bodies = bodies
        self.token = token.encode("utf-8") if token else None
        self.hosts = HostCheck(None, hosts) if hosts is not None else None
        self.cors = cors
        self.metrics = service.metrics
        self._ok = self.metrics.request_series("POST", PATH, 200)
        self._allowed_hosts: set[bytes] = set()
        self._shapes: dict[tuple, list] = {}
        # What this layer counted and has not yet handed to /metrics' counters and /stats'
        # totals (plain numbers the event loop's thread adds to, without prometheus_client's lock
        # a series; ~2 us a request): handed over before either is read (flush).
        self._ok_pending = 0  # 200s not yet in the requests counter (their latency is observed at once)
        self._counted_pending = [0, 0]  # (texts, tokens) not yet in /stats' totals
        self.metrics.before_read.append(self.flush)
        service.totals.before_read.append(self.flush)

    def flush(self) -> None:
        """Hand what this layer counted to the metrics and totals. Called by Metrics.render and
        Totals.view, on the event loop's thread (the routes of /metrics and /stats are async),
        the thread that counts: nothing added between the read and the reset is lost."""
        n, self._ok_pending = self._ok_pending, 0
        if n:
            self._ok[0].inc(n)
        (texts, tokens), self._counted_pending = self._counted_pending, [0, 0]
        if texts:
            self.service.totals.counted_many(texts, tokens)
        for made in self._shapes.values():
            if made[4]:
                made[1].inc(made[3])
                made[2].inc(made[4])
                made[3] = made[4] = 0

    def _host_ok(self, hosts: int, host: bytes | None) -> bool:
        if hosts != 1:
            return not hosts  # none (HTTP/1.0) passes; several: HostCheck's 400
        if host in self._allowed_hosts:
            return True
        if not self.hosts.allows(host):
            return False
        if len(self._allowed_hosts) < _HEADERS_KEPT:
            self._allowed_hosts.add(host)
        return True

    async def __call__(self, scope, receive, send):
        """As a layer of the app's stack: the requests the front (App.__call__) passed on go on."""
        if _BEHIND in scope:
            await self.app(scope, receive, send)
            return
        await self._take(scope, receive, send, self.app)

    def front(self, outer) -> Callable[..., Awaitable]:
        """The ASGI callable in front of the whole app (omnitok.serve.app.App): what it does not
        answer goes to `outer` (the app's own __call__, FastAPI's), marked so that this layer
        passes it on. Made once per app, not per request."""

        async def behind(scope, receive, send):
            scope[_BEHIND] = True
            await outer(scope, receive, send)

        async def app(scope, receive, send):
            await self._take(scope, receive, send, behind)

        return app

    def declared(self, headers) -> int | None:
        """The body's declared size (Content-Length) where a request's headers let the fast
        path take it, else None (it goes on to the app): one Content-Length of digits, no
        Transfer-Encoding, a Host answered, the bearer token where one is set, a JSON content
        type, a body within the size and in-flight limits."""
        length = kind = host = auth = None
        lengths = hosts = 0
        for name, value in headers:
            name = name.lower()
            if name == b"content-length":
                length = value
                lengths += 1
            elif name == b"content-type":
                kind = value if kind is None else kind
            elif name == b"host":
                host = value
                hosts += 1
            elif name == b"authorization":
                auth = value if auth is None else auth
            elif name == b"transfer-encoding":
                return None
        if (
            lengths != 1
            or not length.isdigit()
            or len(length.lstrip(b"0")) > 18  # past any limit (and int() refuses 4,300 digits)
            or (self.hosts is not None and not self._host_ok(hosts, host))
            or (self.token is not None and not bearer_ok(auth, self.token))
            or not _json_content_type(kind)
        ):
            return None
        declared = int(length.lstrip(b"0") or b"0")
        bodies = self.bodies
        if not declared or declared > bodies.max_bytes or not bodies.admits(declared):
            return None  # no body, or BodyLimit's refusal
        return declared

    def answer_now(self, body: bytes) -> bytes | None:
        """The JSON answer to a request whose headers passed `declared` and whose body has come
        whole, counted at once on this thread (the service's count_now) and recorded as _take
        records it; None where it cannot be (a body the fast path does not take, a count for the
        thread pool, any error): the caller hands the request to the app unchanged, which
        answers it as it would have (omnitok.serve.protocol)."""
        request = parse(body)
        if request is None:
            return None
        started = time.perf_counter()
        metrics = self.metrics
        metrics.in_flight += 1
        try:
            r = self.count_now(*request)
            data = None if r is None else self._body(r)
        except Exception:  # noqa: BLE001 - the app answers it (the same error, or its 500)
            return None
        finally:
            metrics.in_flight -= 1
        if data is not None:
            self._ok_pending += 1
            self._ok[1].observe(time.perf_counter() - started)
        return data

    async def _take(self, scope, receive, send, app) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("root_path")
            or self.cors
        ):
            await app(scope, receive, send)
            return
        declared = self.declared(scope["headers"])
        if declared is None:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        metrics = self.metrics
        metrics.in_flight += 1
        status = 500
        try:
            status = await self._answer(scope, receive, send, declared, app)
        except Exception:
            internal_error(scope)
            with contextlib.suppress(Exception):  # an answer had begun: the server ends the connection
                await send_json(send, 500, INTERNAL)
        finally:
            metrics.in_flight -= 1
            seconds = time.perf_counter() - started
            if status == 200:
                self._ok_pending += 1
                self._ok[1].observe(seconds)
            elif status:  # 0: the app answered it (its layers count it)
                metrics.answered("POST", PATH if status > 0 else "unmatched", abs(status), seconds)

    async def _answer(self, scope, receive, send, declared: int, app) -> int:
        """Read, count and answer: the status sent, negative for a refusal made before the route
        (metrics label it `unmatched`, as Guard does), 0 when the app answered."""
        body, refusal = await self.bodies.read(receive, declared)
        if body is None:
            if refusal is None:  # the client left: nobody to answer
                return -500
            status, error, headers = refusal
            await send_json(send, status, error, [*headers, (b"connection", b"close")])
            return -status
        request = parse(body)
        if request is None:
            await app(scope, _replay(body, receive), send)
            return 0
        try:
            # At once on the event loop where the service can (no coroutine made), else its
            # thread pool under the timeout.
            r = self.count_now(*request)
            if r is None:
                r = await self.count_text(*request)
        except (OmnitokError, ServeError) as exc:
            return await self._error(scope, receive, send, exc)
        data = self._body(r)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(data)), _JSON],
            }
        )
        await send({"type": "http.response.body", "body": data})
        return 200

    def _body(self, r) -> bytes:
        """The route's answer for CountResult `r`, recorded as the route records it (/stats,
        /metrics), written as pydantic writes it."""
        tokens = r.tokens
        shape = (r.model, r.encoding, r.strategy, r.exact, r.error_band)
        made = self._shapes.get(shape)
        if made is None:
            made = self._shape(shape)
        suffix = made[0]
        pending = self._counted_pending
        pending[0] += 1
        pending[1] += tokens
        if made[5]:
            made[3] += tokens
            made[4] += 1
        else:  # past the shapes kept: its series now
            made[1].inc(tokens)
            made[2].inc()
        if suffix is not None and type(tokens) is int:
            return _PREFIX + b"%d" % tokens + suffix
        answer = self.service.describe(tokens, r.model, r.encoding, r.strategy, r.exact, r.error_band)
        return orjson.dumps(answer) if _plain(answer) else self.dump(answer)

    def _shape(self, shape: tuple) -> list:
        """[the JSON after the token count, or None where orjson would not write it as pydantic
        does; the tokens and texts series of /metrics; the tokens and texts not yet added to
        them; whether it is kept (else counted into its series at once)] for an answer's (model,
        encoding, strategy, exact, error band)."""
        model, encoding, strategy, exact, band = shape
        answer = self.service.describe(0, model, encoding, strategy, exact, band)
        suffix = None
        if _plain(answer):
            data = orjson.dumps(answer)
            if data.startswith(_PREFIX + b"0,"):
                suffix = data[len(_PREFIX) + 1 :]
        kept = len(self._shapes) < _HEADERS_KEPT
        made = [suffix, *self.metrics.count_series(model, strategy), 0, 0, kept]
        if kept:
            self._shapes[shape] = made
        return made

    async def _error(self, scope, receive, send, exc: Exception) -> int:
        """The response the app's handler for this exception gives (found as Starlette finds it,
        by the exception's class and then its bases)."""
        from starlette.requests import Request

        handler = next(self.handlers[cls] for cls in type(exc).__mro__ if cls in self.handlers)
        response = await handler(Request(scope, receive), exc)
        await response(scope, receive, send)
        return response.status_code
