"""A real HTTP server on 127.0.0.1 that speaks the providers' count-token wire formats
(../shared/reference/provider-apis.md), validates what clients send, and can be told to fail."""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from urllib.parse import unquote

from tests._http import JSONHandler, serve_in_thread

API_KEY = "sk-test-SECRET-0123456789"


def words(text: str) -> int:
    """The mock's deterministic 'tokenizer': whitespace-separated words."""
    return len(text.split())


# A pretokenizer in the manner of o200k's (one token per piece): a word with one leading
# non-letter, up to 3 digits, a run of punctuation with the line breaks after it, line breaks,
# spaces. Unlike `words`, whitespace and punctuation are tokens and neighbours can merge.
_PIECES = re.compile(r"(?:[^\r\n\w]|_)?[^\W\d_]+|\d{1,3}| ?(?:[^\s\w]|_)+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def pieces(text: str) -> int:
    """A more realistic mock tokenizer (see _PIECES)."""
    return len(_PIECES.findall(text))


@dataclass
class ClaudeModel:
    """How the mock's Anthropic and Bedrock routes count for one model id. A request costs
    `framing` tokens plus its messages' text for one user message (3 a message, plus `framing - 3`
    once, for more); `framing` may be a callable, asked once a request (a framing that changes).
    A message whose first character is in `glue` merges that character's piece into the framing's
    last token, one token less (ctoc saw the framing depend on the first character)."""

    framing: int | Callable[[], int] = 3
    tokenize: Callable[[str], int] = words
    glue: str = ""

    def message(self, text: str) -> int:
        """The tokens one message's text adds (its 3 framing tokens not included)."""
        return self.tokenize(text) - (1 if text[:1] and text[0] in self.glue else 0)


PUNCTUATION = "<([{\"'#*-.,;:!?/\\|@$%&=+~`^_>)]}§"
TOOL_COST = 100  # the mock's price of one tool definition


def _tools_ok(tools, name_key, schema_path) -> bool:
    """Each tool has a string name and an object schema at schema_path (a tuple of keys)."""
    for tool in tools:
        schema = tool
        for key in schema_path:
            schema = schema.get(key) if isinstance(schema, dict) else None
        if not isinstance(tool.get(name_key) if name_key else tool, (str, dict)) or not isinstance(schema, dict):
            return False
    return True


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content)


def error_body(route: str, status: int, message: str):
    """(headers, body) of an error answer in the route's own wire format, with `message` where
    the provider puts its words (the text a client shows)."""
    if route == "anthropic":
        kinds = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error", 500: "api_error"}
        kind = kinds.get(status, "invalid_request_error")
        return {}, {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"}
    if route == "gemini":
        kinds = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}
        return {}, {"error": {"code": status, "message": message, "status": kinds.get(status, "INVALID_ARGUMENT")}}
    if route == "bedrock":
        kinds = {401: "UnrecognizedClientException", 403: "AccessDeniedException", 500: "InternalServerException"}
        return {"x-amzn-ErrorType": kinds.get(status, "ValidationException")}, {"message": message}
    if route in ("tgi", "llamacpp"):
        return {}, {"error": message, "error_type": "validation"}
    return {}, {"error": {"message": message, "type": "BadRequestError", "param": None, "code": status}}


def credential(request: dict) -> str:
    """The credential a request carried, as the server received it (to echo it back)."""
    h = {k.lower(): v for k, v in request["headers"].items()}
    for name in ("x-api-key", "x-goog-api-key", "authorization"):
        if h.get(name):
            return h[name].removeprefix("Bearer ")
    return ""


