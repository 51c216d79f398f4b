"""Provider calls still in flight when a batch fails, or when the user presses Ctrl-C, are not
waited for by the command line: it falls back to the offline count (or says "interrupted") at
once, and the process ends without joining the threads that wait on answers no one will read.

The provider here is a real HTTP server on 127.0.0.1 speaking Anthropic's count_tokens format
that holds every request for a text with "held" in it until the test ends. Under the old thread
pool, joined when the batch failed and again at exit, each run below waited for those answers:
the call's timeout (30 s) was reached first, and the test failed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from http.server import ThreadingHTTPServer

import orjson
import pytest

from omnitok import errors
from tests._http import JSONHandler, serve_in_thread
from tests.console import OMNITOK, omnitok

KEY = "sk-test-in-flight-0123456789"
MODEL = "claude-sonnet-4-5"


class Held:
    """The provider: answers "held" texts only once released, "bad" texts with a 400 once
    `before_bad` held requests have arrived, and other texts (the framing probes) at once."""

    def __init__(self, before_bad: int = 0):
        self.release = threading.Event()
        self.arrived = threading.Semaphore(0)
        self.before_bad = before_bad
        self.held = 0  # requests for held texts received
        self.lock = threading.Lock()
        outer = self

        class Handler(JSONHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                text = json.dumps(json.loads(body))
                if "held" in text:
                    with outer.lock:
                        outer.held += 1
                    outer.arrived.release()
                    outer.release.wait(60)
                    self._send(200, {"input_tokens": 7})
                elif "bad" in text:
                    for _ in range(outer.before_bad):
                        outer.arrived.acquire(timeout=20)
                    self._send(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}})
                else:
                    self._send(200, {"input_tokens": 3 + text.count("x")})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        serve_in_thread(self.server)
        self.env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{self.server.server_port}"}

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def held():
    servers = []

    def make(before_bad: int = 0) -> Held:
        servers.append(Held(before_bad))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def interrupted(provider: Held, args: list[str], in_flight: int, env: dict | None = None) -> tuple[int, bytes, bytes]:
    """Run `omnitok ARGS`, Ctrl-C it once `in_flight` held calls have reached the provider; its
    exit status, stdout and stderr (the call fails if it does not end within 25 s of the signal)."""
    p = subprocess.Popen(
        [OMNITOK, *args],
        env={**os.environ, **provider.env, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(in_flight):
            assert provider.arrived.acquire(timeout=60)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=25)
    finally:
        p.kill()
        p.wait()
    return p.returncode, out, err


def test_a_failed_batch_falls_back_without_waiting_for_the_calls_in_flight(held):
    provider = held(before_bad=3)  # the 400 comes once three held calls are in flight
    rows = b"".join(orjson.dumps({"text": t}) + b"\n" for t in ("held one", "held two", "held three", "bad four"))
    r = omnitok("count", "--online", "--timeout", "30", "-m", MODEL, stdin=rows, env=provider.env, timeout=25)
    assert r.code == 0, r.err
    out = [orjson.loads(line) for line in r.out.splitlines()]
    assert [(x["pos"], x["strategy"], x["exact"]) for x in out] == [(i, "claude-calibrated", False) for i in range(4)]
    (warning,) = r.err.splitlines()
    assert warning.startswith("omnitok: warning: anthropic: HTTP 400: invalid_request_error: no; counting the rest")
    assert not provider.release.is_set() and KEY not in r.err


def test_ctrl_c_with_calls_in_flight_ends_at_once(held, tmp_path):
    provider = held()
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(b"".join(orjson.dumps({"text": f"held {i}"}) + b"\n" for i in range(4)))
    args = ["count", "--online", "--timeout", "30", "-m", MODEL, str(rows)]
    code, out, err = interrupted(provider, args, in_flight=4)  # every record's call
    assert (code, out, err) == (errors.EXIT_INTERRUPTED, b"", b"omnitok: interrupted\n")
    assert not provider.release.is_set()


def test_ctrl_c_during_calibrate_sends_no_more_calls(held, tmp_path):
    """calibrate counts its sample on a pool: a Ctrl-C left every queued text to be sent, the
    pool's exit waiting for all of them (the user's key spent after they asked to stop)."""
    provider = held()
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(b"".join(orjson.dumps({"text": f"held text number {i}"}) + b"\n" for i in range(40)))
    args = ["calibrate", "-m", MODEL, "--sample", "40", "--concurrency", "4", "--timeout", "30", str(corpus)]
    home = {"OMNITOK_HOME": str(tmp_path / "home")}
    code, _, err = interrupted(provider, args, in_flight=4, env=home)  # the pool's four calls
    assert (code, err.decode().splitlines()[-1]) == (errors.EXIT_INTERRUPTED, "omnitok: interrupted")
    assert provider.held == 4 and not provider.release.is_set()
