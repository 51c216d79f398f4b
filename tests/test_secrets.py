"""No credential ever shows: canary keys go to every online provider, each failure a hostile
server can produce is played by a real loopback server in the provider's wire format, and the
console script's stdout and stderr, the Python API's warnings and errors, and every file written
under a temporary OMNITOK_HOME and cache dir are searched for any 8-character piece of a key, of
its base64 form, or of the password in the base URL."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import secrets
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

import omnitok
from omnitok import notices
from omnitok.errors import EXIT_NOT_EXACT, NotExactError

from ._seed_homes import derived_template, seed
from .console import completed
from .console import omnitok as omnitok_cli
from .mock_providers import MockProviders, Recorder, credential, error_body, words

TEXT = "the quick brown fox jumps over the lazy dog"
HEX = secrets.token_hex(12)
PASSWORD = f"PW-CANARY-{HEX}"
USERINFO = f"canary:{PASSWORD}"


@dataclass(frozen=True)
class Case:
    route: str  # the mock's route
    provider: str  # the name in omnitok's messages
    model: str
    field: str | None  # the count field of the answer (None: a list of tokens)
    canaries: tuple[str, ...]

    def env(self, base: str) -> dict[str, str]:
        """The provider's variables, pointing at `base`."""
        if self.route == "anthropic":
            return {"ANTHROPIC_API_KEY": self.canaries[0], "ANTHROPIC_BASE_URL": base}
        if self.route == "gemini":
            return {"GOOGLE_API_KEY": self.canaries[0], "GOOGLE_GEMINI_BASE_URL": base}
        if self.route == "bedrock":
            return {
                "AWS_ACCESS_KEY_ID": self.canaries[0],
                "AWS_SECRET_ACCESS_KEY": self.canaries[1],
                "AWS_REGION": "us-west-2",
                "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": base,
            }
        if self.route == "vllm":
            return {"VLLM_ENDPOINT": base + "/v1", "VLLM_API_KEY": self.canaries[0]}
        return {
            "OMNITOK_TOKENIZE_URL": base + "/tgi",
            "OMNITOK_TOKENIZE_KIND": "tgi",
            "OMNITOK_TOKENIZE_API_KEY": self.canaries[0],
        }


CASES = [
    Case("anthropic", "anthropic", "claude-sonnet-4-5", "input_tokens", (f"sk-ant-CANARY-{HEX}",)),
    Case("gemini", "gemini", "gemini-2.5-flash", "totalTokens", (f"AIzaCANARY{HEX}",)),
    Case(
        "bedrock",
        "bedrock",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "inputTokens",
        (f"AKIACANARY{HEX[:10].upper()}", f"aws-CANARY-secret-{HEX}"),
    ),
    Case("vllm", "vllm", "vllm/acme/canary-model", "count", (f"vllm-CANARY-{HEX}",)),
    Case("tgi", "self-hosted", "acme/canary-model", None, (f"tgi-CANARY-{HEX}",)),
]
PROVIDER_VARS = (
    "ANTHROPIC_",
    "GOOGLE_",
    "GEMINI_",
    "AWS_",
    "VLLM_",
    "OMNITOK_",
    "L3_CACHE_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
)


