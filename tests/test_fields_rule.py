"""The fields to count, by `-f`'s rule in every front end (records.fields_given): a string is
names separated by commas, never its characters; a name given twice, or a value naming none, is
a usage error. Found by an adversarial parity pass: REST's `"field": "a,b"` was one field named
"a,b" (every record an error), and the Python API iterated a string: `fields="text"` was the
fields t, e, x, t (`field 't' is given twice`), `fields="ab"` counted fields a and b."""

from __future__ import annotations

import asyncio
import json

import pytest

import omnitok
from omnitok import aio
from omnitok.errors import UsageError
from omnitok.ray.stages import fields_of
from tests.console import omnitok as console

RECORD = {"id": 1, "a": "hello world", "b": "x y z", "ab": "not this one"}


def _api_rows(fields):
    rows, _ = asyncio.run(aio.acount_rows([RECORD], "gpt-4o", fields=fields))
    return rows[0]["tokens"]


def _files_rows(path, fields):
    return [c.tokens for c in omnitok.count_files([str(path)], model="gpt-4o", fields=fields)]


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from omnitok.serve import ServeConfig, create_app

    with TestClient(create_app(ServeConfig()), base_url="http://127.0.0.1") as c:
        yield c
    aio.close()


def _rest(client, field):
    r = client.post("/count-tokens/batch", json={"model_id": "gpt-4o", "records": [RECORD], "field": field})
    return r.status_code, r.json()


@pytest.mark.parametrize("given", ["a,b", " a , b ", ["a", "b"], ["a,b"], ("a", "b")])
def test_names_separated_by_commas_count_both_fields_everywhere(tmp_path, client, given):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 1, "a": "hello world", "b": "x y z", "ab": "not this one"}\n')
    both = console("count", "-m", "gpt-4o", "-f", "a,b", "--summary", str(path))
    expected = json.loads(both.out)["total_tokens"]
    assert (
        expected == omnitok.count("hello world", model="gpt-4o").tokens + omnitok.count("x y z", model="gpt-4o").tokens
    )
    assert _api_rows(given) == expected
    assert _files_rows(path, given) == [expected]
    if not isinstance(given, tuple):
        status, body = _rest(client, given)
        assert status == 200 and body["results"][0]["tokens"] == expected, body
    assert fields_of(given) == ("a", "b")


def test_one_name_is_one_field_not_its_characters(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 1, "a": "hello world", "b": "x y z", "ab": "not this one"}\n')
    one = omnitok.count("not this one", model="gpt-4o").tokens
    assert _api_rows("ab") == one and _files_rows(path, "ab") == [one]


@pytest.mark.parametrize(
    "given,why",
    [("", "names no field"), (",", "names no field"), ("a,a", "is given twice"), (["a", "a"], "is given twice")],
)
def test_a_value_naming_no_field_or_one_twice_is_a_usage_error_everywhere(tmp_path, client, given, why):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 1, "a": "hello world"}\n')
    with pytest.raises(UsageError, match=why):
        _api_rows(given)
    with pytest.raises(UsageError, match=why):
        _files_rows(path, given)
    with pytest.raises(UsageError, match=why):
        fields_of(given)
    status, body = _rest(client, given)
    assert status == 422 and body["error"]["code"] == "invalid_input" and why in body["error"]["message"], body
    if isinstance(given, str) and given.strip(","):
        r = console("count", "-m", "gpt-4o", "-f", given, str(path))
        assert r.code == 2 and why in r.err, r.err
