"""Keep credentials out of everything a user sees: URLs with their userinfo and secret query
parameters masked, and a provider's text scrubbed of the keys it was sent before it is cut short.

A provider's answer is hostile text: it may echo the key whole, URL-encoded, base64-encoded or
already cut by the provider, so `scrub` masks every run of 8+ characters shared with a secret
(in any of those forms), credential-looking `name: value` / `name=value` pairs and any URL in it,
and only then is the text truncated (`excerpt`), so a cut never leaves most of a key showing.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
MIN_RUN = 8  # a shared run this long is treated as a piece of the secret
SCAN_LIMIT = 8192  # characters of a provider's text that are scrubbed; the rest is never shown

_SECRET_NAMES = (
    r"x-goog-api-key|x-api-key|proxy-authorization|authorization|x-amz-security-token|x-amz-credential|"
    r"x-amz-signature|aws_secret_access_key|aws_access_key_id|aws_session_token|client_secret|access_token|"
    r"refresh_token|id_token|api[_-]?key|apikey|password|passwd|secret|signature|credential|token|key|sig"
)
# `name: value`, `name=value`, `"name": "value"`; an auth scheme word before the value is kept.
_PAIR = re.compile(
    rf"(?i)(?<![\w-])({_SECRET_NAMES})(\\?[\"']?\s*[:=]\s*\\?[\"']?)"
    r"((?:bearer|basic|token|aws4-hmac-sha256)\s+)?([^\s\"'&,;<>}\]\\]+)"
)
# Key shapes of the providers omnitok talks to, whoever's key they are.
_KEY_SHAPES = re.compile(r"\b(?:sk-[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{20,}|(?:AKIA|ASIA)[0-9A-Z]{12,})")
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.\-]*://[^\s\"'<>]+")
_PARAM = re.compile(rf"(?i)([?&#;](?:{_SECRET_NAMES}|x-amz-[a-z\-]+|code|auth)=)[^&#\s]*")


def split_userinfo(url: str, strict: bool = False) -> tuple[str, str | None]:
    """(`url` without its userinfo, the userinfo or None). Works on text, not on a parse, so a
    malformed URL (one urlsplit refuses, or one with no scheme) is split too; unless `strict`
    (RFC 3986, what a request goes to), a password with an unescaped `/`, `?` or `#` is taken up
    to its `@`, for display errs on the side of masking."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    else:
        scheme += sep
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    if "@" in authority:
        at = authority.rfind("@")
    elif not strict and ":" in authority and "@" in rest and not re.search(r"\s", rest[: rest.find("@")]):
        at = rest.find("@")  # user:pa/ss@host: the password ran past the authority
    else:
        return url, None
    return scheme + rest[at + 1 :], rest[:at]


def redact_url(url: str, keep_user: bool = False) -> str:
    """`url` fit to print: userinfo (`user:password@`) and secret query parameters masked. With
    `keep_user`, a user name before a password stays readable (`redis://user:***@host`, for an
    L3 URL whose ACL user helps a reader); userinfo without a password (a bare token) is masked
    whole either way."""
    if not isinstance(url, str):
        return MASK
    bare, info = split_userinfo(url)
    if info is not None:
        user, colon, _ = info.partition(":")
        shown = f"{user}:{MASK}" if keep_user and colon and not any(c in user for c in "/?#") else MASK
        scheme, sep, rest = bare.partition("://")
        bare = f"{scheme}{sep}{shown}@{rest}" if sep else f"{shown}@{bare}"
    return _PARAM.sub(rf"\1{MASK}", bare)


def url_secrets(url: str) -> tuple[str, ...]:
    """The userinfo of a URL (user:password@), which is as secret as a key."""
    info = split_userinfo(url)[1]
    if not info:
        return ()
    user, _, password = info.partition(":")
    found = {info, password, unquote(password)} | ({user, unquote(user)} if len(user) >= 8 else set())
    return tuple(s for s in found if len(s) >= 3)  # a short user name is not worth masking everywhere


def origin(url: str) -> str:
    """scheme://host[:port] of a URL, with any userinfo masked."""
    safe = redact_url(url)
    scheme, sep, rest = safe.partition("://")
    if not sep:
        return re.split(r"[/?#]", safe, maxsplit=1)[0]
    return scheme + sep + re.split(r"[/?#]", rest, maxsplit=1)[0]


def secret_forms(secret: str) -> set[str]:
    """The ways a provider could echo `secret`: as is, URL-encoded, JSON-escaped, and the base64
    of it at each of the three alignments it could have inside a longer encoded text (only the
    characters that depend on the secret alone)."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), secret.replace("/", "\\/")}
    raw = secret.encode()
    for pad in range(3):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            text = enc(b"\0" * pad + raw).decode().rstrip("=")
            start = 4 if pad else 0  # the first group mixes in bytes that are not the secret's
            whole = (pad + len(raw)) // 3 * 4  # groups made only of the secret's bytes
            forms.add(text[start:whole])
    return {f for f in forms if f}


def scrub(text: str, secrets=()) -> str:
    """`text` with every secret masked: whole or in part (any run of 8+ characters shared with a
    secret or one of its encoded forms), credential-looking pairs, known key shapes, and URLs.
    Only the first SCAN_LIMIT characters are kept; callers cut shorter afterwards."""
    text = text[:SCAN_LIMIT]
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        for form in sorted(secret_forms(secret), key=len, reverse=True):
            text = text.replace(form, MASK)
    text = _mask_runs(text, [s for s in secrets if s])
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{MASK}", text)
    return _KEY_SHAPES.sub(MASK, text)


def excerpt(text: str, secrets=(), limit: int = 200) -> str:
    """Scrub first, then cut to `limit` characters: what of a provider's text may be shown."""
    text = scrub(text, secrets).strip()
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _mask_runs(text: str, secrets: list[str]) -> str:
    """Mask every run of MIN_RUN+ characters that also occurs in a secret (or an encoded form):
    what is left of a key a provider cut, or echoed with a few characters changed."""
    grams: set[str] = set()
    for secret in secrets:
        for form in secret_forms(secret):
            grams.update(form[i : i + MIN_RUN] for i in range(len(form) - MIN_RUN + 1))
    if not grams or len(text) < MIN_RUN:
        return text
    hit = [False] * len(text)
    for i in range(len(text) - MIN_RUN + 1):
        if text[i : i + MIN_RUN] in grams:
            hit[i : i + MIN_RUN] = [True] * MIN_RUN
    if not any(hit):
        return text
    out, i = [], 0
    while i < len(text):
        if hit[i]:
            while i < len(text) and hit[i]:
                i += 1
            out.append(MASK)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
