"""Online exact counts against a real loopback server speaking the providers' formats, and the
documented fallbacks when it fails."""

import json
from unittest.mock import ANY

import orjson
import pytest

import omnitok
from omnitok.errors import EXIT_NOT_EXACT

from .hf_assets import TOKENIZERS
from .mock_providers import API_KEY, MockProviders, words

TEXT = "the quick brown fox jumps over the lazy dog"


@pytest.fixture
def mock(monkeypatch):
    m = MockProviders()
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", m.url)
    monkeypatch.setenv("GOOGLE_API_KEY", API_KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", m.url)
    monkeypatch.setenv("VLLM_ENDPOINT", m.url + "/v1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-SECRET-value")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", m.url)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield m
    m.close()


def jsonl(*rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def test_anthropic_text_and_chat(cli, mock):
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    r = cli("count", "--online", "-m", "claude-sonnet-4-5", stdin=jsonl({"text": TEXT}, {"messages": chat}))
    assert r.code == 0, r.err
    rows = r.jsonl()
    assert [x["tokens"] for x in rows] == [words(TEXT), (2 + 3) + (2 + 3)]
    assert {(x["strategy"], x["exact"]) for x in rows} == {("anthropic-api", True)}
    sent = sorted((json.loads(q["raw"]) for q in mock.requests), key=lambda b: "system" in b)  # concurrent
    # the text goes between a fixed head and tail, after one measurement of the framing around a
    # one-token probe (omnitok.remote.claude_text); the chat goes as it is
    assert sorted(b["messages"][0]["content"] for b in sent[:2]) == ["x\na x", f"x\n{TEXT} x"]
    assert all(b == {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": ANY}]} for b in sent[:2])
    assert sent[2] == {"model": "claude-sonnet-4-5", "messages": [chat[1]], "system": "be brief"}
    assert all(
        {k.lower(): v for k, v in q["headers"].items()}["anthropic-version"] == "2023-06-01" for q in mock.requests
    )


def test_retry_after_honoured(cli, mock):
    mock.fail("anthropic", (429, {"retry-after": "0"}, {"type": "error", "error": {"type": "rate_limit_error"}}))
    r = cli("count", "--online", "-m", "claude-sonnet-4-5", "--format", "json", stdin=TEXT.encode())
    assert r.code == 0 and json.loads(r.out)["strategy"] == "anthropic-api"
    assert mock.count("anthropic") == 3 and r.err == ""  # the framing probe, its retry, the text


@pytest.mark.parametrize(
    "failure,reason,sent",
    [
        ((401, {}, {"type": "error", "error": {"type": "authentication_error", "message": "no"}}), "HTTP 401", None),
        (
            (500, {"retry-after": "0"}, {"type": "error", "error": {"type": "api_error", "message": "boom"}}),
            "HTTP 500",
            3,
        ),
        ((200, {}, b"<html>not json</html>"), "not JSON", None),
        ((200, {}, {"unexpected": 1}), "no usable 'input_tokens'", None),
        ((200, {}, {"input_tokens": 5}, 3.0), "cannot reach", 3),  # answers after the timeout
    ],
)
def test_failures_fall_back_once(cli, mock, failure, reason, sent, ref_o200k):
    """`sent`: the requests the API gets where a failure takes its retries' time: one framing
    probe's 3 attempts while the other records' requests wait on it, not 3 more for each of them
    (the run fell back 13 s after a timeout instead of 4). An instant failure may end before the
    other records' threads start, so how many of them sent theirs is not fixed."""
    mock.fail("anthropic", *[failure] * 9)  # 3 records x 3 attempts, requests run concurrently
    rows = jsonl({"text": TEXT}, {"text": "second one"}, {"text": "third"})
    r = cli("count", "--online", "--timeout", "1", "--retries", "2", "-m", "claude-sonnet-4-5", stdin=rows)
    assert r.code == 0, r.err
    out = r.jsonl()
    assert {(x["strategy"], x["exact"]) for x in out} == {("claude-calibrated", False)}
    assert [x["tokens"] for x in out] == [
        round(len(ref_o200k.encode_ordinary(t)) * 1.16) for t in (TEXT, "second one", "third")
    ]
    warnings = [line for line in r.err.splitlines() if line.startswith("omnitok: warning")]
    assert len(warnings) == 1 and reason in warnings[0] and "counting the rest offline" in warnings[0]
    assert API_KEY not in r.err and API_KEY not in r.text
    if sent is not None:
        assert mock.count("anthropic") == sent


def test_a_failure_stops_the_records_not_yet_sent(cli, mock):
    """10 records, 8 in flight: the framing probe times out (3 attempts), the 7 records waiting
    on it take its error, and records 9 and 10, which threads freed by those errors would start,
    are never sent: 3 requests in all, not a probe per thread (24) nor a second round (6)."""
    mock.fail("anthropic", *[(200, {}, {"input_tokens": 5}, 1.0)] * 30)
    rows = jsonl(*({"text": f"record {i}"} for i in range(10)))
    r = cli("count", "--online", "--timeout", "0.2", "--retries", "2", "-m", "claude-sonnet-4-5", stdin=rows)
    assert r.code == 0, r.err
    assert [x["strategy"] for x in r.jsonl()] == ["claude-calibrated"] * 10
    assert "cannot reach" in r.err and mock.count("anthropic") == 3


def test_connection_refused_falls_back(cli, mock, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    r = cli("count", "--online", "--retries", "0", "-m", "claude-opus-4-7", stdin=TEXT.encode())
    assert r.code == 0 and "cannot reach http://127.0.0.1:9" in r.err


def test_strict_refuses_estimate_fallback(cli, mock):
    mock.fail("anthropic", (401, {}, {"type": "error", "error": {"type": "authentication_error", "message": "x"}}))
    r = cli("count", "--online", "--strict", "-m", "claude-sonnet-4-5", stdin=TEXT.encode())
    assert r.code == EXIT_NOT_EXACT and "--strict asks for exact counts" in r.err
    r = cli("count", "--strict", "-m", "claude-sonnet-4-5", stdin=TEXT.encode())  # offline: an estimate
    assert r.code == EXIT_NOT_EXACT


def test_missing_key_warns_and_counts_offline(cli, mock, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    r = cli("count", "--online", "-m", "claude-sonnet-4-5", "--format", "json", stdin=TEXT.encode())
    assert r.code == 0 and json.loads(r.out)["strategy"] == "claude-calibrated"
    assert "ANTHROPIC_API_KEY is not set" in r.err and mock.count("anthropic") == 0


def test_offline_by_default(cli, mock):
    r = cli("count", "-m", "claude-sonnet-4-5", "--format", "json", stdin=TEXT.encode())
    assert json.loads(r.out)["strategy"] == "claude-calibrated" and mock.requests == []


def test_gemini_text_and_chat(mock):
    results = omnitok.count_batch(
        [TEXT, [{"role": "system", "content": "sys prompt"}, {"role": "user", "content": "a b c"}]],
        model="gemini-2.5-flash",
        online=True,
    )
    assert [(r.tokens, r.strategy, r.exact) for r in results] == [
        (words(TEXT), "gemini-api", True),
        (2 + 3, "gemini-api", True),
    ]
    assert {q["path"] for q in mock.requests} == {"/v1beta/models/gemini-2.5-flash:countTokens"}
    chat_req = next(json.loads(q["raw"]) for q in mock.requests if b"generateContentRequest" in q["raw"])
    assert chat_req["generateContentRequest"]["systemInstruction"] == {"parts": [{"text": "sys prompt"}]}


def test_vllm_and_exact_fallback_to_local_tokenizer(mock, auto_qwen):
    directory, model_id = TOKENIZERS["qwen2.5"]
    r = omnitok.count(TEXT, model="vllm/" + model_id, online=True, tokenizer=str(directory))
    assert (r.tokens, r.strategy, r.exact) == (words(TEXT) + 1, "vllm-api", True)
    assert json.loads(mock.requests[0]["raw"]) == {"model": model_id, "prompt": TEXT, "add_special_tokens": True}
    mock.fail("vllm", *[(503, {"retry-after": "0"}, {"object": "error", "message": "down", "code": 503})] * 3)
    r = omnitok.Counter("vllm/" + model_id, online=True, tokenizer=str(directory), cache="off").count(TEXT)
    assert (r.tokens, r.strategy, r.exact) == (len(auto_qwen(TEXT).input_ids), "hf-tokenizer", True)


def test_bedrock_sigv4(mock):
    pytest.importorskip("botocore")
    r = omnitok.count(TEXT, model="us.anthropic.claude-sonnet-4-5-20250929-v1:0", online=True)
    assert (r.tokens, r.strategy, r.exact) == (words(TEXT), "bedrock-api", True)
    # modelId goes as one percent-encoded segment, as botocore sends it (':' as %3A)
    assert mock.requests[0]["path"] == "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/count-tokens"
    assert "aws-SECRET-value" not in json.dumps(mock.requests[0]["headers"])


@pytest.fixture(scope="module")
def auto_qwen():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZERS["qwen2.5"][0]))


@pytest.mark.parametrize("kind", ["tgi", "llamacpp"])
def test_self_hosted_tokenize(mock, monkeypatch, kind):
    monkeypatch.delenv("VLLM_ENDPOINT")
    monkeypatch.setenv("OMNITOK_TOKENIZE_URL", f"{mock.url}/{kind}")
    monkeypatch.setenv("OMNITOK_TOKENIZE_KIND", kind)
    directory, model_id = TOKENIZERS["qwen2.5"]
    r = omnitok.count(TEXT, model=model_id, online=True, tokenizer=str(directory))
    assert (r.tokens, r.strategy, r.exact) == (words(TEXT) + 1, "self-hosted-api", True)
    assert mock.count(kind) == 1


def test_online_counts_cached_fallback_estimates_not(cli, mock):
    rows = jsonl({"text": TEXT}, {"text": "second text here"})
    r = cli("count", "--online", "-m", "claude-sonnet-4-5", stdin=rows)
    assert r.code == 0 and mock.count("anthropic") == 3  # the framing probe and the two texts
    r = cli(
        "count", "--online", "-m", "claude-sonnet-4-5", "--summary", "--format", "json", "-o", "/dev/null", stdin=rows
    )
    assert mock.count("anthropic") == 3  # served from the L2 cache, framing and all
    assert orjson.loads(r.out)["cache"]["l2_hits"] == 2
    mock.fail("anthropic", *[(500, {"retry-after": "0"}, {"type": "error", "error": {"type": "api_error"}})] * 3)
    r = cli("count", "--online", "--retries", "2", "-m", "claude-sonnet-4-5", stdin=jsonl({"text": "brand new"}))
    assert r.jsonl()[0]["strategy"] == "claude-calibrated"
    r = cli("count", "--online", "-m", "claude-sonnet-4-5", stdin=jsonl({"text": "brand new"}))
    assert r.jsonl()[0]["strategy"] == "anthropic-api"  # the estimate was not cached as an exact count
