"""A small JSON-over-HTTP client for the count APIs: timeouts, retries with backoff that honour
`retry-after-ms` / `retry-after` on 408/409/429/5xx, and errors that never carry a credential."""

from __future__ import annotations

import email.utils
import json
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from ..errors import RemoteError

RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504, 529}


@dataclass
class HttpPolicy:
    timeout: float = 30.0
    retries: int = 2
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0


def _retry_after(headers) -> float | None:
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _error_text(provider: str, body: bytes) -> str:
    """The provider's own error message, from any of the shapes the APIs use."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body[:200].decode("utf-8", "replace").strip() or "no error body"
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            kind = err.get("type") or err.get("status") or ""
            msg = err.get("message") or data.get("message") or ""
            return f"{kind}: {msg}".strip(": ") or json.dumps(data)[:200]
        if isinstance(err, str):
            return err
        if "message" in data:
            return str(data["message"])
    return json.dumps(data)[:200]


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

    `sign(method, url, headers, data)` may add authentication headers (SigV4). Any secret
    value is scrubbed from error messages.
    """
    data = json.dumps(body).encode()
    attempt = 0
    while True:
        hdrs = {"content-type": "application/json", "accept": "application/json", **headers}
        if sign is not None:
            hdrs = sign("POST", url, hdrs, data)
        req = urllib.request.Request(url, data=data, headers=hdrs, method="POST")
        wait = None
        try:
            with urllib.request.urlopen(req, timeout=policy.timeout) as resp:
                raw = resp.read()
            try:
                return json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise RemoteError(provider, "the API answered with a body that is not JSON") from None
        except urllib.error.HTTPError as e:
            status = e.code
            text = _scrub(_error_text(provider, e.read() or b""), secrets)
            if status not in RETRY_STATUSES or attempt >= policy.retries:
                hint = " (check the API key)" if status in (401, 403) else ""
                raise RemoteError(provider, f"HTTP {status}: {text}{hint}", status) from None
            wait = _retry_after(e.headers)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            if attempt >= policy.retries:
                raise RemoteError(provider, f"cannot reach {_origin(url)}: {_scrub(str(reason), secrets)}") from None
        attempt += 1
        if wait is None:
            wait = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1)) * (0.75 + random.random() / 2)
        time.sleep(min(wait, policy.max_retry_after))


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
