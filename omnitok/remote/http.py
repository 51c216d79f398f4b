"""A small JSON-over-HTTP client for the count APIs: timeouts, retries with backoff that honour
`retry-after-ms` / `retry-after` on 408/409/429/5xx, and errors that never carry a credential.

Every answer is treated as hostile: redirects are refused (a 3xx is an error, never followed to
another host with the key), bodies are read up to MAX_BODY within the request's time, and any of
the provider's text shown in an error is scrubbed of the secrets before it is cut short. Each
attempt is one call of the request's budget and holds one of the process's slots (budget.py)."""

from __future__ import annotations

import base64
import contextlib
import email.utils
import functools
import http.client
import json
import math
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import quote, unquote

from ..errors import RemoteError, UsageError
from ..redact import excerpt, origin, split_userinfo, url_secrets
from . import budget

RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504, 529}
MAX_BODY = 8 * 1024 * 1024  # a count answer is tens of bytes; more than this is refused
MAX_ERROR_BODY = 64 * 1024  # of an error answer, only the message is wanted
MAX_COUNT = 2**63 - 1  # the largest count a cache or an Arrow int64 column holds


@dataclass
class HttpPolicy:
    timeout: float = 30.0
    retries: int = 2
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: the 3xx comes back as an HTTPError, the key never leaves for the
    host it names."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


# The deadline (monotonic) of the request this thread is sending, and the timers that hold it.
_REQUEST = threading.local()


def _shut(sock) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # a read waiting on it ends at once


class _Deadline:
    """A connection whose socket is shut down at its request's deadline (_REQUEST.deadline):
    the socket's own timeout bounds each read, not the answer, so a server sending its status
    line and headers a byte at a time (or `100 Continue` after `100 Continue`) held a request,
    and its slot, for ever. The body is held to the deadline by _read as well."""

    def connect(self):
        super().connect()
        deadline = getattr(_REQUEST, "deadline", None)
        if deadline is not None:
            timer = threading.Timer(max(0.0, deadline - time.monotonic()), _shut, (self.sock,))
            timer.daemon = True
            timer.start()
            _REQUEST.timers.append(timer)


class _HTTPConnection(_Deadline, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_Deadline, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_HTTPSConnection, req, context=self._context, check_hostname=self._check_hostname)


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirect, _HTTPHandler, _HTTPSHandler)


@contextlib.contextmanager
def _until(deadline: float):
    """The connections opened in this block are shut down at `deadline` (_Deadline)."""
    _REQUEST.deadline, _REQUEST.timers = deadline, []
    try:
        yield
    finally:
        for timer in _REQUEST.timers:
            timer.cancel()
        _REQUEST.deadline, _REQUEST.timers = None, []


def _retry_after(headers) -> float | None:
    """Seconds the server asked to wait, or None; never negative, NaN or a crash on a bad date."""
    if headers is None:
        return None
    wait = _seconds(headers.get("retry-after-ms"), 1000)
    if wait is None:
        wait = _seconds(headers.get("retry-after"), 1)
    if wait is None and headers.get("retry-after"):
        try:
            parsed = email.utils.parsedate_to_datetime(headers.get("retry-after"))
            wait = parsed.timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return None if wait is None or math.isnan(wait) else max(0.0, wait)


def _seconds(value: str | None, per_second: int) -> float | None:
    try:
        return float(value) / per_second if value else None
    except ValueError:
        return None


def _error_text(body: bytes) -> str:
    """The provider's own error message, from any of the shapes the APIs use (unscrubbed: the
    caller scrubs it before cutting it short)."""
    try:
        return _message_of(json.loads(body))
    except (ValueError, TypeError, RecursionError):  # not JSON, or JSON too odd to render
        return body.decode("utf-8", "replace").strip() or "no error body"


def _message_of(data) -> str:
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            kind = err.get("type") or err.get("status") or ""
            msg = err.get("message") or data.get("message") or ""
            return f"{kind}: {msg}".strip(": ") or json.dumps(data)
        if isinstance(err, str):
            return err
        if "message" in data:
            return str(data["message"])
    return json.dumps(data)


