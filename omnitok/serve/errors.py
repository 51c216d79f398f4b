"""Errors as JSON, `{"error": {"code", "message"[, "hint"]}}`, with the status each kind gets:
422 for bad input (malformed JSON, wrong types, an unknown model, a bad record), 413 too large,
401 unauthorized, 503 when what the request needs is unavailable (an online provider under
strict, a tokenizer file), 504 past the request timeout, 500 for anything else, without details.
Messages never carry a provider key or the server's token (known secrets are masked) nor a file
path (a library message naming a tokenizer file or the cache's database says `<path>` instead: the
server's log, not its clients, may know how its disk is laid out)."""

from __future__ import annotations

import os
import re

from .. import errors

# Environment variables whose values are credentials (the providers' SDK names).
SECRET_ENV = (
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "VLLM_API_KEY",
    "OMNITOK_TOKENIZE_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "HF_TOKEN",
)
_extra_secrets: set[str] = set()

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
    504: "timeout",
}


class ServeError(Exception):
    """An error a handler raises with its status and code."""

    def __init__(self, status: int, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.hint = status, code, message, hint


def add_secret(value: str | None) -> None:
    if value:
        _extra_secrets.add(value)


def mask(text: str) -> str:
    """`text` with every known secret (provider keys in the environment, the bearer token) masked,
    whole or in part, in any case or encoding: omnitok.redact.mask_secrets, the one masker."""
    from ..redact import mask_secrets

    secrets = [os.environ.get(name) for name in SECRET_ENV] + list(_extra_secrets)
    return mask_secrets(text, [s for s in secrets if s and len(s) >= 6])


# A file path in a message: POSIX (absolute, ~/ or ./ ../), Windows (C:\\...) or a file: URL. A
# slash inside a word (`text/plain`, `org/model`) or a web URL's path is not one.
_PATH = re.compile(
    r"(?i:file:)//[^\s'\"<>]*"
    r"|(?<![\w.:/\\~\-])(?:~|\.{1,2})?/(?![/\s])[^\s,;:()\[\]{}'\"<>|*?]*"
    r"|(?<![\w])[A-Za-z]:\\[^\s,;:()'\"<>|*?]*"
)


def no_paths(text: str) -> str:
    """`text` with every file path in it replaced by `<path>`."""
    return _PATH.sub("<path>", text) if ("/" in text or "\\" in text) else text


def error_body(code: str, message: str, hint: str | None = None) -> dict:
    error = {"code": code, "message": no_paths(mask(message))}
    if hint:
        error["hint"] = no_paths(mask(hint))
    return {"error": error}


def classify(e: errors.OmnitokError) -> tuple[int, str]:
    """(HTTP status, code) for a library error."""
    from ..cache import CacheError

    if isinstance(e, errors.UnknownModelError):
        return 422, "unknown_model"
    if isinstance(e, errors.UnknownEncodingError):
        return 422, "unknown_encoding"
    if isinstance(e, errors.UpstreamLimitError):
        return 422, "upstream_limit"
    if isinstance(e, errors.NotExactError):
        return 503, "exact_unavailable"
    if isinstance(e, errors.RemoteError):
        return 503, "provider_unavailable"
    if isinstance(e, errors.AssetError):
        return 503, "asset_unavailable"
    if isinstance(e, CacheError):
        return 503, "cache_unavailable"
    if isinstance(e, errors.InputError):
        return 422, "bad_record"
    return 422, "invalid_input"


def validation_message(errs: list) -> tuple[str, str]:
    """(code, message) for pydantic's errors: where and what, never the input's value."""
    if any(err.get("type") == "json_invalid" for err in errs):
        err = next(err for err in errs if err.get("type") == "json_invalid")
        why = (err.get("ctx") or {}).get("error") or "invalid JSON"
        pos = err.get("loc", ("body", None))[-1]
        return "malformed_json", f"the body is not valid JSON ({why} at character {pos})"
    parts = []
    for err in errs[:10]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errs) - 10} more)" if len(errs) > 10 else ""
    return "invalid_request", "; ".join(parts) + more
