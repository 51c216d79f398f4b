"""A count API whose tokenizer is hidden from omnitok: a real HTTP server on 127.0.0.1 that speaks
Anthropic's POST /v1/messages/count_tokens (and Bedrock's CountTokens, converse form) in their
wire formats (../shared/reference/provider-apis.md) and counts with a real BPE vocabulary that
omnitok's offline estimate does not use (a Hugging Face tokenizer.json from tests/hf_assets.py:
DeepSeek V3 by default; the estimate reads o200k_base and cl100k_base).

A request counts FRAMING tokens plus its messages' and system's texts, as the real API counts a
one-message request (the text plus framing: ctoc measured 7 on claude-sonnet-4). `rpm` limits
requests per rolling minute: past it the answer is a 429 rate_limit_error with `retry-after`
(seconds) as Anthropic sends it; `fail(...)` queues answers ahead of the normal ones."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import ThreadingHTTPServer

from tests._http import JSONHandler, serve_in_thread
from tests.hf_assets import TOKENIZERS

API_KEY = "sk-test-CALIBRATE-0123456789"
FRAMING = 7


def hidden_tokenizer(label: str = "deepseek"):
    """(count(text) -> int, the tokenizer's Hugging Face id) of a real local BPE."""
    from tokenizers import Tokenizer

    directory, repo = TOKENIZERS[label]
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    return (lambda text: len(tok.encode(text, add_special_tokens=False).ids)), repo


def _error(status: int, kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"}


class MockCountAPI:
    """Serves the routes on a free port until close(); `requests` counts what reached it."""

    def __init__(self, label: str = "deepseek", api_key: str = API_KEY, rpm: int | None = None, delay: float = 0.0):
        self.count, self.repo = hidden_tokenizer(label)
        self.api_key = api_key
        self.rpm = rpm
        self.delay = delay
        self.requests = 0
        self.limited = 0  # 429s sent for the rate limit
        self.script: deque = deque()  # (status, headers, body) answered first
        self._times: deque = deque()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = serve_in_thread(self.server)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def fail(self, *answers: tuple) -> None:
        """Queue (status, headers, body) answers, served before the normal ones."""
        self.script.extend(answers)

    def _admit(self) -> float | None:
        """None when a request may pass the rate limit now, else the seconds to wait."""
        if self.rpm is None:
            return None
        now = time.monotonic()
        with self._lock:
            while self._times and now - self._times[0] >= 60:
                self._times.popleft()
            if len(self._times) >= self.rpm:
                self.limited += 1
                return 60 - (now - self._times[0])
            self._times.append(now)
        return None

    def _handler(self):
        mock = self

        class Handler(JSONHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                with mock._lock:
                    mock.requests += 1
                    scripted = mock.script.popleft() if mock.script else None
                if mock.delay:
                    time.sleep(mock.delay)
                if scripted is not None:
                    return self._send(scripted[0], scripted[2], scripted[1])
                h = {k.lower(): v for k, v in self.headers.items()}
                if h.get("content-type") != "application/json":
                    return self._send(400, _error(400, "invalid_request_error", "content-type"))
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._send(400, _error(400, "invalid_request_error", "body is not JSON"))
                if self.path == "/v1/messages/count_tokens":
                    return self._anthropic(body, h)
                if self.path.startswith("/model/") and self.path.endswith("/count-tokens"):
                    return self._bedrock(body, h)
                return self._send(404, _error(404, "not_found_error", f"no route {self.path}"))

            def _limited(self) -> bool:
                wait = mock._admit()
                if wait is None:
                    return False
                self._send(
                    429,
                    _error(429, "rate_limit_error", "Number of requests has exceeded your rate limit"),
                    {"retry-after": str(max(1, round(wait)))},
                )
                return True

            def _anthropic(self, body, h):
                key = h.get("x-api-key") or h.get("authorization", "").removeprefix("Bearer ")
                if key != mock.api_key:
                    return self._send(401, _error(401, "authentication_error", "invalid x-api-key"))
                if not h.get("anthropic-version"):
                    return self._send(400, _error(400, "invalid_request_error", "anthropic-version header required"))
                messages = body.get("messages")
                if "max_tokens" in body or not isinstance(messages, list) or not messages or not body.get("model"):
                    return self._send(400, _error(400, "invalid_request_error", "bad body"))
                if self._limited():
                    return None
                texts = [
                    m["content"] if isinstance(m["content"], str) else "".join(b["text"] for b in m["content"])
                    for m in messages
                ]
                system = body.get("system")
                if system:
                    texts.append(system if isinstance(system, str) else "".join(b["text"] for b in system))
                n = FRAMING + sum(mock.count(t) for t in texts) + 3 * (len(texts) - 1)
                return self._send(200, {"input_tokens": n})

            def _bedrock(self, body, h):
                if not h.get("authorization", "").startswith("AWS4-HMAC-SHA256 Credential=") or not h.get("x-amz-date"):
                    return self._send(403, {"message": "The request signature we calculated does not match"})
                conv = (body.get("input") or {}).get("converse")
                if not conv:
                    return self._send(
                        400, {"message": "input.converse is required"}, {"x-amzn-ErrorType": "ValidationException"}
                    )
                if self._limited():
                    return None
                texts = ["".join(b["text"] for b in m["content"]) for m in conv["messages"]]
                texts += [s["text"] for s in conv.get("system", [])]
                n = FRAMING + sum(mock.count(t) for t in texts) + 3 * (len(texts) - 1)
                return self._send(200, {"inputTokens": n})

        return Handler
