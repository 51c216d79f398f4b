"""Keep credentials out of everything a user sees: URLs with their userinfo and secret query
parameters masked, and a provider's text scrubbed of the keys it was sent before it is cut short.

`mask_secrets` is the one masker of known secrets (the CLI's messages, the server's error bodies
and every provider's text go through it). A provider's answer is hostile text: it may echo the
key whole or cut, in another case, percent-encoded, JSON- or HTML-escaped (a character at a time,
even mixed), base64- or hex-encoded (alone or inside `user:key`, as Basic auth sends it), so it
masks every run of 8+ characters shared with a secret in any of those forms, compared
case-insensitively after decoding the escapes. `scrub` adds credential-looking `name: value` /
`name=value` pairs, key shapes and URLs, and only then is the text truncated (`excerpt`), so a cut
never leaves most of a key showing.
"""

from __future__ import annotations

import base64
import functools
import re
from urllib.parse import unquote

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
_KEY_SHAPES = re.compile(r"(?i)\b(?:sk-[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{20,}|(?:AKIA|ASIA)[0-9A-Z]{12,})")
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
    """The forms of `secret` a provider could echo that decoding an escape does not undo, as
    mask_secrets compares them (lower case): the secret, as is and with its own escapes decoded
    (a URL password's `%40`), its UTF-8 bytes one character each (what
    a percent-encoded non-ASCII character decodes to, a byte at a time), `+` for a space, its hex,
    and its base64 (standard and URL-safe) at each of the three alignments it could have inside a
    longer encoded text such as `user:key` (from the first group made of the secret's bytes alone;
    the last, short group is the secret's too when it ends the encoded text, as in Basic auth)."""
    raw = secret.encode("utf-8", "surrogatepass")
    forms = {secret, _decode(secret)[0], raw.decode("latin-1"), secret.replace(" ", "+"), raw.hex()}
    for pad in range(3):
        for enc in (base64.b64encode, base64.urlsafe_b64encode):
            text = enc(b"\0" * pad + raw).decode().rstrip("=")
            start = 4 if pad else 0  # the first group mixes in bytes that are not the secret's
            if len(text) - start >= MIN_RUN:  # a shorter piece would mask ordinary words
                forms.add(text[start:])  # to the end: a last short group is the secret's too, at the end
    return {_fold(f) for f in forms if f}


def mask_secrets(text: str, secrets=()) -> str:
    """`text` with every known secret masked (MASK), whole or in part: any run of MIN_RUN+
    characters (a shorter secret: the whole of it) shared with one of its forms (secret_forms),
    compared case-insensitively after each escape in `text` is decoded (`%2F`, `\\u002f`,
    `\\x2f`, `&#47;`, `&#x2f;`, `\\/`). The one masker of known secrets: the text around them is
    left as it was."""
    secrets = tuple(sorted({s for s in secrets if s}))
    if not secrets or not text:
        return text
    decoded, starts = _decode(text)
    hit = [False] * len(decoded)
    for n, wanted in _grams(secrets):
        for i in range(len(decoded) - n + 1):
            if decoded[i : i + n] in wanted:
                hit[i : i + n] = [True] * n
    if not any(hit):
        return text
    out, i = [], 0
    while i < len(decoded):
        j = i
        while j < len(decoded) and hit[j] == hit[i]:
            j += 1
        out.append(MASK if hit[i] else text[starts[i] : starts[j]])
        i = j
    return "".join(out)


@functools.lru_cache(maxsize=64)
def _grams(secrets: tuple[str, ...]) -> tuple[tuple[int, frozenset[str]], ...]:
    """(run length, the runs of that length) of the secrets' forms: MIN_RUN, or a shorter form's
    whole length. Cached: a server masks every error body with the same secrets."""
    grams: dict[int, set[str]] = {}
    for secret in secrets:
        for form in secret_forms(secret):
            n = min(MIN_RUN, len(form))
            grams.setdefault(n, set()).update(form[i : i + n] for i in range(len(form) - n + 1))
    return tuple((n, frozenset(g)) for n, g in grams.items())


# An escaped character: %XX, \uXXXX, \xXX, &#N; / &#xX;, or a backslash-escaped / " ' \.
_ESCAPE = re.compile(
    r"%([0-9A-Fa-f]{2})|\\u([0-9A-Fa-f]{4})|\\x([0-9A-Fa-f]{2})|&#[xX]([0-9A-Fa-f]{1,6});|&#([0-9]{1,7});|\\([/\"'\\])"
)


def _decode(text: str) -> tuple[str, list[int]]:
    """`text` with each escape decoded to its character, case-folded (_fold), and where each
    character of the result starts in `text` (one more at the end: its length)."""
    chars: list[str] = []
    starts: list[int] = []
    i, n = 0, len(text)
    while i < n:
        m = _ESCAPE.match(text, i) if text[i] in "%\\&" else None
        if m is None:
            c, j = text[i], i + 1
        else:
            hexa = m.group(1) or m.group(2) or m.group(3) or m.group(4)
            code = int(hexa, 16) if hexa else int(m.group(5)) if m.group(5) else None
            c = m.group(6) if code is None else chr(min(code, 0x10FFFF))
            j = m.end()
        chars.append(c)
        starts.append(i)
        i = j
    starts.append(n)
    return _fold("".join(chars)), starts


def _fold(text: str) -> str:
    """Lower case, one character for one (a character whose lower case is longer stays)."""
    low = text.lower()
    return low if len(low) == len(text) else "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def scrub(text: str, secrets=()) -> str:
    """`text` with every secret masked: whole or in part, in any case or encoding (mask_secrets),
    credential-looking pairs, known key shapes, and URLs. Only the first SCAN_LIMIT characters are
    kept; callers cut shorter afterwards."""
    text = mask_secrets(text[:SCAN_LIMIT], secrets)
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{MASK}", text)
    return _KEY_SHAPES.sub(MASK, text)


def excerpt(text: str, secrets=(), limit: int = 200) -> str:
    """Scrub first, then cut to `limit` characters: what of a provider's text may be shown."""
    text = scrub(text, secrets).strip()
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."
