"""A chat role that is not a string is a bad record in every family (README, "Input rules"):
an adversarial parity pass found `"role": null` counted everywhere (OpenAI's framing skipped
null fields; the other families never looked at the role) and a number refused by OpenAI's
framing alone."""

from __future__ import annotations

import json

import pytest

from tests.console import omnitok

MODELS = ["gpt-4o", "claude-sonnet-4-5", "gemini-2.5-flash", "deepseek-ai/DeepSeek-V3"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("role,kind", [("null", "null"), ("5", "int"), ('["user"]', "array"), ("true", "bool")])
def test_a_role_that_is_not_a_string_is_a_bad_record(model, role, kind):
    line = f'{{"messages": [{{"role": "system", "content": "be brief"}}, {{"role": {role}, "content": "hi"}}]}}\n'
    r = omnitok("count", "-m", model, "--format", "jsonl", "--on-error", "record", stdin=line.encode())
    assert r.code == 4, r.err
    assert json.loads(r.out)["error"] == f"messages[1].role is {kind}; a role is a string"


@pytest.mark.parametrize("model", MODELS)
def test_a_string_role_whatever_it_says_and_a_null_content_are_counted(model):
    lines = b'{"messages": [{"role": "anything", "content": "hi"}]}\n'
    r = omnitok("count", "-m", model, "--format", "jsonl", stdin=lines)
    assert r.code == 0 and json.loads(r.out)["tokens"] > 0, r.err
