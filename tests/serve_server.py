"""`omnitok serve` as a user starts it: the console script in a subprocess on a free 127.0.0.1
port, up once /readyz (or /healthz) answers 200. Shared by tests/test_serve.py and tests/security."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.console import OMNITOK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ModuleClient:
    """One httpx.Client for a test module, made on first use: httpx.post and httpx.get make one
    a call, ~20 ms of CPU for its SSL context. `client()` gives it (thread-safe to share); the
    module's `closing()` fixture (autouse) closes it after the module."""

    def __init__(self, **kwargs):
        self._kwargs = kwargs
        self._client: httpx.Client | None = None

    def __call__(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(**self._kwargs)
        return self._client

    def closing(self):
        @pytest.fixture(scope="module", autouse=True)
        def close_client():
            yield
            if self._client is not None:
                self._client.close()
                self._client = None

        return close_client


class Server:
    """`omnitok serve ARGS` on a free port, up once /readyz answers 200."""

    def __init__(self, tmp: Path, *args: str, env: dict | None = None, ready: bool = True):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"serve-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "OMNITOK_CACHE_DIR": str(tmp / "cache"), **(env or {})}
        full_env.pop("L3_CACHE_URL", None)
        self.proc = subprocess.Popen(
            [OMNITOK, "serve", "--port", str(self.port), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        deadline = time.monotonic() + 60
        # One client for the whole wait: a new one each poll costs ~20 ms of CPU (its SSL context).
        with httpx.Client(timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"omnitok serve exited {self.proc.returncode}:\n{self.log()}")
                try:
                    r = client.get(f"{self.url}/readyz" if ready else f"{self.url}/healthz")
                    if r.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"omnitok serve did not get ready:\n{self.log()}")
                time.sleep(0.1)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code