def _basic_auth(url: str) -> tuple[str, str | None]:
    """(the URL without userinfo, a Basic authorization value for the userinfo, or None)."""
    bare, info = split_userinfo(url, strict=True)
    if info is None:
        return url, None
    user, _, password = info.partition(":")
    return bare, "Basic " + base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()


def _read(resp, limit: int, deadline: float) -> bytes:
    """At most `limit` + 1 bytes of a body, given up on once `deadline` (monotonic) has passed:
    a server dripping an endless body neither fills memory nor holds the request forever."""
    read = getattr(resp, "read1", None) or resp.read
    chunks, size = [], 0
    while size <= limit:
        chunk = read(min(65536, limit + 1 - size))
        if not chunk:
            if time.monotonic() > deadline:  # the end of the socket _Deadline shut, not of the body
                raise TimeoutError("the answer took longer than the timeout to arrive")
            break
        chunks.append(chunk)
        size += len(chunk)
        if time.monotonic() > deadline:
            raise TimeoutError("the answer took longer than the timeout to arrive")
    return b"".join(chunks)


def _exchange(req, timeout: float, deadline: float):
    """(None, the body) of a 2xx answer, or (its HTTPError, the error's body or None where it
    could not be read) of any other: the headers, the body and an error's body all end at
    `deadline` (_until). (A TLS handshake ends within the socket's timeout: CPython bounds it
    whole.)"""
    with _until(deadline):
        try:
            with _opener().open(req, timeout=timeout) as resp:
                return None, _read(resp, MAX_BODY, deadline)
        except urllib.error.HTTPError as e:
            try:
                return e, (b"" if 300 <= e.code < 400 else _read(e, MAX_ERROR_BODY, deadline))
            except (OSError, http.client.HTTPException):
                return e, None
            finally:
                with contextlib.suppress(Exception):
                    e.close()


def post_json(
    provider: str,
    url: str,
    body: dict,
    headers: dict[str, str],
    policy: HttpPolicy,
    secrets: tuple[str, ...] = (),
    sign=None,
) -> dict:
    """POST `body` as JSON and return the decoded JSON answer, retrying what is worth retrying.

    `sign(method, url, headers, data)` may add authentication headers (SigV4). A password in the
    URL is sent as Basic authorization (unless `headers` or `sign` authorize already) and never
    shown. Any secret value is scrubbed from error messages.
    """
    secrets = (*secrets, *url_secrets(url))
    shown = origin(url)
    if not url.lower().startswith(("http://", "https://")):
        raise RemoteError(provider, f"the base URL {shown or '(empty)'} does not start with http:// or https://")
    if "?" in url or "#" in url:  # the API's path, added after the base, went into its query or was cut off
        raise RemoteError(provider, f"the base URL {shown} has a query or a fragment ('?', '#'); give the base alone")
    url, basic = _basic_auth(url)
    data = json.dumps(body).encode()
    attempt = 0
    while True:
        hdrs = {"content-type": "application/json", "accept": "application/json", **headers}
        if basic and sign is None and not any(k.lower() == "authorization" for k in hdrs):
            hdrs["authorization"] = basic
        wait = None
        with budget.call(provider, policy.timeout):  # one call of the request's budget, one slot
            deadline = math.inf
            try:
                if sign is not None:
                    hdrs = sign("POST", url, hdrs, data)
                req = urllib.request.Request(url, data=data, headers=hdrs, method="POST")
                deadline = time.monotonic() + policy.timeout
                error, raw = _exchange(req, policy.timeout, deadline)
                if error is None:
                    if len(raw) > MAX_BODY:
                        raise RemoteError(provider, f"the API answered with more than {MAX_BODY // 2**20} MB; refused")
                    try:
                        return json.loads(raw)
                    except (ValueError, RecursionError):  # not JSON, not UTF-8, too deep, 4300+ digit ints
                        raise RemoteError(provider, "the API answered with a body that is not JSON") from None
                status = error.code
                if 300 <= status < 400:
                    location = error.headers.get("location") if error.headers else None
                    # (a Location is the provider's text: scrubbed as any, the key in a host name too)
                    where = f" to {excerpt(origin(location), secrets)}" if location and "://" in location else ""
                    raise RemoteError(
                        provider,
                        f"HTTP {status}: the API redirected{where}; redirects are not followed "
                        f"(is the base URL {shown} right?)",
                        status,
                    )
                text = "the error body could not be read" if raw is None else excerpt(_error_text(raw), secrets)
                if status not in RETRY_STATUSES or attempt >= policy.retries:
                    hint = " (check the API key)" if status in (401, 403) else ""
                    raise RemoteError(provider, f"HTTP {status}: {text}{hint}", status)
                wait = _retry_after(error.headers)
                if wait is not None and wait > policy.max_retry_after:
                    # more than a run waits on (a quota's reset, `retry-after: 86400`): the
                    # ordinary backoff, as the providers' SDKs do, and the retries then say so
                    wait = None
            except (ValueError, http.client.InvalidURL) as e:  # a bad port or host, a header it cannot encode
                # urllib's own words quote the URL: only the kind of error is shown
                raise RemoteError(provider, f"the request to {shown} could not be sent ({type(e).__name__})") from None
            except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets, bad answers
                if attempt >= policy.retries:
                    late = time.monotonic() >= deadline  # (_Deadline shut the socket)
                    reason = "timed out" if late else _reason(e, secrets)
                    raise RemoteError(provider, f"cannot reach {shown}: {reason}") from None
        attempt += 1
        if wait is None:
            wait = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1)) * (0.75 + random.random() / 2)
        time.sleep(wait)


