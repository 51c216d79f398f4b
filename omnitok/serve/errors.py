"""Errors as JSON, `{"error": {"code", "message"[, "hint"]}}`, with the status each kind gets:
422 for bad input (malformed JSON, wrong types, an unknown model, a bad record), 413 too large,
401 unauthorized, 503 when what the request needs is unavailable (an online provider under
strict, a tokenizer file), 504 past the request timeout, 500 for anything else, without details.
Messages never carry a provider key or the server's token (known secrets are masked) nor a file
path (a library message naming a tokenizer file or the cache's database says `<path>` instead: the
server's log, not its clients, may know how its disk is laid out)."""

from __future__ import annotations

import functools
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


# The command line's options that are request fields under another name; every other option
# whose name, with `_` for `-`, is a request field is that field (--min-rouge-l: min_rouge_l).
_FIELD_OF_FLAG = {"model": "model_id", "m": "model_id", "prefer-online": "online"}
_FLAG = re.compile(r"(?<![\w-])--?([a-z][a-z0-9]*(?:-[a-z0-9]+)*)\b")


@functools.cache
def _request_fields() -> frozenset[str]:
    from . import schemas

    names: set[str] = set()
    for model in (schemas.CountRequest, schemas.BatchRequest, schemas.CompressRequest, schemas.ValidateRequest):
        names.update(model.model_fields)
    return frozenset(names)


def json_fields(text: str) -> str:
    """`text` (a library message, written for the command line) with each option that is a
    request field named as the field, in backquotes: `--budget` -> `budget`, `--min-rouge-l` ->
    `min_rouge_l`, `--model` -> `model_id`. Options the API has no field for stay as they are."""
    if "-" not in text:
        return text
    fields = _request_fields()

    def field(m: re.Match) -> str:
        flag = m.group(1)
        name = _FIELD_OF_FLAG.get(flag) or flag.replace("-", "_")
        if name in fields and (m.group(0).startswith("--") or flag in _FIELD_OF_FLAG):
            return f"`{name}`"
        return m.group(0)

    return _FLAG.sub(field, text)


def error_body(code: str, message: str, hint: str | None = None) -> dict:
    error = {"code": code, "message": no_paths(mask(json_fields(message)))}
    if hint:
        error["hint"] = no_paths(mask(json_fields(hint)))
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
        why = ((err.get("ctx") or {}).get("error") or "invalid JSON").removesuffix(" at")  # json's "... at"
        pos = err.get("loc", ("body", None))[-1]
        return "malformed_json", f"the body is not valid JSON ({why} at character {pos})"
    parts = []
    for err in errs[:10]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        msg = err.get("msg", "invalid")
        parts.append(f"{loc}: {msg}" if loc else msg)  # a rule between fields names them itself
    more = f" (and {len(errs) - 10} more)" if len(errs) > 10 else ""
    # A rule between fields the library also checks answers with the library's code (schemas._refuse).
    code = "invalid_input" if all(err.get("type") == "invalid_input" for err in errs) else "invalid_request"
    return code, "; ".join(parts) + more
