"""A provider that answers slowly, or asks for long waits, is held to --timeout; one that names the
key in a redirect never gets it shown. Found by an adversarial pass: a status line and headers sent
a byte at a time (or `100 Continue` after `100 Continue`) held `omnitok count --online` for ever,
a `retry-after` of a day was slept on for 60 s a retry, and a 3xx's Location was printed unmasked.
Then by rereading: an error's body was read under a deadline of its own (a request could take twice
--timeout).

The providers are real servers on 127.0.0.1: raw sockets for what no HTTP server library sends,
tests/mock_providers.py for the rest. Through the real console script, each run under a timeout
that the old code ran past."""

from __future__ import annotations

import select
import socket
import threading
import time

import orjson
import pytest

from omnitok.errors import EXIT_NOT_EXACT
from tests.console import omnitok
from tests.mock_providers import API_KEY, MockProviders, error_body

ARGS = ("count", "-m", "claude-sonnet-4-5", "--online", "--strict", "--no-cache")


class Trickle:
    """A server that reads a request and then sends `answer(conn)`'s bytes slowly, until closed."""

    def __init__(self, mode: str):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.mode, self.stop = mode, threading.Event()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[float] = []  # seconds from each request to the client's leaving
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _drip(self, conn, data: bytes, every: float) -> None:
        """Send `data` a byte every `every` seconds, until the client leaves (then noted in held)."""
        for b in data:
            if select.select([conn], [], [], every)[0] and not conn.recv(65536):
                self.held.append(time.monotonic() - self.start)
                return
            if self.stop.is_set():
                return
            conn.sendall(bytes([b]))

    def _answer(self, conn):
        with conn:
            try:
                conn.recv(65536)
                self.start = time.monotonic()
                if self.mode == "headers":  # a status line and headers, a byte every 0.2 s
                    self._drip(conn, b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 10_000, 0.2)
                elif self.mode == "error":  # an error's headers over 2.4 s, then its body a byte every 0.1 s
                    head = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100000\r\n\r\n"
                    self._drip(conn, head, 2.4 / len(head))
                    self._drip(conn, b"x" * 100_000, 0.1)
                else:  # interim answers, never the final one
                    while not self.stop.wait(0.05):
                        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                self.held.append(time.monotonic() - self.start)

    def left(self, wait: float = 5.0) -> None:
        """Wait until the server has seen the client leave (its process has ended: it has)."""
        end = time.monotonic() + wait
        while not self.held and time.monotonic() < end:
            time.sleep(0.01)

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("mode", ["headers", "continue"])
def test_an_answer_that_never_ends_its_headers_is_cut_off_at_the_timeout(mode):
    server = Trickle(mode)
    try:
        env = {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": server.url}
        r = omnitok(*ARGS, "--timeout", "1", "--retries", "1", "--text", "hello", env=env, timeout=30)
    finally:
        server.close()
    assert r.code == EXIT_NOT_EXACT and r.out == b""
    assert r.err.startswith(f"omnitok: error: anthropic: cannot reach {server.url}: timed out"), r.err


def test_an_error_body_is_read_within_the_same_timeout():
    """An error answer's body was read under a deadline of its own, begun once its headers had
    come: headers sent over 2.4 s of a 3 s --timeout, then a body a byte at a time, held the
    request 5.4 s. The whole exchange now ends at the request's deadline (the client leaves
    ~3 s after sending), and the message says the body could not be read."""
    server = Trickle("error")
    try:
        env = {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": server.url}
        r = omnitok(*ARGS, "--timeout", "3", "--retries", "0", "--text", "hello", env=env, timeout=30)
        server.left()
    finally:
        server.close()
    assert r.code == EXIT_NOT_EXACT and r.out == b"", r.err
    assert r.err.startswith("omnitok: error: anthropic: HTTP 500: the error body could not be read"), r.err
    assert len(server.held) == 1 and 2.9 < server.held[0] < 4.5, server.held


@pytest.fixture
def mock():
    m = MockProviders()
    yield m
    m.close()


def test_a_redirect_naming_the_key_is_shown_masked(mock):
    """The Location is the provider's text: scrubbed as any (the key whole, and a run of 8 of its
    characters), never followed."""
    for location in (f"http://{API_KEY}.evil.example/steal", f"https://{API_KEY[5:20]}.evil.example/x"):
        mock.fail("anthropic", (302, {"location": location}, b"{}"))
        env = {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": mock.url}
        r = omnitok(*ARGS, "--text", "hello", env=env)
        assert r.code == EXIT_NOT_EXACT, r.err
        assert "HTTP 302: the API redirected to http" in r.err and "***" in r.err
        assert API_KEY not in r.err and API_KEY[5:20] not in r.err and API_KEY[8:16] not in r.err


def test_a_retry_after_past_a_minute_gets_the_ordinary_backoff(mock):
    """`retry-after: 86400` (a quota's reset) was slept on for 60 s a retry; now the retry comes
    after the ordinary backoff (at most 8 s), as the providers' SDKs do, and counts exactly."""
    busy = error_body("anthropic", 429, "slow down")[1]
    mock.fail("anthropic", (429, {"retry-after": "86400"}, busy), (429, {"retry-after-ms": "1e12"}, busy))
    env = {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": mock.url}
    r = omnitok(
        *ARGS, "--retries", "2", "--timeout", "5", "--format", "jsonl", "--text", "hi there", env=env, timeout=40
    )
    assert r.code == 0, r.err
    assert orjson.loads(r.out)["exact"] is True and mock.count("anthropic") >= 3


@pytest.mark.parametrize("suffix", ["/base?token=Q&x=1", "#frag"])
def test_a_base_url_with_a_query_or_fragment_is_refused(mock, suffix):
    """The API's path is added after the base: `VLLM_ENDPOINT=http://h/base?token=Q` sent
    `POST /base?token=Q/tokenize`, and `http://h#frag` sent `POST /` (the path cut off with the
    fragment), each a 404 at best; so for every provider. Now one warning (an error under
    --strict), nothing sent."""
    env = {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": mock.url + suffix}
    r = omnitok(*ARGS, "--text", "hi", env=env)
    assert r.code == EXIT_NOT_EXACT and mock.requests == [], r.err
    assert f"anthropic: the base URL {mock.url} has a query or a fragment ('?', '#'); give the base alone" in r.err
    assert "token=Q" not in r.err
