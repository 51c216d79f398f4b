"""Issue 23, items 9 and 10, through the console script and a real `omnitok serve`.

Keys go only where they belong: OPENAI_API_KEY reaches an --embedding-url only on OpenAI's own
host; another host gets the key of the variable the operator names (--embedding-key-env), and a
named variable that is unset is a usage error. A provider that echoes the key it was sent, upper-
or lower-cased, percent-encoded, as JSON \\u escapes or HTML references, hex, base64 (of the key,
or of `user:key` as Basic auth sends it), shows no piece of the key's last 8 characters on the
console script's stderr nor in the server's answer.

Terminal safety: control, escape and bidi characters from data (a model id, a record id, a
provider's message) reach stderr and the `table` format escaped, and a 5,000-character model id
makes a one-line message that shows 200 of its characters."""

from __future__ import annotations

import base64
import json
import secrets
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import httpx
import pytest

from omnitok.errors import EXIT_OK, EXIT_USAGE
from tests._http import serve_in_thread
from tests.console import omnitok
from tests.mock_providers import MockProviders, error_body
from tests.serve_server import Server

KEY = f"sk-ant-api03-{secrets.token_hex(12)}/+=Zq9"  # '/', '+', '=' so every encoding differs
SUFFIX = KEY[-8:]
CONTEXT = b"Bananas are rich in potassium. The automobile would not start. Tulips bloom in April."
RAW = "\x1b[2J\x07\r\u202e"  # clear screen, bell, carriage return, right-to-left override
ESCAPED = "\\x1b[2J\\x07\\r\\u202e"
CONTROLS = "\x1b\x07\r\u202e"

# How a hostile provider echoes the key it was sent: name -> the echoed text.
ECHOES = {
    "upper": KEY.upper(),
    "lower": KEY.lower(),
    "percent": quote(KEY, safe=""),
    "percent-lower-hex": quote(KEY, safe="").lower(),
    # six characters a character: the key's last 16 (a provider naming the key it saw by its end)
    "json-u-escapes": "".join(f"\\u{ord(c):04x}" for c in KEY[-16:]),
    "html-references": "".join(f"&#{ord(c)};" for c in KEY[-16:]),
    "hex": KEY.encode().hex(),
    "base64": base64.b64encode(KEY.encode()).decode(),
    "base64-basic-auth": "Basic " + base64.b64encode(b"canary:" + KEY.encode()).decode(),
}


def suffix_pieces(echo: str) -> set[str]:
    """What of the key's last 8 characters could show: the suffix itself in any case, and every
    8-character piece of the last 12 characters of the echoed form (lower-cased)."""
    tail = echo.rstrip("=")[-12:].lower()
    return {SUFFIX.lower()} | {tail[i : i + 8] for i in range(len(tail) - 7)}


def assert_no_suffix(echo: str, shown: str) -> None:
    found = [piece for piece in suffix_pieces(echo) if piece in shown.lower()]
    assert not found, (found, shown)


def echo_answer(name: str, with_raw: bool = False):
    """A 401 in Anthropic's wire format whose message echoes the key the way `name` says, from
    character 70 (each form's suffix within the 200 characters a message shows of it)."""
    message = "x" * 60 + " you sent " + ECHOES[name] + (" " + RAW if with_raw else "")
    return (401, {}, error_body("anthropic", 401, message)[1])


# --- the embeddings key -------------------------------------------------------------------------


