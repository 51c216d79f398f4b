"""The fast path for the commonest request, `POST /count-tokens` with a JSON body of a text and
simple options: an ordinary ASGI middleware (app.add_middleware), the app's innermost (inside
Guard's metrics, BearerAuth and BodyLimit, so every limit and check still applies), answers it
without FastAPI's routing, request model and response model, with the same answer the route
gives (the same Service.count_text, the app's own exception handlers, JSON as pydantic writes
it). It uses public APIs only: app.exception_handlers, the route it stands in for (Guard labels
metrics with its path), Starlette's Request.

It only takes a request whose answer it knows FastAPI would give the same way: a Content-Length
(so BodyLimit has checked the size), no Content-Type or `application/json`, a body orjson reads
as an object whose keys are among `text` (a string), `model_id`, `encoding` (strings or null),
`online`, `strict` (booleans or null). Anything else (chat `messages`, `prefer_online`, an
unknown key, a wrong type, JSON that orjson refuses but Python's json might read, a chunked body,
a client gone mid-body, a read an outer layer refused) goes on to the FastAPI route with the body
it has read, untouched."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson

from ..errors import OmnitokError
from .errors import ServeError

PATH = "/count-tokens"
_OPTIONAL = (("model_id", str), ("encoding", str), ("online", bool), ("strict", bool))
_KEYS = frozenset(["text", *(name for name, _ in _OPTIONAL)])
_PLAIN = (str, int, float, bool, type(None))


def parse(body: bytes) -> tuple | None:
    """(text, model_id, encoding, online, strict) for a body the fast path takes, else None."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or type(data.get("text")) is not str or not data.keys() <= _KEYS:
        return None
    values = [data["text"]]
    for name, kind in _OPTIONAL:
        value = data.get(name)
        if value is not None and type(value) is not kind:
            return None
        values.append(value)
    return tuple(values)


def _json_content_type(value: bytes | None) -> bool:
    """Whether FastAPI reads a body with this Content-Type as JSON: none or an empty one (the
    app reads bodies without one as JSON), or application/json with or without parameters. (FastAPI also takes
    `+json` types: those go the slow way.)"""
    if value is None:
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
    """See the module's docstring. `count_text(text, model_id, encoding, online, strict)` gives
    the answer (a dict) or raises; `handlers` are the app's exception handlers; `route` is the
    FastAPI route it stands in for (Guard labels metrics with its path); `dump` writes an answer
    with plain types as the route's response model would."""

    def __init__(
        self,
        app,
        count_text: Callable[..., Awaitable[dict]],
        handlers: dict,
        route,
        dump: Callable[[dict], bytes],
    ):
        self.app = app
        self.count_text = count_text
        self.handlers = handlers
        self.route = route
        self.dump = dump

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        length = kind = None
        for key, value in scope["headers"]:
            key = key.lower()
            if key == b"content-length":
                length = value if length is None else length
            elif key == b"content-type":
                kind = value if kind is None else kind
        if length is None or not _json_content_type(kind):
            await self.app(scope, receive, send)
            return
        messages = []
        while True:
            try:
                message = await receive()
            except Exception as exc:  # an outer layer's refusal (BodyLimit's 413): the route's to answer
                await self.app(scope, _replay(messages, receive, exc), send)
                return
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        request = None
        if message["type"] == "http.request":
            request = parse(b"".join(m.get("body", b"") for m in messages) if len(messages) > 1 else message["body"])
        if request is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        scope["route"] = self.route
        try:
            answer = await self.count_text(*request)
        except (OmnitokError, ServeError) as exc:
            await self._error(scope, receive, send, exc)
            return
        data = orjson.dumps(answer) if _plain(answer) else self.dump(answer)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(data)).encode()), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def _error(self, scope, receive, send, exc: Exception) -> None:
        """The response the app's handler for this exception gives (found as Starlette finds it,
        by the exception's class and then its bases)."""
        from starlette.requests import Request

        handler = next(self.handlers[cls] for cls in type(exc).__mro__ if cls in self.handlers)
        response = await handler(Request(scope, receive), exc)
        await response(scope, receive, send)


def _replay(messages: list, receive, error: Exception | None = None):
    """A receive that gives the messages already read, then raises `error` (what reading raised
    here), or reads on."""
    pending = list(messages)

    async def replay():
        nonlocal error
        if pending:
            return pending.pop(0)
        if error is not None:
            exc, error = error, None
            raise exc
        return await receive()

    return replay