class MockProviders:
    """Serves the routes; `fail` queues answers ahead of the normal ones. A queued body may be
    bytes, a JSON-able value, an iterator of bytes (streamed, for as long as it yields and the
    client reads), or a callable given the request ({"route", "path", "headers", "raw"}) that
    returns one of those (to echo what the client sent)."""

    def __init__(self, api_key: str = API_KEY, aws_access_key: str = "AKIDTEST"):
        self.api_key = api_key
        self.aws_access_key = aws_access_key
        self.requests: list[dict] = []
        self.claude: dict[str, ClaudeModel] = {}  # model id -> its counting; others: ClaudeModel()
        self.script: dict[str, deque] = {}  # route -> queued (status, headers, body, delay)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = serve_in_thread(self.server)

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def fail(self, route: str, *responses: tuple) -> None:
        """Queue responses for a route ('anthropic', 'gemini', 'vllm', 'bedrock'): (status, headers,
        body[, delay seconds]); served before the normal answer."""
        self.script.setdefault(route, deque()).extend(responses)

    def count(self, route: str) -> int:
        return sum(1 for r in self.requests if r["route"] == route)

    def claude_count(self, model: str, messages: list[str], system: list[str]) -> int:
        """What the Anthropic and Bedrock routes answer for these texts (tools aside)."""
        m = self.claude.get(model, ClaudeModel())
        framing = m.framing() if callable(m.framing) else m.framing
        n = sum(m.message(t) + 3 for t in messages) + (framing - 3 if messages else 0)
        return n + sum(m.tokenize(t) + 3 for t in system)

    def _handler(self):
        mock = self

        class Handler(JSONHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                route, answer = self._route(raw)
                request = {"route": route, "path": self.path, "headers": dict(self.headers), "raw": raw}
                mock.requests.append(request)
                queue = mock.script.get(route)
                if queue:
                    status, headers, body, *delay = queue.popleft()
                    if delay:
                        time.sleep(delay[0])
                    return self._send(status, body(request) if callable(body) else body, headers)
                self._send(*answer)

            def _route(self, raw: bytes):
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    return "bad", (400, {"error": {"message": "body is not JSON"}})
                h = {k.lower(): v for k, v in self.headers.items()}
                if h.get("content-type") != "application/json":
                    return "bad", (400, {"error": {"message": "content-type must be application/json"}})
                if self.path == "/v1/messages/count_tokens":
                    return "anthropic", self._anthropic(body, h)
                m = re.fullmatch(r"/v1beta/models/([\w.\-]+):countTokens", self.path)
                if m:
                    return "gemini", self._gemini(body, h, m.group(1))
                if self.path == "/tokenize":
                    return "vllm", self._vllm(body, h)
                if self.path == "/tgi/tokenize":
                    n = words(body["inputs"]) + (1 if body.get("add_special_tokens", True) else 0)
                    return "tgi", (200, [{"id": i, "text": "w", "start": 0, "stop": 1} for i in range(n)])
                if self.path == "/llamacpp/tokenize":
                    n = words(body["content"]) + (1 if body.get("add_special") else 0)
                    return "llamacpp", (200, {"tokens": list(range(n))})
                m = re.fullmatch(r"/model/([\w.:%\-]+)/count-tokens", self.path)
                if m:  # modelId is one URI label, percent-encoded as botocore sends it (`v1%3A0`)
                    return "bedrock", self._bedrock(body, h, unquote(m.group(1)))
                return "unknown", (404, {"error": {"message": f"no route {self.path}"}})

            def _anthropic(self, body, h):
                key = h.get("x-api-key") or h.get("authorization", "").removeprefix("Bearer ")
                if key != mock.api_key:
                    return 401, {
                        "type": "error",
                        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
                    }
                if not h.get("anthropic-version"):
                    return 400, {"type": "error", "error": {"type": "invalid_request_error", "message": "no version"}}
                if "max_tokens" in body or not isinstance(body.get("messages"), list) or not body.get("model"):
                    return 400, {"type": "error", "error": {"type": "invalid_request_error", "message": "bad body"}}
                for m in body["messages"]:
                    if m.get("role") not in ("user", "assistant"):
                        return 400, {"type": "error", "error": {"type": "invalid_request_error", "message": "role"}}
                system = body.get("system")
                texts = [_text_of(m["content"]) for m in body["messages"]]
                n = mock.claude_count(body["model"], texts, [] if system is None else [_text_of(system)])
                tools = body.get("tools", [])
                if not _tools_ok(tools, "name", ("input_schema",)):
                    return 400, {"type": "error", "error": {"type": "invalid_request_error", "message": "tools"}}
                return 200, {"input_tokens": n + TOOL_COST * len(tools)}

            def _gemini(self, body, h, model):
                if h.get("x-goog-api-key") != mock.api_key:
                    return 403, {"error": {"code": 403, "message": "API key not valid", "status": "PERMISSION_DENIED"}}
                if ("contents" in body) == ("generateContentRequest" in body):
                    return 400, {"error": {"code": 400, "message": "exactly one", "status": "INVALID_ARGUMENT"}}
                req = body.get("generateContentRequest")
                if req is not None and req.get("model") != f"models/{model}":
                    return 400, {"error": {"code": 400, "message": "model", "status": "INVALID_ARGUMENT"}}
                contents = (req or body)["contents"]
                n = sum(words(p["text"]) for c in contents for p in c["parts"])
                if req and "systemInstruction" in req:
                    n += sum(words(p["text"]) for p in req["systemInstruction"]["parts"])
                decls = [d for t in (req or {}).get("tools", []) for d in t["functionDeclarations"]]
                if not _tools_ok(decls, "name", ("parameters",)):
                    return 400, {"error": {"code": 400, "message": "tools", "status": "INVALID_ARGUMENT"}}
                n += TOOL_COST * len(decls)
                return 200, {
                    "totalTokens": n,
                    "cachedContentTokenCount": 0,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}],
                }

            def _vllm(self, body, h):
                if "model" not in body or ("prompt" in body) == ("messages" in body):
                    return 400, {"error": {"message": "bad", "type": "BadRequestError", "param": None, "code": 400}}
                if "prompt" in body:
                    n = words(body["prompt"]) + (1 if body.get("add_special_tokens", True) else 0)
                else:
                    n = sum(words(_text_of(m["content"])) + 2 for m in body["messages"]) + 1
                return 200, {"count": n, "max_model_len": 8192, "tokens": list(range(n))}

            def _bedrock(self, body, h, model_id):
                auth = h.get("authorization", "")
                ok = re.match(
                    rf"AWS4-HMAC-SHA256 Credential={re.escape(mock.aws_access_key)}/\d{{8}}/us-west-2/bedrock/aws4_request, "
                    r"SignedHeaders=[a-z0-9;\-]+, Signature=[0-9a-f]{64}$",
                    auth,
                )
                if not ok or not h.get("x-amz-date"):
                    return 403, {"message": "The request signature we calculated does not match"}
                if model_id.startswith("us."):
                    return 400, {"message": "The provided model identifier is invalid."}
                conv = body.get("input", {}).get("converse")
                if not conv:
                    return 400, {"message": "input.converse is required"}
                texts = [_text_of(m["content"]) for m in conv["messages"]]
                n = mock.claude_count(model_id, texts, [s["text"] for s in conv.get("system", [])])
                specs = [t.get("toolSpec", {}) for t in conv.get("toolConfig", {}).get("tools", [])]
                if not _tools_ok(specs, "name", ("inputSchema", "json")):
                    return 400, {"message": "toolConfig.tools[].toolSpec is invalid"}
                return 200, {"inputTokens": n + TOOL_COST * len(specs)}

        return Handler


ANSWER = {"input_tokens": 7, "totalTokens": 7, "inputTokens": 7, "count": 7, "tokens": list(range(7))}


class Recorder:
    """Another loopback server: records every request that reaches it (any method) and answers
    each with a plausible count in every provider's shape, so a client that followed a redirect
    here would take it for an exact count. It should receive nothing. `answer(method, path)`, if
    given, gives the (status, JSON body) of each request instead."""

    def __init__(self, answer=None):
        self.requests: list[dict] = []
        recorder = self

        class Handler(JSONHandler):
            def _any(self):
                raw = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
                recorder.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "raw": raw}
                )
                status, body = (200, ANSWER) if answer is None else answer(self.command, self.path)
                self._send(status, body)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = serve_in_thread(self.server)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