class Embeddings:
    """An OpenAI-compatible /v1/embeddings on 127.0.0.1 that records the Authorization header of
    every request (None: there was none) and answers a fixed vector per text."""

    def __init__(self):
        self.heard: list[str | None] = []
        emb = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                emb.heard.append(self.headers.get("authorization"))
                data = [
                    {"index": i, "embedding": [1.0, float("automobile" in text), float(len(text) % 7)]}
                    for i, text in enumerate(body["input"])
                ]
                raw = json.dumps({"data": data}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        serve_in_thread(self.server)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def embeddings():
    server = Embeddings()
    yield server
    server.close()


def compress(url: str, *extra: str, env: dict):
    args = ("compress", "--context", "-", "--query", "automobile", "--budget", "7", "--method", "dense")
    return omnitok(*args, "--embedding-url", url, "--cache", "off", *extra, stdin=CONTEXT, env=env)


def test_openai_key_is_not_sent_to_another_embeddings_host(embeddings):
    embeddings.heard.clear()
    r = compress(embeddings.url, env={"OPENAI_API_KEY": KEY, "OMNITOK_EMBEDDING_API_KEY": ""})
    assert r.code == EXIT_OK, r.err
    assert r.out == b"The automobile would not start.\n"  # the remote vectors were used
    assert len(embeddings.heard) == 1 and embeddings.heard == [None]


def test_the_named_variable_is_what_the_embeddings_host_gets(embeddings):
    embeddings.heard.clear()
    own = f"emb-{secrets.token_hex(8)}"
    env = {"OPENAI_API_KEY": KEY, "MY_EMBEDDINGS_KEY": own, "OMNITOK_EMBEDDING_API_KEY": ""}
    r = compress(embeddings.url, "--embedding-key-env", "MY_EMBEDDINGS_KEY", env=env)
    assert r.code == EXIT_OK, r.err
    assert embeddings.heard == [f"Bearer {own}"]


def test_a_named_variable_that_is_unset_is_a_usage_error(embeddings):
    embeddings.heard.clear()
    r = compress(embeddings.url, "--embedding-key-env", "NO_SUCH_KEY_VAR", env={"OPENAI_API_KEY": KEY})
    assert r.code == EXIT_USAGE
    assert r.err == (
        "omnitok: error: --embedding-key-env NO_SUCH_KEY_VAR: the environment variable NO_SUCH_KEY_VAR is not set\n"
    )
    assert embeddings.heard == []  # refused before anything was sent
    r = compress(embeddings.url, "--embedding-key-env", "A B", env={})
    assert (r.code, r.err) == (
        EXIT_USAGE,
        "omnitok: error: --embedding-key-env takes an environment variable's name, not 'A B'\n",
    )


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("https://api.openai.com/v1/embeddings", True),
        ("https://API.OpenAI.com:443/v1/embeddings", True),
        ("http://api.openai.com/v1/embeddings", False),  # in clear: no
        ("https://api.openai.com.evil.example/v1/embeddings", False),
        ("https://evil.example/api.openai.com/v1/embeddings", False),
        ("https://api.openai.com:8443/v1/embeddings", False),
        ("https://api.openai.com@evil.example/v1/embeddings", False),
    ],
)
def test_openai_key_goes_only_to_openai_itself(url, sent, monkeypatch):
    from omnitok.compression.embed import RemoteEmbedder

    monkeypatch.delenv("OMNITOK_EMBEDDING_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert RemoteEmbedder(url).key == (KEY if sent else "")


def test_an_embeddings_answer_echoing_the_key_is_scrubbed(monkeypatch):
    """A service answering 200 with the wrong shape and the key in it: the error shows no key."""
    from omnitok.compression.embed import RemoteEmbedder
    from omnitok.errors import RemoteError

    monkeypatch.setenv("OMNITOK_EMBEDDING_API_KEY", KEY)
    emb = RemoteEmbedder("http://127.0.0.1:9/v1", retries=0)
    monkeypatch.setattr("omnitok.remote.http.post_json", lambda *a, **k: {"echo": KEY.upper(), "data": None})
    with pytest.raises(RemoteError) as caught:
        emb._remote(["a text"])
    assert "expected 1 embeddings in 'data'" in caught.value.message
    assert_no_suffix(KEY, caught.value.message)


# --- a key echoed by a provider -----------------------------------------------------------------


@pytest.fixture(scope="module")
def provider():
    mock = MockProviders(api_key=KEY)
    yield mock
    mock.close()


@pytest.fixture(scope="module")
def server(provider, tmp_path_factory):
    env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": provider.url}
    srv = Server(tmp_path_factory.mktemp("serve"), env=env)
    yield srv
    srv.stop()


@pytest.mark.parametrize("name", list(ECHOES))
def test_an_echoed_key_shows_no_part_of_its_suffix(name, provider, server):
    env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": provider.url}
    args = ("count", "--online", "-m", "claude-sonnet-4-5", "--retries", "0", "--cache", "off")
    provider.fail("anthropic", echo_answer(name), echo_answer(name))  # the framing probe may ask first
    r = omnitok(*args, stdin=b"hello there", env=env)
    provider.script.clear()
    assert r.code == EXIT_OK, r.err
    warned = [line for line in r.err.splitlines() if line.startswith("omnitok: warning: anthropic: HTTP 401")]
    assert len(warned) == 1 and "***" in warned[0] and "you sent" in warned[0], r.err
    assert_no_suffix(ECHOES[name], r.err)

    provider.fail("anthropic", echo_answer(name), echo_answer(name))
    body = {"text": f"hello {name}", "model_id": "claude-sonnet-4-5", "online": True, "strict": True}
    resp = httpx.post(f"{server.url}/count-tokens", json=body, timeout=30)
    provider.script.clear()
    assert resp.status_code == 503, resp.text
    assert "HTTP 401" in resp.json()["error"]["message"] and "***" in resp.text
    assert_no_suffix(ECHOES[name], resp.text)


@pytest.mark.parametrize("name", ["upper", "lower", "percent-lower-hex", "hex"])
def test_the_server_masks_its_keys_in_any_form_in_every_message(name, server):
    """A message of the server's own that holds a key (here a field name a client sent) is masked
    by the same masker: in any case and encoding."""
    body = {"records": [{"text": "x"}], "field": ECHOES[name], "model_id": "gpt-4o"}
    resp = httpx.post(f"{server.url}/count-tokens/batch", json=body, timeout=30)
    assert resp.status_code == 422 and "missing" in resp.json()["error"]["message"], resp.text
    assert "***" in resp.text
    assert_no_suffix(ECHOES[name], resp.text)


# --- terminal safety ----------------------------------------------------------------------------


def test_a_model_id_with_escapes_is_shown_escaped():
    r = omnitok("count", "-m", "gpt-4o" + RAW + "zz", stdin=b"hi")
    assert r.code == EXIT_USAGE and "Traceback" not in r.err
    assert f"'gpt-4o{ESCAPED}zz'" in r.err.splitlines()[0]
    assert not any(c in r.err for c in CONTROLS)


@pytest.mark.parametrize("model", ["q" * 5000, "org/" + "q" * 5000, "./" + "q" * 5000])
def test_a_5000_character_model_id_makes_one_short_line(model):
    """Refused before anything is looked up (no ENAMETOOLONG from a path made of it), the id cut."""
    r = omnitok("count", "-m", model, stdin=b"hi")
    assert r.code == EXIT_USAGE and "Traceback" not in r.err and "Errno" not in r.err, r.err[:400]
    assert len(r.err.splitlines()) == 1 and len(r.err) <= 300, r.err
    assert f"... ({len(model):,} characters)" in r.err


def test_a_long_unknown_model_id_is_cut_to_200_characters():
    model = "q" * 250  # under the 256 an id may have: unknown, and shown cut
    r = omnitok("count", "-m", model, stdin=b"hi")
    assert r.code == EXIT_USAGE
    assert r.err.splitlines()[0] == (
        f"omnitok: error: unknown model '{'q' * 200}'... (250 characters); `omnitok models` lists the "
        "known ones, and --encoding picks an encoding directly"
    )


def test_table_format_escapes_ids_and_keeps_one_row_a_line(tmp_path):
    rec = {"id": f"a{RAW}b", "text": "hello world"}
    bad = {"id": f"c{RAW}", "text": 5}
    data = (json.dumps(rec) + "\n" + json.dumps(bad) + "\n").encode()
    r = omnitok("count", "-m", "gpt-4o", "--format", "table", "--on-error", "record", stdin=data)
    out = r.out.decode()
    assert not any(c in out for c in CONTROLS), out
    lines = out.splitlines()
    assert len(lines) == 5  # title, header, rule, two rows
    assert lines[3].split() == ["0", f"a{ESCAPED}b", "<stdin>:1", "2"]
    assert lines[4].split()[:3] == ["1", f"c{ESCAPED}", "<stdin>:2"]
    # the data outputs keep their bytes: JSONL holds the id exactly
    r = omnitok("count", "-m", "gpt-4o", "--format", "jsonl", stdin=data[: data.index(b"\n") + 1])
    assert json.loads(r.out)["id"] == f"a{RAW}b"


def test_a_provider_message_with_escapes_is_shown_escaped(provider):
    env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": provider.url}
    provider.fail("anthropic", echo_answer("upper", with_raw=True), echo_answer("upper", with_raw=True))
    r = omnitok("count", "--online", "-m", "claude-sonnet-4-5", "--retries", "0", stdin=b"hi", env=env)
    provider.script.clear()
    assert r.code == EXIT_OK, r.err
    assert not any(c in r.err for c in CONTROLS), r.err
    assert ESCAPED in r.err  # what the provider said is shown, escaped
    assert_no_suffix(KEY, r.err)


def test_field_names_from_data_are_escaped_and_cut(tmp_path):
    key = "k" * 300 + RAW
    r = omnitok("count", "-m", "gpt-4o", stdin=json.dumps({key: 1}).encode() + b"\n")
    assert r.code == 1
    assert not any(c in r.err for c in CONTROLS)
    assert f"record has: {'k' * 200}... (307 characters)" in r.err
    long_field = "f" * 5000
    r = omnitok("count", "-m", "gpt-4o", "--field", long_field, stdin=b'{"text": "x"}\n')
    assert f"field '{'f' * 200}'... (5,000 characters) missing (record has: text)" in r.err
    assert len(r.err.splitlines()[0]) < 300
