"""Issue 23, item 1: a model id reaches a provider's URL only as one percent-encoded path segment,
and ids that could climb out of it (`/..`, `?`, `#`, `\\`, control characters, over 256 characters)
are refused before any request: exit 2 from the console script, 422 from a real `omnitok serve`.

Every provider (Anthropic, Gemini, Bedrock, vLLM, TGI, llama.cpp) is pointed at a recording server
on 127.0.0.1 that answers a count only on the documented template paths and answers 599 to any
other path, recording it as a violation."""

from __future__ import annotations

import json
import re

import pytest

from tests.console import omnitok
from tests.mock_providers import ANSWER, Recorder
from tests.serve_server import Server

httpx = pytest.importorskip("httpx")
botocore = pytest.importorskip("botocore")

KEY = "sk-urls-SECRET-0123456789"
AWS = {"AWS_ACCESS_KEY_ID": "AKIDURLS", "AWS_SECRET_ACCESS_KEY": "aws-urls-SECRET", "AWS_REGION": "us-west-2"}
BEDROCK_ID = "anthropic.claude-3-5-sonnet-20241022-v2:0"
GEMINI_256 = "gemini-" + "a" * 249  # 256 characters: the longest id accepted

# The documented templates (../shared/reference/provider-apis.md), filled with the legitimate ids
# the tests send: the only paths the recorder answers.
TEMPLATES = {
    "anthropic": "/v1/messages/count_tokens",
    "gemini": "/v1beta/models/gemini-2.5-flash:countTokens",
    "gemini-256": f"/v1beta/models/{GEMINI_256}:countTokens",
    "bedrock": "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/count-tokens",
    "vllm": "/tokenize",
    "tgi": "/tgi/tokenize",
    "llamacpp": "/llamacpp/tokenize",
}


class StrictRecorder(Recorder):
    """Records every request; answers a count on a template path, 599 (and a violation) on any other."""

    def __init__(self):
        self.violations: list[str] = []
        super().__init__(answer=self._answer)

    def _answer(self, method: str, path: str) -> tuple[int, object]:
        if method != "POST" or path not in TEMPLATES.values():
            self.violations.append(f"{method} {path}")
            return 599, {"error": {"message": "not a documented path"}}
        return 200, (list(ANSWER["tokens"]) if path == TEMPLATES["tgi"] else ANSWER)

    def clear(self):
        self.requests.clear()
        self.violations.clear()


@pytest.fixture(scope="module")
def recorder():
    r = StrictRecorder()
    yield r
    r.close()


@pytest.fixture
def rec(recorder):
    recorder.clear()
    yield recorder
    assert recorder.violations == []


def provider_env(url: str, kind: str = "vllm") -> dict:
    """Every provider's endpoint at the recorder; `kind`: the self-hosted server for HF ids."""
    env = {
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": url,
        "GOOGLE_API_KEY": KEY,
        "GOOGLE_GEMINI_BASE_URL": url,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url,
        **AWS,
    }
    if kind == "vllm":
        env["VLLM_ENDPOINT"] = url + "/v1"
    else:
        env.update({"VLLM_ENDPOINT": "", "OMNITOK_TOKENIZE_URL": f"{url}/{kind}", "OMNITOK_TOKENIZE_KIND": kind})
    return env


# (provider, id): ids that, unchecked, resolve to that provider's family and reach it.
HOSTILE = [
    ("gemini", "gemini-x/../../../v1beta/tunedModels?pageSize=1000#"),
    ("gemini", "gemini-x/..%2F..%2Fv1beta%2FtunedModels"),
    ("gemini", "gemini-2.5-flash\\..\\tunedModels"),
    ("gemini", "gemini-2.5-flash#frag"),
    ("gemini", "gemini-2.5-flash\x1b]0;pwned\x07"),
    ("gemini", "gemini-" + "a" * 250),  # 257 characters
    ("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0/../../model/x/invoke?a=b"),
    ("bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0?x=1"),
    ("bedrock", "anthropic.claude-3-5-sonnet:..:x"),
    ("bedrock", "anthropic.claude-3-5-sonnet\u202e"),
    ("anthropic", "claude-sonnet-4-5\r\nX-Injected: 1"),
    ("anthropic", "claude-sonnet-4-5/../../v1/models?limit=1000"),
    ("vllm", "org/name/../../admin"),
    ("vllm", "hf:.."),
    ("vllm", "org/name?x=1"),
    ("tgi", "org/name\\..\\x"),
    ("llamacpp", "meta-llama/Llama-3.1-8B#x"),
]


@pytest.mark.parametrize("provider,model", HOSTILE, ids=[f"{p}-{i}" for i, (p, _) in enumerate(HOSTILE)])
def test_hostile_ids_exit_2_no_request(rec, provider, model):
    kind = provider if provider in ("tgi", "llamacpp") else "vllm"
    r = omnitok("count", "--online", "-m", model, stdin=b"hello world", env=provider_env(rec.url, kind))
    assert (r.code, r.out) == (2, b""), r.err
    lines = r.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("omnitok: error: model id "), r.err
    assert "\x1b" not in r.err and "\r" not in r.err and "\u202e" not in r.err
    assert rec.requests == []


