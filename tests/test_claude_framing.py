"""Claude online text counts: the message framing is measured per model, never a guessed
constant, and a framing that stops adding up is never an exact count (omnitok.remote.claude_text).

The mock counts like Claude's count APIs: a one-message request costs the model's framing plus
the text's tokens, one less when the text starts with a character that merges into the framing
(ctoc saw the framing depend on the first character); `pieces` is its tokenizer, a pretokenizer
in o200k's manner, so whitespace and punctuation are tokens and neighbours can merge."""

from __future__ import annotations

import json

import pytest

import omnitok
from omnitok.errors import NotExactError
from omnitok.remote import claude_text
from omnitok.remote.claude_text import probe, wrap

from .mock_providers import API_KEY, PUNCTUATION, ClaudeModel, MockProviders, pieces

SONNET4 = "claude-sonnet-4-20250514"  # ctoc: count_tokens("a") = 8, a framing of 7
HAIKU35 = "claude-3-5-haiku-20241022"  # a Claude 3 framing: 3
BEDROCK = "anthropic.claude-sonnet-4-20250514-v1:0"
PROBES = {probe(claude_text.PLAIN), probe(claude_text.NEWLINE)}
LONG = " ".join(
    f"Line {i}: the (quick) brown fox, {i * 7} times; naïve café 日本語 {'😀' * (i % 3)}!" for i in range(300)
)
TEXTS = [
    "",
    "a",
    "<",
    "é",
    "日本語のテキストです。",
    "<b>bold</b> and (parens).",
    "  leading and trailing spaces  ",
    "ends with a line break\n",
    "#!/usr/bin/env python\nimport sys\n",
    LONG,
]
NEWLINE_LED = ["\nstarts on a new line", "\t\n tab, then a line break", "\r\n", "\n\n\n"]


@pytest.fixture
def mock(monkeypatch):
    m = MockProviders()
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", m.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-SECRET-value")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", m.url)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    claude_text.forget()
    yield m
    m.close()
    claude_text.forget()


def contents(mock: MockProviders) -> list[str]:
    """The user-message content of every single-message request the mock heard, in order."""
    out = []
    for q in mock.requests:
        body = json.loads(q["raw"])
        messages = body["input"]["converse"]["messages"] if "input" in body else body["messages"]
        if len(messages) == 1 and "system" not in body:
            content = messages[0]["content"]
            out.append(content if isinstance(content, str) else content[0]["text"])
    return out


def probes(mock: MockProviders) -> int:
    return sum(c in PROBES for c in contents(mock))


def naive(m: ClaudeModel, text: str) -> int:
    """What 'input_tokens - 3' gave (the rule before measuring)."""
    return m.framing + m.message(text) - 3


@pytest.mark.parametrize(
    "model,route,framing",
    [(HAIKU35, "anthropic", 3), (SONNET4, "anthropic", 7), (BEDROCK, "bedrock", 7)],
)
def test_text_counts_are_the_texts_own_for_any_framing(mock, model, route, framing):
    if route == "bedrock":
        pytest.importorskip("botocore")
    m = mock.claude[model] = ClaudeModel(framing, pieces, PUNCTUATION)
    assert any(naive(m, t) != pieces(t) for t in TEXTS if t)  # a constant would be wrong here
    results = omnitok.count_batch(TEXTS, model=model, online=True)
    assert [r.tokens for r in results] == [pieces(t) for t in TEXTS]
    assert {(r.strategy, r.exact) for r in results} == {(f"{route}-api", True)}
    # one measurement for the model, then one request per non-empty text (the empty one costs none)
    assert mock.count(route) == 1 + sum(1 for t in TEXTS if t)
    assert sorted(contents(mock)) == sorted([probe(claude_text.PLAIN)] + [wrap(t) for t in TEXTS if t])
    assert contents(mock)[0] == probe(claude_text.PLAIN)  # ("a" is sent as the probe is: "x\na x")


def test_line_break_led_texts_have_their_own_probe(mock):
    mock.claude[SONNET4] = ClaudeModel(7, pieces, PUNCTUATION)
    texts = ["plain", *NEWLINE_LED]
    results = omnitok.count_batch(texts, model=SONNET4, online=True)
    assert [r.tokens for r in results] == [pieces(t) for t in texts]
    assert all(r.exact for r in results)
    assert sorted(c for c in contents(mock) if c in PROBES) == sorted(PROBES)  # each measured once


def test_chats_are_the_apis_answer(mock):
    mock.claude[SONNET4] = ClaudeModel(7, pieces, PUNCTUATION)
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "<hi> there"}]
    r = omnitok.count(chat, model=SONNET4, online=True)
    assert (r.tokens, r.exact) == ((pieces("Be brief.") + 3) + (pieces("<hi> there") - 1 + 3) + 4, True)
    assert mock.count("anthropic") == 1 and probes(mock) == 0  # no framing taken off, none measured


