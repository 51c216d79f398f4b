"""Chat records with a request's top-level `system` and `tools`: counted, sent, or refused, never
silently dropped."""

import json

import pytest

import omnitok

from .hf_assets import TOKENIZERS
from .mock_providers import TOOL_COST, words
from .test_online import jsonl, mock  # noqa: F401  (fixture)

# Anthropic's documented count_tokens example (claude-sonnet-4-5): 14 without the tool, 403 with it.
GET_WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}},
        "required": ["location"],
    },
}
OPENAI_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": GET_WEATHER["description"],
        "parameters": GET_WEATHER["input_schema"],
    },
}
REQUEST = {"system": "You are a scientist", "messages": [{"role": "user", "content": "Hello, Claude"}]}


def test_regression_pin_claude_tool_example(cli):
    """Regression pin: claude.py's tool framing was fitted to Anthropic's documented example (403
    with the tool), so this guards the fit, it does not test it; the online tests against the
    mock Anthropic server on the real wire format do."""
    r = cli("count", "-m", "claude-sonnet-4-5", stdin=jsonl(REQUEST, {**REQUEST, "tools": [GET_WEATHER]}))
    assert r.code == 0, r.err
    assert [x["tokens"] for x in r.jsonl()] == [14, 403]
    assert {(x["exact"], x["error_band"]) for x in r.jsonl()} == {(False, 0.20)}


def test_top_level_system_is_a_system_message_for_openai(cli):
    r = cli("count", "-m", "gpt-4o", stdin=jsonl(REQUEST))
    as_message = [{"role": "system", "content": "You are a scientist"}, *REQUEST["messages"]]
    assert r.code == 0 and r.jsonl()[0]["tokens"] == omnitok.count(as_message, model="gpt-4o").tokens


@pytest.mark.parametrize("model", ["gpt-4o", "gemini-2.5-flash"])
def test_tools_without_a_published_rule_are_refused(cli, model):
    r = cli("count", "-m", model, "--on-error", "record", stdin=jsonl({**REQUEST, "tools": [OPENAI_WEATHER]}, REQUEST))
    assert r.code == 4
    rows = r.jsonl()
    assert "tools: 1 tool definition(s) cannot be counted offline" in rows[0]["error"]
    assert rows[1]["tokens"] > 0


def test_bad_tools_field_is_an_error_naming_it(cli):
    r = cli("count", "-m", "claude-sonnet-4-5", stdin=jsonl({**REQUEST, "tools": "get_weather"}))
    assert r.code == 1 and "<stdin>:1: field 'tools' must be an array of tool definitions (objects)" in r.err
    r = cli("count", "-m", "claude-sonnet-4-5", stdin=jsonl({**REQUEST, "tools": [{"description": "x"}]}))
    assert r.code == 1 and "tools[0]: a tool definition has no 'name'" in r.err


def test_hf_chat_template_renders_tools():
    from transformers import AutoTokenizer

    directory, model_id = TOKENIZERS["qwen2.5"]
    ref = AutoTokenizer.from_pretrained(str(directory))
    chat = [{"role": "user", "content": "Weather in Paris?"}]
    expected = len(
        ref.apply_chat_template(chat, tools=[OPENAI_WEATHER], tokenize=True, add_generation_prompt=True)["input_ids"]
    )
    without = len(ref.apply_chat_template(chat, tokenize=True, add_generation_prompt=True)["input_ids"])
    assert expected > without + 30
    record = {"messages": chat, "tools": [OPENAI_WEATHER]}
    counter = omnitok.Counter(model_id, tokenizer=str(directory))
    from omnitok.records import Extractor

    texts, overhead, _ = Extractor(framing=counter.framing).extract(record)
    assert sum(counter.strategy.count_batch(texts)) + overhead == expected


def test_online_providers_receive_tools_in_their_shape(cli, mock):  # noqa: F811
    record = {**REQUEST, "tools": [OPENAI_WEATHER]}
    base = words("You are a scientist") + 3 + words("Hello, Claude") + 3
    r = cli("count", "--online", "-m", "claude-sonnet-4-5", stdin=jsonl(record))
    assert r.code == 0, r.err
    assert r.jsonl()[0]["tokens"] == base + TOOL_COST
    sent = json.loads(mock.requests[-1]["raw"])
    assert sent["tools"] == [GET_WEATHER]  # converted from OpenAI's shape to Anthropic's

    r = cli("count", "--online", "-m", "gemini-2.5-flash", stdin=jsonl(record))
    assert r.code == 0, r.err
    assert r.jsonl()[0]["tokens"] == words("You are a scientist") + words("Hello, Claude") + TOOL_COST
    req = json.loads(mock.requests[-1]["raw"])["generateContentRequest"]
    assert req["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": GET_WEATHER["description"],
                    "parameters": GET_WEATHER["input_schema"],
                }
            ]
        }
    ]

    r = cli("count", "--online", "-m", "anthropic.claude-sonnet-4-5-20250929-v1:0", stdin=jsonl(record))
    assert r.code == 0, r.err
    assert r.jsonl()[0]["tokens"] == base + TOOL_COST
    conv = json.loads(mock.requests[-1]["raw"])["input"]["converse"]
    assert conv["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": GET_WEATHER["input_schema"]}


def test_online_failure_falls_back_to_the_claude_estimate_with_tools(cli, mock):  # noqa: F811
    mock.fail("anthropic", (500, {}, {"type": "error", "error": {"type": "api_error", "message": "down"}}))
    r = cli(
        "count",
        "--online",
        "--retries",
        "0",
        "-m",
        "claude-sonnet-4-5",
        stdin=jsonl({**REQUEST, "tools": [GET_WEATHER]}),
    )
    assert r.code == 0, r.err
    assert (r.jsonl()[0]["tokens"], r.jsonl()[0]["exact"]) == (403, False)