# (provider, id, the recorder's path, the strategy the row names)
LEGIT = [
    ("anthropic", "claude-3-5-sonnet-20241022", "anthropic", "anthropic-api"),
    ("gemini", "gemini-2.5-flash", "gemini", "gemini-api"),
    ("gemini", GEMINI_256, "gemini-256", "gemini-api"),
    ("bedrock", BEDROCK_ID, "bedrock", "bedrock-api"),
    ("bedrock", "us." + BEDROCK_ID, "bedrock", "bedrock-api"),  # cross-region prefix: the bare id is sent
    ("vllm", "meta-llama/Llama-3.1-8B-Instruct", "vllm", "vllm-api"),
    ("tgi", "meta-llama/Llama-3.1-8B-Instruct", "tgi", "self-hosted-api"),
    ("llamacpp", "hf:meta-llama/Llama-3.1-8B-Instruct", "llamacpp", "self-hosted-api"),
]


@pytest.mark.parametrize("provider,model,path,strategy", LEGIT, ids=[f"{p}-{i}" for i, (p, *_) in enumerate(LEGIT)])
def test_legitimate_ids_reach_exactly_the_template(rec, tmp_path, provider, model, path, strategy):
    kind = provider if provider in ("tgi", "llamacpp") else "vllm"
    env = {**provider_env(rec.url, kind), "OMNITOK_CACHE_DIR": str(tmp_path / "cache")}
    r = omnitok("count", "--online", "-m", model, stdin=b'{"text": "hello world"}\n', env=env)
    assert r.code == 0, r.err
    row = json.loads(r.out)
    assert (row["strategy"], row["exact"]) == (strategy, True)
    assert rec.requests and {q["path"] for q in rec.requests} == {TEMPLATES[path]}
    if provider in ("anthropic", "vllm"):  # the id goes in the body (the path is fixed)
        assert {json.loads(q["raw"])["model"] for q in rec.requests} == {model}


def test_bedrock_path_is_botocores_and_the_signature_holds(rec, tmp_path):
    """The path sent is the one botocore's own serializer makes for CountTokens, and the SigV4
    signature, recomputed from the request as the server received it, matches: what AWS checks."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    from botocore.serialize import create_serializer
    from botocore.session import get_session

    op = get_session().get_service_model("bedrock-runtime").operation_model("CountTokens")
    boto = create_serializer("rest-json").serialize_to_request(
        {"modelId": BEDROCK_ID, "input": {"converse": {"messages": []}}}, op
    )
    assert boto["url_path"] == TEMPLATES["bedrock"]

    env = {**provider_env(rec.url), "OMNITOK_CACHE_DIR": str(tmp_path / "cache")}
    chat = {"messages": [{"role": "user", "content": "hello there"}]}
    r = omnitok("count", "--online", "-m", BEDROCK_ID, stdin=json.dumps(chat).encode(), env=env)
    assert r.code == 0, r.err
    (q,) = rec.requests
    assert q["path"] == boto["url_path"]
    headers = {k.lower(): v for k, v in q["headers"].items()}
    m = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^,]+), SignedHeaders=([^,]+), Signature=([0-9a-f]{64})",
        headers["authorization"],
    )
    assert m and m.group(1).startswith(AWS["AWS_ACCESS_KEY_ID"] + "/") and "/us-west-2/bedrock/" in m.group(1)
    signed = m.group(2).split(";")
    assert "host" in signed and "x-amz-date" in signed
    req = AWSRequest(method="POST", url=rec.url + q["path"], data=q["raw"], headers={h: headers[h] for h in signed})
    req.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(Credentials(AWS["AWS_ACCESS_KEY_ID"], AWS["AWS_SECRET_ACCESS_KEY"]), "bedrock", "us-west-2")
    canonical = auth.canonical_request(req)
    assert canonical.splitlines()[1] == "/model/anthropic.claude-3-5-sonnet-20241022-v2%253A0/count-tokens"
    assert auth.signature(auth.string_to_sign(req, canonical), req) == m.group(3)


# --- over REST: a real `omnitok serve` with online counting ---------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory, recorder):
    # Count routes only: one CPU worker (/validate's and /compress's), not one a core.
    srv = Server(tmp_path_factory.mktemp("urls"), "--cpu-workers", "1", env=provider_env(recorder.url))
    yield srv
    srv.stop()


REST_HOSTILE = [m for p, m in HOSTILE if p not in ("tgi", "llamacpp")]


@pytest.mark.parametrize("model", REST_HOSTILE, ids=[str(i) for i in range(len(REST_HOSTILE))])
def test_hostile_ids_422_over_rest(server, rec, model):
    r = httpx.post(f"{server.url}/count-tokens", json={"text": "hello world", "model_id": model, "online": True})
    assert r.status_code == 422, r.text[:300]
    error = r.json()["error"]
    assert error["code"] == "invalid_input" and error["message"].startswith("model id ")
    assert "\n" not in error["message"] and "\x1b" not in error["message"]
    r = httpx.post(f"{server.url}/count-tokens/batch", json={"texts": ["a", "b"], "model_id": model, "online": True})
    assert r.status_code == 422, r.text[:300]
    assert rec.requests == []


@pytest.mark.parametrize(
    "model,path", [(BEDROCK_ID, "bedrock"), ("gemini-2.5-flash", "gemini"), (GEMINI_256, "gemini-256")]
)
def test_legitimate_ids_over_rest(server, rec, model, path):
    r = httpx.post(f"{server.url}/count-tokens", json={"text": f"rest {path} text", "model_id": model, "online": True})
    assert r.status_code == 200, r.text[:300]
    assert r.json()["is_exact"] is True
    assert {q["path"] for q in rec.requests} == {TEMPLATES[path]}