def test_the_framing_is_kept_across_runs_and_cleared_with_the_model(cli, mock):
    mock.claude[SONNET4] = ClaudeModel(7, pieces, PUNCTUATION)

    def run(*texts: str) -> list[dict]:
        claude_text.forget()  # a new process: only the persistent cache remembers
        rows = b"".join(json.dumps({"text": t}).encode() + b"\n" for t in texts)
        r = cli("count", "--online", "-m", SONNET4, stdin=rows)
        assert r.code == 0 and r.err == "", r.err
        return r.jsonl()

    first = run("<one>", "two words")
    assert [(x["tokens"], x["exact"]) for x in first] == [(pieces("<one>"), True), (pieces("two words"), True)]
    assert (mock.count("anthropic"), probes(mock)) == (3, 1)
    second = run("three", "(four) five")  # new texts: counted online, the framing read back
    assert [x["tokens"] for x in second] == [pieces("three"), pieces("(four) five")]
    assert (mock.count("anthropic"), probes(mock)) == (5, 1)
    r = cli("cache", "clear", "--model", SONNET4, "--yes")
    assert r.code == 0, r.err
    third = run("<one>", "six")  # the model's entries are gone, its framing with them
    assert [x["tokens"] for x in third] == [pieces("<one>"), pieces("six")]
    assert (mock.count("anthropic"), probes(mock)) == (8, 2)


def test_a_framing_that_changes_mid_run_is_never_exact(mock, warnings_seen):
    calls = iter([7] + [2] * 20)  # measured at 7, then the model's framing drops to 2
    mock.claude[SONNET4] = ClaudeModel(lambda: next(calls), pieces)
    results = omnitok.count_batch(["a short one", "two"], model=SONNET4, online=True)
    assert {(r.strategy, r.exact) for r in results} == {("claude-calibrated", False)}
    assert len(warnings_seen) == 1, warnings_seen
    assert f"the message framing of {SONNET4} changed during the run (its probe counted 11, then 6)" in warnings_seen[0]
    assert "counting the rest offline" in warnings_seen[0]
    assert probes(mock) == 2  # measured, then measured again once to tell a change from a bad answer

    calls = iter([7] + [2] * 20)
    with pytest.raises(NotExactError, match="changed during the run.*--strict asks for exact counts"):
        omnitok.count_batch(["a short one"], model=SONNET4, online=True, strict=True)


def test_a_stored_framing_gone_stale_is_caught_and_forgotten(mock, warnings_seen):
    mock.claude[SONNET4] = ClaudeModel(7, pieces)
    assert omnitok.count("first run", model=SONNET4, online=True).exact
    mock.claude[SONNET4] = ClaudeModel(3, pieces)  # the provider changed the model's framing
    claude_text.forget()
    r = omnitok.count("a second run", model=SONNET4, online=True)
    assert (r.strategy, r.exact) == ("claude-calibrated", False)
    assert len(warnings_seen) == 1 and "changed during the run (its probe counted 11, then 7)" in warnings_seen[0]
    claude_text.forget()
    r = omnitok.count("a third run", model=SONNET4, online=True)  # the stored framing was invalidated
    assert (r.tokens, r.strategy, r.exact) == (pieces("a third run"), "anthropic-api", True)
    assert probes(mock) == 3  # first run; the second's check; the third's fresh measurement


def test_probes_that_disagree_are_not_separated(mock, warnings_seen):
    calls = iter([7, 7, 9, 9])  # plain probe, plain text, then the line-break probe counts 2 more
    mock.claude[SONNET4] = ClaudeModel(lambda: next(calls), pieces)
    results = omnitok.count_batch(["plain", "\nthen a line"], model=SONNET4, online=True, concurrency=1)
    assert [r.exact for r in results] == [False, False]
    assert len(warnings_seen) == 1 and f"the message framing measured for {SONNET4} is inconsistent" in warnings_seen[0]


def test_an_impossible_answer_with_a_steady_framing_is_an_error(mock):
    mock.claude[SONNET4] = ClaudeModel(7, pieces)
    mock.fail("anthropic", (200, {}, {"input_tokens": 11}), (200, {}, {"input_tokens": 5}))  # probe; text
    with pytest.raises(NotExactError, match=r"an answer implies -5 tokens for a 3-character text"):
        omnitok.count("abc", model=SONNET4, online=True, strict=True)


def test_the_method_isolates_the_text_in_o200k(ref_o200k):
    """o200k as a stand-in for Claude's unpublished vocabulary: the head, tail and probe leave
    every text's own tokenization alone (the exactness claim of claude_text's docstring)."""
    from pathlib import Path

    def n(s: str) -> int:
        return len(ref_o200k.encode_ordinary(s))

    source = Path(claude_text.__file__).read_text() + Path(omnitok.__file__).with_name("strategy_chain.py").read_text()
    chunks = [source[i : i + size] for size in (1, 2, 7, 40, 300) for i in range(0, 6000, 97)]
    chunks += TEXTS[1:] + NEWLINE_LED + ["  ", "\t", "x", " x", "'s", "😀😀", "Привет, мир!"]
    for text in chunks:
        assert n(wrap(text)) - n(probe(claude_text.variant_of(text))) + 1 == n(text), repr(text)
