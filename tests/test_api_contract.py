"""The REST API's contract, against a real `omnitok serve`: /openapi.json states every rule the
server enforces on a body (each bad body below is refused by the schema and by the server alike,
each good one accepted by both), its errors name JSON fields and never command-line flags,
schemathesis with every check finds nothing, and /docs loads only files the server itself serves."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from omnitok.options import METHODS, METRICS
from tests.serve_server import Server

# Looked up, not imported: each xdist worker collects this file, and only the server uses FastAPI.
pytestmark = pytest.mark.skipif(
    find_spec("fastapi") is None, reason="omnitok serve needs the serve extra: pip install 'omnitok[serve]'"
)
httpx = pytest.importorskip("httpx", reason="the serve tests drive the server with httpx (the test extra)")
jsonschema_rs = pytest.importorskip("jsonschema_rs", reason="schemathesis's schema validator (the test extra)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # One CPU worker: BERTScore (torch and its model, seconds of CPU) loads in each worker that gets
    # a bertscore job; with one, the warm-up below loads it once and no schemathesis request waits
    # for another load (59 s -> 19 s of wall, 21 -> 14 s of CPU). Pools: tests/security/test_cpu_work.py.
    srv = Server(tmp_path_factory.mktemp("contract"), "--compress-method", "bm25", "--cpu-workers", "1")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def schemas(client):
    return client.get("/openapi.json").json()["components"]["schemas"]


def _valid(schema: dict, body: dict) -> bool:
    return jsonschema_rs.validator_for(schema).is_valid(body)


MSGS = [{"role": "user", "content": "hello there"}]

# (path, body, schema says valid, a fragment the server's 422 message holds)
CASES = [
    ("/count-tokens", {"text": "hi"}, True, None),
    (
        "/count-tokens",
        {"messages": MSGS, "tools": [{"name": "t", "input_schema": {}}], "model_id": "claude-sonnet-4-5"},
        True,
        None,
    ),
    ("/count-tokens", {}, False, "give either text or messages"),
    ("/count-tokens", {"text": "hi", "messages": MSGS}, False, "give either text or messages"),
    ("/count-tokens", {"text": "hi", "tools": []}, False, "system and tools go with messages"),
    ("/count-tokens", {"messages": MSGS, "tools": [{}], "model_id": "claude-sonnet-4-5"}, False, "tools[0]"),
    ("/count-tokens", {"text": "hi", "encoding": "no_such_encoding"}, False, "unknown encoding"),
    ("/count-tokens", {"text": "hi", "model_id": "no-such-model"}, False, "unknown model"),
    ("/count-tokens/batch", {"texts": ["a", "b"]}, True, None),
    ("/count-tokens/batch", {"records": [{"q": "a"}], "field": "q"}, True, None),
    ("/count-tokens/batch", {"texts": ["a"], "field": "q"}, False, "field applies to records, not texts"),
    ("/count-tokens/batch", {"texts": ["a"], "records": ["b"]}, False, "give either texts or records"),
    ("/count-tokens/batch", {"records": [{"q": "a"}]}, False, "no 'text' or 'messages' field"),
    ("/compress", {"context": "one two three four", "budget": 2}, True, None),
    ("/compress", {"context": "one two three four", "budget": 2.0}, True, None),
    (
        "/compress",
        {"context": "one two", "budget": 2, "ratio": 0.5},
        False,
        "at most one of budget, ratio and target_compression",
    ),
    (
        "/compress",
        {"context": "one two", "ratio": 0.5, "target_compression": 0.5},
        False,
        "not ratio and target_compression",
    ),
    ("/compress", {"context": "one two", "ratio": 1.5}, False, "ratio"),
    ("/compress", {"context": "one two", "method": "magic"}, False, "method"),
    ("/compress", {"context": [{"title": "no text"}]}, False, "context[0]"),
    ("/validate", {"original": "a b c", "compressed": "a b", "metrics": list(METRICS[:2])}, True, None),
    ("/validate", {"original": "a b c", "compressed": "a b", "metrics": ["rouge-l", "meteor"]}, False, "metrics.1"),
    ("/validate", {"original": "a b c", "compressed": "a b", "min_rouge_l": 2}, False, "min_rouge_l"),
    ("/validate", {"original": "a b c", "compressed": "a b", "min_bertscore": -2}, False, "min_bertscore"),
    ("/validate", {"original": "a b c", "compressed": "a b", "max_ratio": -1}, False, "max_ratio"),
]

ROOT = Path(__file__).resolve().parent.parent
ST_CONFIG = ROOT / "tests" / "schemathesis" / "schemathesis.toml"  # 503 is a documented answer
ST_HOOKS = "tests.schemathesis.hooks"  # leaves out the one body shape no schema can describe

SCHEMA_OF = {
    "/count-tokens": "CountRequest",
    "/count-tokens/batch": "BatchRequest",
    "/compress": "CompressRequest",
    "/validate": "ValidateRequest",
}


@pytest.mark.parametrize(("path", "body", "valid", "fragment"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_the_schema_and_the_server_agree(client, schemas, path, body, valid, fragment):
    assert _valid(schemas[SCHEMA_OF[path]], body) is valid
    r = client.post(path, json=body)
    if valid:
        assert r.status_code == 200, r.text
        return
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert fragment in message
    assert not re.search(r"(?<![\w-])--[a-z]", message), message  # JSON fields, never flags


def test_the_schema_reads_metrics_and_methods_from_the_library(schemas):
    validate = schemas["ValidateRequest"]["properties"]
    assert validate["metrics"]["items"]["enum"] == list(METRICS)
    assert (validate["min_rouge_l"]["anyOf"][0]["minimum"], validate["min_rouge_l"]["anyOf"][0]["maximum"]) == (0, 1)
    methods = schemas["CompressRequest"]["properties"]["method"]["anyOf"][0]["enum"]
    assert methods == ["auto", *METHODS]


def test_errors_from_the_library_name_json_fields(client):
    """Library messages written for the command line (`--strict`, `--online`, `--encoding`) reach a
    REST client with the request's field names."""
    r = client.post("/count-tokens", json={"text": "hi", "model_id": "claude-sonnet-4-5", "strict": True})
    assert r.status_code == 503
    error = r.json()["error"]
    assert "`strict` asks for exact counts" in error["message"]
    assert error["hint"].startswith("`online` with the provider's credentials")
    r = client.post("/count-tokens", json={"text": "hi", "model_id": "no-such-model"})
    text = r.json()["error"]["message"]
    assert r.status_code == 422 and "`encoding` picks an encoding directly" in text and "--" not in text


