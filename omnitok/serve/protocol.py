"""The HTTP protocol `omnitok serve` runs: uvicorn's own httptools protocol, refusing a request
line and headers over MAX_HEAD (431; httptools has no bound) and, where uvicorn shows no access
line, answering the fast path's requests (omnitok.serve.fast: a plain
`POST /count-tokens`) in the protocol itself when a request's headers and body have come in
one read, instead of through an ASGI cycle (a task, an event, a receive and two sends, two
writes). Measured with benchmarks/serve_bench.py's raw client, 8 clients, 1 KB texts: 75-77 ->
37-51 us of server CPU a request.

Everything else is uvicorn's, unchanged, and so is every request this layer does not answer: it
holds a candidate's body only for the read that brought its headers; a body still to come at the
end of that read, a body the fast path does not take, a count for the thread pool and any error
go to the app as uvicorn would have handed them (the ASGI fast path, its limits and its
answers, errors included). A candidate is a `POST /count-tokens` (that exact target) over a
keep-alive HTTP/1.1 connection with no `Expect`, no upgrade and no earlier request still being
answered (pipelined requests are answered in order), on a connection whose writes are not
paused, at most PER_READ of them a read, where the app's fast path would take it
(FastCount.declared: the Host, the bearer token, the body's size and type, the in-flight
limit; App's rule: no root path, FastAPI's telemetry off, CORS off). Its answer is the bytes uvicorn writes for the ASGI fast path's
answer: the status line, uvicorn's default headers (Date), Content-Length, Content-Type, the
JSON; its metrics and /stats totals are the fast path's (FastCount.answer_now).

It depends on uvicorn's protocol class (its parser callbacks, `cycle`, `pipeline`, `flow`,
`server_state`, `on_response_complete`); `omnitok serve` uses it where that class has its
methods (usable), else uvicorn's own."""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .app import App, _telemetry_on
from .errors import error_body
from .fast import PATH

_PATH = PATH.encode()
_OK = STATUS_LINE[200]
_TAIL = b"content-type: application/json\r\n\r\n"
# Requests answered here in one read at most: the rest of a pipelined burst goes to the app, which
# answers one at a time between other connections' work (a read of 256 KB holds ~1,700 small
# requests; 16 of the longest inline count, ~0.6 ms each, hold the event loop ~10 ms).
PER_READ = 16
# A request's line and headers, at most (h11's default is 16 KB, nginx's 4 x 8 KB): httptools has
# no bound, and builds a long header value by copying it again with every read (a header sent
# for 12 s reached 100 MB, held /healthz 5 s and the memory grew by 500 MB).
MAX_HEAD = 64 * 1024
_HEAD_REFUSED = orjson.dumps(
    error_body(
        "headers_too_large", f"the request line and headers are over the server's limit of {MAX_HEAD // 1024} KB"
    )
)
_NEEDED = (
    "on_message_begin",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
    "data_received",
)


def usable() -> bool:
    """Whether uvicorn's protocol class is the one this module extends (its methods by name)."""
    return all(callable(getattr(HttpToolsProtocol, name, None)) for name in _NEEDED)


def _fast_of(app):
    """The app's FastCount where uvicorn hands requests to omnitok's App itself (no layer of
    uvicorn's between them), else None."""
    if not isinstance(app, App):
        return None
    if app._fast is None:
        app._find_fast()
    return app.fast_count


class FastProtocol(HttpToolsProtocol):
    """See the module's docstring."""

    _held: list[bytes] | None = None  # the body of the candidate being read, or None
    _head = -1  # bytes read of the current request's line and headers since its first read (-1: not in one)
    _answered = 0  # requests answered here in the current read
    _fast = None  # the app's FastCount (found on the connection's first candidate), or False: none

    def _candidate(self) -> bool:
        if (
            self.url != _PATH
            or self._answered >= PER_READ
            or self.expect_100_continue
            or self.limit_concurrency is not None
            or self.access_log
            or self.pipeline
            or (self.cycle is not None and not self.cycle.response_complete)
            or self.flow.write_paused
            or self.parser.get_method() != b"POST"
            or self.parser.get_http_version() != "1.1"
            or not self.parser.should_keep_alive()
            or self.parser.should_upgrade()
        ):
            return False
        fast = self._fast
        if fast is None:
            fast = self._fast = _fast_of(self.app) or False
        if fast is False or fast.cors:
            return False
        app = self.app
        return not (app.root_path or self.root_path or _telemetry_on(app)) and fast.declared(self.headers) is not None

    def on_message_begin(self) -> None:
        self._head = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head = -1
        if self._candidate():
            self._held = []
            return
        # An answer of this layer's, earlier in this read, armed the keep-alive timer (uvicorn's
        # own answers arm it only when no request follows): not while the app answers this one.
        self._unset_keepalive_if_required()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._held is not None:
            self._held.append(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        held = self._held
        if held is None:
            super().on_message_complete()
            return
        self._held = None
        body = held[0] if len(held) == 1 else b"".join(held)
        data = self._fast.answer_now(body)
        if data is None:
            self._to_app(held)
            super().on_message_complete()
            return
        out = [_OK]
        for name, value in self.server_state.default_headers:
            out += [name, b": ", value, b"\r\n"]
        out += [b"content-length: %d\r\n" % len(data), _TAIL, data]
        self.transport.write(b"".join(out))
        self._answered += 1
        self.on_response_complete()

    def _to_app(self, held: list[bytes]) -> None:
        """The request as uvicorn would have handed it on: its cycle, its task, the body so far."""
        self._unset_keepalive_if_required()
        super().on_headers_complete()
        for chunk in held:
            super().on_body(chunk)

    def data_received(self, data: bytes) -> None:
        if self._head >= 0:
            self._head += len(data)
            if self._head > MAX_HEAD:
                self._refuse_head()
                return
        self._answered = 0
        super().data_received(data)
        held = self._held
        if held is not None:  # the body is still coming: the app reads it, under its limits
            self._held = None
            if not self.transport.is_closing():  # (else a bad request was refused: nobody to answer)
                self._to_app(held)

    def _refuse_head(self) -> None:
        """431, as uvicorn refuses a request it cannot parse (its 400): the connection closed."""
        self._head = -1
        if self.transport.is_closing():
            return
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_HEAD_REFUSED), _HEAD_REFUSED)
        )
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._held = None
        super().connection_lost(exc)