@functools.cache
def needles(case: Case) -> frozenset[bytes]:
    """Every 8-character piece of the case's secrets and the password, as is and base64-encoded
    at each alignment it could have inside a longer encoded text."""
    out: set[bytes] = set()
    for secret in (*case.canaries, PASSWORD, USERINFO):
        forms = {secret}
        for pad in range(3):
            enc = base64.b64encode(b"\0" * pad + secret.encode()).decode()
            forms.add(enc[4 if pad else 0 : (pad + len(secret)) // 3 * 4])
        for form in forms:
            out.update(form[i : i + 8].encode() for i in range(len(form) - 7))
    return frozenset(out)


# A large blob (a derived vocabulary file, the cache's bloom filter: 3-6 MB, ~0.5 s of CPU each to
# search with `in` for a case's ~200 needles) is searched for a needle once a test process, by its
# sha256 (the same bytes hold the same needles; the homes hold the same such files, the cases
# share the password's needles), and all at once (windows_holding).
_SEARCHED: dict[bytes, dict[bytes, bool]] = {}
_LARGE = 1 << 20


def windows_holding(blob: bytes, wanted: set[bytes]) -> set[bytes]:
    """The 8-byte strings of `wanted` that occur in `blob`: every 8-byte window of the blob (at
    offsets k, k + 8, ... for k in 0..7) read as a 64-bit integer and looked up among theirs."""
    import numpy as np

    assert all(len(n) == 8 for n in wanted)
    keys = np.array(sorted({int.from_bytes(n, "little") for n in wanted}), dtype=np.uint64)
    hits: set[bytes] = set()
    for k in range(8):
        count = (len(blob) - k) // 8
        if count > 0 and len(keys):
            windows = np.frombuffer(blob, dtype="<u8", count=count, offset=k)
            at = np.minimum(np.searchsorted(keys, windows), len(keys) - 1)
            hits.update(int(x).to_bytes(8, "little") for x in np.unique(windows[keys[at] == windows]))
    return hits


def found_in(case: Case, blob: bytes) -> list[bytes]:
    """The case's needles that `blob` holds."""
    if len(blob) < _LARGE:
        return [n for n in needles(case) if n in blob]
    seen = _SEARCHED.setdefault(hashlib.sha256(blob).digest(), {})
    new = {n for n in needles(case) if n not in seen}
    held = windows_holding(blob, new)
    seen.update((n, n in held) for n in new)
    return [n for n in needles(case) if seen[n]]


def assert_clean(case: Case, blobs: dict[str, bytes]) -> None:
    found = [(name, n.decode()) for name, blob in blobs.items() for n in found_in(case, blob)]
    assert not found, f"secret pieces shown: {found[:5]}"


def written(*dirs: Path) -> dict[str, bytes]:
    """Every file under the directories (the L2 cache's sqlite and stats, assets, bundles)."""
    out = {}
    for d in dirs:
        for path in d.rglob("*"):
            if path.is_file():
                out[str(path)] = path.read_bytes()
    return out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- failure modes: (status in the message or None, expected words, answers to queue) -----------


def _pad(route: str, status: int) -> str:
    """Pad so the echoed key starts at character 190 of the text omnitok shows, where a cut at
    200 would fall inside it."""
    _, body = error_body(route, status, "")
    err = body.get("error", body) if isinstance(body, dict) else body
    kind = (err.get("type") or err.get("status") or "") if isinstance(err, dict) else ""
    return "x" * (190 - (len(kind) + 2 if kind else 0))


def _echo(case: Case, status: int):
    """An error body that echoes the credential the server received, the case's canaries (as a
    server logging its environment would), and the Authorization header (Basic from the URL)."""

    def body(request):
        heard = {k.lower(): v for k, v in request["headers"].items()}
        message = _pad(case.route, status) + " ".join(
            [credential(request), *case.canaries, heard.get("authorization", ""), PASSWORD, json.dumps(heard)]
        )
        return error_body(case.route, status, message)[1]

    return body


def _streamed(case: Case):
    def chunks():
        filler = (" ".join(case.canaries) + " ").encode() * 4096
        while True:  # until the client hangs up
            yield filler

    return chunks()


def mode_answers(mode: str, case: Case, recorder: Recorder) -> tuple[list[tuple], str]:
    """(answers to queue for the route, words the message must hold)."""
    if mode == "401-echo":
        headers, _ = error_body(case.route, 401, "")
        return [(401, headers, _echo(case, 401))], "HTTP 401"
    if mode == "500-echo":
        headers, _ = error_body(case.route, 500, "")
        return [(500, {**headers, "retry-after": "0"}, _echo(case, 500))] * 2, "HTTP 500"
    if mode == "302-away":
        path = {"vllm": "/tokenize", "tgi": "/tgi/tokenize"}.get(case.route, "/v1/messages/count_tokens")
        away = recorder.url.replace("http://", f"http://{USERINFO}@") + f"{path}?key={case.canaries[0]}"
        return [(302, {"location": away}, b"")], f"HTTP 302: the API redirected to http://***@127.0.0.1:{recorder.port}"
    if mode == "not-json-echo":
        body = f"<html>bad gateway {' '.join(case.canaries)} {PASSWORD}</html>".encode() + b"\xff\xfe"
        return [(200, {"content-type": "text/html"}, body)], "the API answered with a body that is not JSON"
    if mode == "huge":
        pad = (" ".join(case.canaries) + " ") * (9 * 2**20 // (len(" ".join(case.canaries)) + 1))
        body = {case.field: 5, "pad": pad} if case.field else [{"id": 1, "text": pad}]
        return [(200, {}, json.dumps(body).encode())], "the API answered with more than 8 MB"
    if mode == "endless":
        return [(200, {}, lambda request: _streamed(case))], "the API answered with more than 8 MB"
    if mode == "implausible":
        if case.field is None:
            return [(200, {}, {"tokens": case.canaries[0]})], "expected a list of tokens"
        return [(200, {}, {case.field: 10**30, "echo": case.canaries})], "implausible token count"
    if mode == "wrong-shape":
        if case.field is None:
            return [(200, {}, {"error": " ".join(case.canaries)})], "expected a list of tokens"
        return [(200, {}, {case.field: " ".join(case.canaries)})], f"the answer has no usable '{case.field}'"
    if mode == "timeout":
        return [(200, {}, {case.field or "x": 5}, 2.0)], "cannot reach http://***@127.0.0.1:{port}: timed out"
    raise AssertionError(mode)


MODES = [
    "401-echo",
    "500-echo",
    "302-away",
    "not-json-echo",
    "huge",
    "endless",
    "implausible",
    "wrong-shape",
    "timeout",
]
RETRIES = {"500-echo": "1"}  # the 500 is retried once (retry-after: 0), then reported


@pytest.fixture
def servers():
    mock, recorder = MockProviders(), Recorder()
    yield mock, recorder
    mock.close()
    recorder.close()


@pytest.fixture(scope="session")
def derived_home(tmp_path_factory):
    """A home whose assets/derived/ omnitok filled for o200k_base (the Claude models' offline
    estimate), once a test process (tests/_seed_homes.py)."""
    return derived_template(tmp_path_factory.mktemp("derived-home"))


@pytest.fixture
def home(tmp_path, monkeypatch, derived_home):
    """A clean environment: only this case's provider variables, omnitok's dirs under tmp_path
    (the API in this process and the console script in a child see the same). The home holds the
    derived vocabulary files a first count would write (none of these tests is about that
    derivation: ~0.3 s of CPU a home); they are searched for secrets as every file there is."""
    for name in list(os.environ):
        if name.startswith(PROVIDER_VARS):
            monkeypatch.delenv(name)
    dirs = {
        "OMNITOK_HOME": tmp_path / "home",
        "OMNITOK_CACHE_DIR": tmp_path / "cache",
        "OMNITOK_CONFIG": tmp_path / "config.toml",  # empty: the defaults
        "AWS_CONFIG_FILE": tmp_path / "aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": tmp_path / "aws-credentials",
    }
    for name, path in dirs.items():
        monkeypatch.setenv(name, str(path))
    (tmp_path / "config.toml").write_text("")
    seed(tmp_path / "home", derived_home)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def run_cli(*args: str, stdin: bytes) -> subprocess.CompletedProcess:
    """The console script (tests/console.py: a child forked from the pre-imported zygote, ~0.6 s
    of CPU less than an exec each) in this process's environment, as a CompletedProcess."""
    return completed(args, omnitok_cli(*args, stdin=stdin, timeout=120))


def api_count(case: Case, strict: bool, timeout: float, retries: int):
    """omnitok.count in this process: (result or None, the error's message or None, warnings)."""
    notices.reset()
    notices.set_handler(None)  # a library user's default (an in-process CLI run may have set one)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = omnitok.count(TEXT, model=case.model, online=True, strict=strict, timeout=timeout, retries=retries)
            error = None
        except NotExactError as e:
            result, error = None, e.message
    return result, error, [str(w.message) for w in caught]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.route for c in CASES])
def test_no_secret_in_any_failure(case, mode, servers, home, monkeypatch):
    mock, recorder = servers
    for name, value in case.env(mock.url.replace("http://", f"http://{USERINFO}@")).items():
        monkeypatch.setenv(name, value)
    answers, expect = mode_answers(mode, case, recorder)
    timeout, retries = ("0.5", "0") if mode == "timeout" else ("5", RETRIES.get(mode, "0"))
    prefix = f"{case.provider}: {expect.format(port=mock.port)}"

    # the console script: the failure warns once, the run finishes offline (exit 0)
    mock.fail(case.route, *answers)
    args = ("count", "--online", "-m", case.model, "--timeout", timeout, "--retries", retries, "--format", "json")
    r = run_cli(*args, stdin=TEXT.encode())
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    online = [line for line in err.splitlines() if line.startswith(f"omnitok: warning: {case.provider}: ")]
    assert len(online) == 1 and online[0].startswith(f"omnitok: warning: {prefix}"), err
    assert "counting the rest offline" in online[0] and "Traceback" not in err
    row = json.loads(r.stdout)
    assert row["exact"] is False and row["tokens"] > 0
    blobs = {"cli stdout": r.stdout, "cli stderr": r.stderr}

    # the Python API: a warning, then the strict error, each naming the provider and the status
    # (the console script's --strict exit code is checked once per provider, below)
    mock.fail(case.route, *answers)
    result, error, caught = api_count(case, False, float(timeout), int(retries))
    assert result is not None and result.exact is False and error is None
    assert [w for w in caught if w.startswith(prefix)], caught
    mock.fail(case.route, *answers)
    result, error, caught = api_count(case, True, float(timeout), int(retries))
    assert result is None and error.startswith(prefix), error
    blobs.update({"api warnings": "\n".join(caught).encode(), "api error": error.encode()})

    assert recorder.requests == []  # a redirect is never followed: nothing reached the other host
    assert_clean(case, {**blobs, **written(home)})


@pytest.mark.parametrize("case", CASES, ids=[c.route for c in CASES])
def test_no_secret_when_the_base_url_refuses(case, home, monkeypatch):
    port = closed_port()
    for name, value in case.env(f"http://{USERINFO}@127.0.0.1:{port}").items():
        monkeypatch.setenv(name, value)
    prefix = f"{case.provider}: cannot reach http://***@127.0.0.1:{port}"
    args = ("count", "--online", "-m", case.model, "--retries", "0", "--explain")
    r = run_cli(*args, stdin=TEXT.encode())
    assert r.returncode == 0 and f"omnitok: warning: {prefix}" in r.stderr.decode(), r.stderr.decode()
    assert f"source: http://***@127.0.0.1:{port}" in r.stderr.decode()  # --explain shows the URL masked
    strict = run_cli(*args, "--strict", stdin=TEXT.encode())  # no estimate may stand in: exit 5
    assert strict.returncode == EXIT_NOT_EXACT and f"omnitok: error: {prefix}" in strict.stderr.decode()
    result, error, caught = api_count(case, True, 5.0, 0)
    assert result is None and error.startswith(prefix)
    blobs = {"out": r.stdout, "err": r.stderr, "strict": strict.stdout + strict.stderr, "api": error.encode()}
    assert_clean(case, {**blobs, **written(home)})


@pytest.mark.parametrize("case", CASES, ids=[c.route for c in CASES])
def test_no_secret_in_what_a_successful_run_writes(case, home, monkeypatch):
    key = case.canaries[0]
    mock = MockProviders(api_key=key, aws_access_key=key)
    try:
        for name, value in case.env(mock.url.replace("http://", f"http://{USERINFO}@")).items():
            monkeypatch.setenv(name, value)
        rows = b"".join(json.dumps({"text": f"{TEXT} {i}"}).encode() + b"\n" for i in range(3))
        r = run_cli("count", "--online", "-m", case.model, "--explain", stdin=rows)
        assert r.returncode == 0, r.stderr.decode()
        counted = [json.loads(line) for line in r.stdout.splitlines()]
        special = 1 if case.route in ("vllm", "tgi") else 0  # the mock's BOS
        assert [(x["tokens"], x["exact"]) for x in counted] == [(words(TEXT) + 1 + special, True)] * 3
        assert list((home / "cache").rglob("*")), "the L2 cache wrote nothing to search"
        models = run_cli("models", case.model, "--online", "--json", stdin=b"")
        assert models.returncode == 0 and b"***@127.0.0.1" in models.stdout, models.stderr.decode()
        if case.route != "bedrock":  # a URL password goes as Basic auth where no key authorizes
            heard = [{k.lower(): v for k, v in q["headers"].items()} for q in mock.requests]
            assert all(h.get("authorization", "").startswith(("Basic ", "Bearer ")) for h in heard)
        blobs = {"out": r.stdout, "err": r.stderr, "models": models.stdout + models.stderr}
        assert_clean(case, {**blobs, **written(home)})
    finally:
        mock.close()


def test_a_dripping_answer_is_cut_at_the_timeout(servers, home, monkeypatch):
    """A server sending one byte at a time never lets a read time out; the request's deadline
    does."""
    mock, _ = servers
    case = CASES[0]
    for name, value in case.env(mock.url).items():
        monkeypatch.setenv(name, value)

    def drip(request):
        for _ in range(100):
            time.sleep(0.05)
            yield b" "

    mock.fail(case.route, (200, {}, drip))
    started = time.monotonic()
    result, error, _ = api_count(case, True, 0.5, 0)
    assert error.startswith("anthropic: cannot reach") and "timed out" in error
    assert time.monotonic() - started < 4  # the 0.5 s timeout, not the drip's 5 s


def test_scrub_masks_a_key_cut_by_the_provider_and_its_encodings():
    from urllib.parse import quote

    from omnitok.redact import excerpt, redact_url

    key = f"sk-ant-api03-{HEX}/+="
    b64 = base64.b64encode(b"user:" + key.encode()).decode()
    text = f"key {key[:14]}... url-encoded {quote(key, safe='')} base64 {b64} x-api-key: {HEX}"
    shown = excerpt("x" * 190 + key + " " + text, (key,), limit=400)
    assert key[:8] not in shown and quote(key, safe="")[8:16] not in shown and HEX[:8] not in shown
    core = b64[8 : (5 + len(key)) // 3 * 4]  # the characters that encode the key's bytes alone
    assert all(core[i : i + 8] not in shown for i in range(len(core) - 7))
    assert redact_url("http://u:p@ss@[::1") == "http://***@[::1"  # urlsplit refuses this one
    assert redact_url("https://h/x?api_key=abc&key=def&v=1") == "https://h/x?api_key=***&key=***&v=1"


def test_hostile_retry_hints_and_odd_urls(servers, home, monkeypatch):
    """A retry-after that is NaN or not a date is ignored (backoff instead), never a crash; a
    relative redirect is refused too; a base URL with no http(s) scheme is an error saying so."""
    mock, recorder = servers
    case = CASES[0]
    mock.api_key = case.canaries[0]
    for name, value in case.env(mock.url).items():
        monkeypatch.setenv(name, value)
    busy = error_body("anthropic", 429, "slow down")[1]
    mock.fail("anthropic", (429, {"retry-after": "nan"}, busy), (503, {"retry-after": "Mon, 99 Foo 20x"}, busy))
    r = omnitok.count(TEXT, model=case.model, online=True, strict=True, retries=2, cache="off")
    assert (r.tokens, r.strategy, r.exact) == (words(TEXT), "anthropic-api", True)

    mock.fail("anthropic", (307, {"location": "/v1/elsewhere"}, b""))
    result, error, _ = api_count(case, True, 5.0, 2)
    assert error.startswith("anthropic: HTTP 307: the API redirected; redirects are not followed")
    # 5: the model's framing measurement (claude_text), its retries after the 429 and the 503, the
    # text, then the 307 - refused, not retried, and nothing reaches the redirect target.
    assert mock.count("anthropic") == 5 and recorder.requests == []

    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"{USERINFO}@127.0.0.1:{mock.port}")
    result, error, _ = api_count(case, True, 5.0, 0)
    assert error.startswith(f"anthropic: the base URL ***@127.0.0.1:{mock.port} does not start with http://")
    assert_clean(case, {"error": error.encode()})
