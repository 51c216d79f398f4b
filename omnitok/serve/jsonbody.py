"""How the app's routes read a JSON request body: by the command line's rules for a JSON line
(README, "Input rules"), not Python's json module's more lenient ones.

FastAPI reads a body with `json.loads(bytes)`, which takes what the command line's reader
refuses: the UTF-8 bytes of a surrogate (ED A0 80, which no UTF-8 text holds) read as one,
`NaN`, `Infinity` and `-Infinity` as numbers. Here a body is UTF-8 or the app's "not valid
JSON in UTF-8" (one BOM before it allowed, as before), and those literals are malformed JSON.
Integers stay exact (up to Python's 4,300 digits), as in JSONL.

A lone surrogate escape (`"\\ud800"`) is not Unicode text: in a batch (`records`, `texts`) it
makes its record a bad one, as a JSONL line holding it is (the routes' records_of); anywhere in
any other body the request is malformed JSON, with the README's message. The fast path
(omnitok.serve.fast) reads with orjson, which refuses all of these, and hands such bodies to
the routes."""

from __future__ import annotations

import json
from collections.abc import Callable

import orjson
from fastapi import Request
from fastapi.routing import APIRoute

from ..io.ids import NotAJSONValue, no_constant
from ..records import LONE_SURROGATE, lone_surrogate

_BOM = "\ufeff"


def _position(body: bytes) -> int:
    """Where orjson, which refuses every such body, stops reading it (0 where it reads it)."""
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as e:
        return e.pos
    return 0


def loads(body: bytes, keep_lone_surrogates: bool = False):
    """A request body's JSON value by the rules above: UnicodeDecodeError for a body that is not
    UTF-8, json.JSONDecodeError for one that is not JSON (NaN and Infinity included, and a lone
    surrogate escape unless `keep_lone_surrogates`)."""
    text = body.decode("utf-8")
    if text.startswith(_BOM):
        text = text[1:]
    try:
        value = json.loads(text, parse_constant=no_constant)
    except NotAJSONValue as e:
        raise json.JSONDecodeError(str(e), text, _position(body)) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer past Python's 4,300 digits (the command line's reader: the same)
        raise json.JSONDecodeError("an integer of more than 4,300 digits", text, _position(body)) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deep", text, _position(body)) from None
    if not keep_lone_surrogates and lone_surrogate(value):
        raise json.JSONDecodeError(LONE_SURROGATE, text, _position(body))
    return value


class _Body(Request):
    keep_lone_surrogates = False
    _json_error: Exception | None = None

    async def json(self):
        """The body's value, read once: its error too (JSONRoute reads it before FastAPI does, and
        a malformed 10 MB body is not parsed twice)."""
        if not hasattr(self, "_json"):
            if self._json_error is not None:
                raise self._json_error
            try:
                self._json = loads(await self.body(), self.keep_lone_surrogates)
            except Exception as e:
                self._json_error = e
                raise
        return self._json


class _Records(_Body):
    keep_lone_surrogates = True


def records_form(endpoint: Callable) -> Callable:
    """Mark a route whose body holds records (a batch): a lone surrogate escape is its record's
    error, not the request's."""
    endpoint.keeps_lone_surrogates = True
    return endpoint


# The lists of a body held to the server's --max-records before pydantic sees them: it checks
# every item first, and 2,000,000 numbers under `texts` took it 22 s on the event loop (the route's
# own count check came after).
_LISTS = ("texts", "records", "messages", "tools")


def _json_body(request: Request) -> bool:
    """Whether FastAPI reads this request's body as JSON (no Content-Type, or a JSON one)."""
    kind = request.headers.get("content-type")
    return not kind or "json" in kind.lower()


def check_lists(value, limit: int) -> None:
    """413 `too_many_records` for a body whose texts, records, messages or tools hold more than
    `limit` items."""
    if type(value) is not dict:
        return
    for name in _LISTS:
        items = value.get(name)
        if type(items) is list and len(items) > limit:
            from .errors import ServeError

            raise ServeError(
                413, "too_many_records", f"{len(items)} {name}; the server takes at most {limit} a request"
            )


class JSONRoute(APIRoute):
    """The routes' class: their bodies read by `loads`, their lists held to --max-records."""

    def get_route_handler(self):
        handler = super().get_route_handler()
        kind = _Records if getattr(self.endpoint, "keeps_lone_surrogates", False) else _Body

        async def route(request: Request):
            request = kind(request.scope, request.receive)
            if request.method == "POST" and _json_body(request):
                try:
                    value = await request.json()
                except Exception:  # noqa: BLE001 - FastAPI reads it again and answers as it does
                    value = None
                check_lists(value, request.app.state.service.config.max_records)
            return await handler(request)

        return route