@pytest.mark.skipif(not Path(sys.executable).with_name("st").exists(), reason="schemathesis is not installed")
def test_schemathesis_every_check_finds_nothing(server, client, tmp_path):
    """`st run --checks all`, a short run (by hand: `--max-time 120`): no schema-valid body
    refused, no schema-invalid one accepted, no 5xx but the documented 503s, responses as
    documented. One worker: schemathesis's threads trip a CPython 3.11 ast bug ("AST constructor
    recursion depth mismatch") in hypothesis while it describes a strategy."""
    st = str(Path(sys.executable).with_name("st"))
    # BERTScore's model loads on its first use (seconds): before the run, not in a response it times.
    warm = client.post("/validate", json={"original": "a b", "compressed": "a", "metrics": ["bertscore"]}, timeout=120)
    assert warm.status_code == 200, warm.text
    p = subprocess.run(
        [st, "--config-file", str(ST_CONFIG), "run", f"{server.url}/openapi.json", "--checks", "all"]
        + ["--max-examples", "5", "--seed", "27"]
        # The client waits past the server's 60 s deadline: a request that meets it on a loaded
        # machine gets its documented 504 (schemathesis.toml), not a client-side "Network Error"
        # (a fresh-clone CI run: --request-timeout 30 gave up first).
        + ["--generation-database", "none", "--no-color", "--request-timeout", "90", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=600,  # a bound on a hung run, not a speed check (2 busy cores may take minutes)
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ST_HOOKS, "PYTHONPATH": str(ROOT)},
    )
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-2000:]


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def test_docs_load_only_what_the_server_serves(client):
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    parser = _Refs()
    parser.feed(r.text)
    assert "cdn" not in r.text and "https://" not in r.text and "http://" not in r.text
    kinds = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    assert {Path(ref).suffix for ref in parser.refs} == set(kinds)
    for ref in parser.refs:
        parts = urlsplit(ref)
        assert not parts.scheme and not parts.netloc and ref.startswith("/docs/assets/"), ref
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        assert asset.headers["content-type"].startswith(kinds[Path(ref).suffix]), asset.headers
        assert len(asset.content) > 1000
    assert "url: '/openapi.json'" in r.text and '"validatorUrl": null' in r.text
    assert client.get("/docs/assets/swagger-initializer.js").status_code == 404