def _reason(e: BaseException, secrets) -> str:
    """Why a connection failed, in the socket's words (scrubbed); urllib's own text reasons
    (which quote the URL) only by kind."""
    reason = getattr(e, "reason", None) or e
    if isinstance(reason, str):
        return type(e).__name__
    if isinstance(reason, TimeoutError):
        return "timed out"
    return excerpt(str(reason) or type(reason).__name__, secrets)


def describe(data, secrets=(), limit: int = 120) -> str:
    """A short, scrubbed rendering of a decoded answer, for an error that says what came back."""
    try:
        text = json.dumps(data)[: 4 * limit + 4096]
    except (TypeError, ValueError, RecursionError):
        text = type(data).__name__
    return excerpt(text, secrets, limit)


def count_field(provider: str, data, key: str, secrets=()) -> int:
    """The token count under `key` of a decoded answer: a non-negative int below 2**63 (bools,
    floats and strings refused), else a RemoteError naming the provider. Whether it fits the item
    it counts is plausible()'s check (RemoteStrategy applies it to every answer)."""
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise RemoteError(provider, f"the answer has no usable {key!r} (got {describe(data, secrets)})")
    if not 0 <= value <= MAX_COUNT:
        raise RemoteError(provider, f"implausible token count {key!r} in the answer (not in 0 .. 2**63-1)")
    return value


def path_segment(value: str) -> str:
    """`value` (a model id) as exactly one URL path segment, percent-encoded as botocore encodes a
    URI label: only A-Z a-z 0-9 - . _ ~ stay as they are, so no '/', '?', '#', ':' or '%' in it can
    end the segment or start a query or fragment. An empty or dot segment names no resource of
    its own (a server would resolve `..` against the path): refused."""
    if value in ("", ".", ".."):
        raise UsageError(f"model id {value!r} cannot name a resource in a URL path")
    return quote(value, safe="")


SLACK = 1000  # tokens a count may exceed its text's UTF-8 bytes by (special tokens, chat framing)


def plausible(provider: str, item, n: int) -> int:
    """`n`, the provider's count for `item` (a text, or a ChatRequest), if some tokenizer could
    give it: at least 1 for a non-empty item, at most its UTF-8 bytes (a chat's: its JSON) plus
    SLACK. Else a RemoteError, so the run counts offline (labelled) instead of taking it as exact:
    a server that answers 0 for everything is broken, not exact."""
    if isinstance(item, str):
        size, empty, what = len(item.encode("utf-8", "surrogatepass")), not item, "text"
    else:
        messages, tools = getattr(item, "messages", ()), getattr(item, "tools", ())
        data = json.dumps([list(messages), list(tools)], ensure_ascii=False, default=str)
        size, empty, what = len(data.encode("utf-8", "surrogatepass")), not messages, "chat"
    if n < (0 if empty else 1) or n > size + SLACK:
        raise RemoteError(
            provider, f"implausible answer: {n} tokens for a {size}-byte {what}; not taken as an exact count"
        )
    return n
