"""A REST body is read by the command line's rules for a JSON line (README, "Input rules";
omnitok.serve.jsonbody), not by Python's json module's: found by an adversarial parity pass,
where `POST /count-tokens` counted a lone surrogate escape and the UTF-8 bytes of a surrogate as
U+FFFD and took `NaN` as a number, each of which the command line refuses."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="omnitok serve needs the serve extra: pip install 'omnitok[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

from omnitok import aio  # noqa: E402
from omnitok.records import LONE_SURROGATE  # noqa: E402
from omnitok.serve import ServeConfig, create_app  # noqa: E402
from tests.console import omnitok  # noqa: E402

JSON = {"content-type": "application/json"}
SURROGATE = f"the body is not valid JSON ({LONE_SURROGATE} at character"


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServeConfig()), base_url="http://127.0.0.1") as c:
        yield c
    aio.close()


def _error(r) -> tuple[int, str, str]:
    e = r.json()["error"]
    return r.status_code, e["code"], e["message"]


@pytest.mark.parametrize(
    "path,body",
    [
        ("/count-tokens", rb'{"text": "a\ud800b", "model_id": "gpt-4o"}'),
        ("/count-tokens", rb'{"messages": [{"role": "user", "content": "\udc80"}], "model_id": "gpt-4o"}'),
        ("/count-tokens", rb'{"text": "ok", "model_id": "gpt-4o", "x": "\ud800"}'),
        ("/validate", rb'{"original": "a \ud800 b", "compressed": "a"}'),
        ("/compress", rb'{"text": "a \ud800 b c d e f", "target_tokens": 3}'),
    ],
)
def test_a_lone_surrogate_escape_outside_a_batch_is_malformed_json(client, path, body):
    status, code, message = _error(client.post(path, content=body, headers=JSON))
    assert (status, code) == (422, "malformed_json") and message.startswith(SURROGATE), message


def test_in_a_batch_it_is_its_records_error_as_on_the_command_line(client, tmp_path):
    body = rb'{"model_id": "gpt-4o", "on_error": "record", "records": [{"id": 1, "text": "\ud800"}, {"id": 2, "text": "ab"}]}'
    r = client.post("/count-tokens/batch", content=body, headers=JSON)
    assert r.status_code == 200, r.text
    rows = r.json()["results"]
    assert rows[0]["error"] == f"invalid JSON: {LONE_SURROGATE}" and rows[1]["tokens"] == 1
    lines = tmp_path / "r.jsonl"
    lines.write_bytes(b'{"id": 1, "text": "\\ud800"}\n{"id": 2, "text": "ab"}\n')
    cli = omnitok("count", "-m", "gpt-4o", "--format", "jsonl", "--on-error", "record", str(lines))
    assert cli.code == 4 and json.loads(cli.out.splitlines()[0])["error"] == rows[0]["error"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(client, literal):
    for path, body in (
        ("/count-tokens", b'{"text": "a", "model_id": "gpt-4o", "strict": ' + literal + b"}"),
        ("/count-tokens/batch", b'{"model_id": "gpt-4o", "records": [{"id": ' + literal + b', "text": "a"}]}'),
    ):
        status, code, message = _error(client.post(path, content=body, headers=JSON))
        assert (status, code) == (422, "malformed_json"), message
        assert message.startswith(f"the body is not valid JSON ({literal.decode()} is not a JSON value"), message


def test_the_utf8_bytes_of_a_surrogate_are_not_utf8(client):
    for path, body in (
        ("/count-tokens", b'{"text": "a\xed\xa0\x80b", "model_id": "gpt-4o"}'),
        ("/count-tokens/batch", b'{"model_id": "gpt-4o", "on_error": "record", "records": [{"text": "\xed\xa0\x80"}]}'),
    ):
        assert _error(client.post(path, content=body, headers=JSON)) == (
            422,
            "malformed_json",
            "the body is not valid JSON in UTF-8",
        )


def test_what_stays_as_before(client):
    """A BOM before the body, a surrogate pair, an id of 400 digits: read as before."""
    r = client.post("/count-tokens", content=b'\xef\xbb\xbf{"text": "ab", "model_id": "gpt-4o"}', headers=JSON)
    assert r.status_code == 200 and r.json()["token_count"] == 1
    r = client.post("/count-tokens", content=rb'{"text": "\ud83d\ude00", "model_id": "gpt-4o"}', headers=JSON)
    assert (
        r.status_code == 200
        and r.json()["token_count"]
        == client.post("/count-tokens", json={"text": "\U0001f600", "model_id": "gpt-4o"}).json()["token_count"]
    )
    big = "9" * 400
    body = b'{"model_id": "gpt-4o", "records": [{"id": ' + big.encode() + b', "text": "a"}]}'
    r = client.post("/count-tokens/batch", content=body, headers=JSON)
    assert r.status_code == 200 and f'"id":{big},'.encode() in r.content


@pytest.mark.parametrize("name,item", [("texts", 0), ("records", 0), ("messages", 0), ("tools", 0)])
def test_a_list_past_max_records_is_413_before_its_items_are_checked(client, name, item):
    """pydantic checked every item before the route counted them: 2,000,000 numbers under
    `texts` held the event loop 22 s for a 422. Now the count comes first, whatever the items."""
    body = {name: [item] * 10_001, "model_id": "claude-sonnet-4-5"}
    if name == "tools":
        body["messages"] = [{"role": "user", "content": "hi"}]
    path = "/count-tokens/batch" if name in ("texts", "records") else "/count-tokens"
    assert _error(client.post(path, json=body)) == (
        413,
        "too_many_records",
        f"10001 {name}; the server takes at most 10000 a request",
    )


def test_json_errors_say_what_is_wrong(client):
    """An integer past Python's 4,300 digits and nesting too deep were "not valid JSON in UTF-8"
    (a body that is UTF-8); a control character read "... at at character N"."""
    for body, why in (
        (b'{"text": "a", "model_id": "gpt-4o", "x": ' + b"9" * 5000 + b"}", "an integer of more than 4,300 digits"),
        (b'{"text": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deep"),
        (b'{"text": "a\nb"}', "Invalid control character at character 11"),
    ):
        status, code, message = _error(client.post("/count-tokens", content=body, headers=JSON))
        assert (status, code) == (422, "malformed_json") and message.startswith(f"the body is not valid JSON ({why}"), (
            message
        )
        assert " at at " not in message


def test_a_malformed_body_is_parsed_once(client, monkeypatch):
    """JSONRoute reads a body before FastAPI does (for the lists' bound); a body that is not JSON
    was parsed a second time by FastAPI's own read: twice the CPU for a 10 MB malformed body."""
    from omnitok.serve import jsonbody

    calls = []
    real = jsonbody.loads

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(jsonbody, "loads", counted)
    status, code, _ = _error(client.post("/count-tokens/batch", content=b'{"texts": [NaN]}', headers=JSON))
    assert (status, code, len(calls)) == (422, "malformed_json", 1)
