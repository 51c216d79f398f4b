"""`omnitok serve`'s /docs in a real headless browser (Chromium from Debian) with the network off:
every request the page makes goes to the server itself (anything else is sent to a proxy that
does not exist, and recorded), the page renders the API's operations, and "Try it out" on
POST /count-tokens gets 200. Driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
no websocket library needed)."""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time

import pytest

from tests.serve_server import Server

pytest.importorskip("fastapi", reason="omnitok serve needs the serve extra: pip install 'omnitok[serve]'")
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium)")


class DevTools:
    """Chromium with the DevTools protocol on fds 3 (commands in) and 4 (answers and events out)."""

    def __init__(self, tmp):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Out of the way of 3 and 4 first, so that placing one cannot overwrite the other.
        high_r, high_w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (to_chrome_r, from_chrome_w))

        def fds():
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe"]
            + ["--proxy-server=http://127.0.0.1:9", f"--user-data-dir={tmp}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=fds,
            pass_fds=(3, 4, high_r, high_w),  # kept open past the child's fd closing
        )
        for fd in (to_chrome_r, from_chrome_w, high_r, high_w):
            os.close(fd)
        self._next = 0
        self._buf = b""
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise EOFError("Chromium closed its pipe")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self._next:
                assert "error" not in answer, answer
                return answer["result"]
            self.events.append(answer)

    def close(self):
        os.close(self._to_chrome)
        os.close(self._from_chrome)
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("docs"))
    yield srv
    srv.stop()


# Click "Try it out" on POST /count-tokens, give it a body, Execute; React reads a textarea's value
# through its own setter, so the body is set with the native one and an input event.
TRY_IT = """
(() => {
  const block = [...document.querySelectorAll('.opblock-post')]
    .find(b => b.querySelector('.opblock-summary-path')?.dataset.path === '/count-tokens');
  if (!block.classList.contains('is-open')) block.querySelector('.opblock-summary-control').click();
  return 'opened';
})()
"""
FILL = """
(() => {
  const block = [...document.querySelectorAll('.opblock-post')]
    .find(b => b.querySelector('.opblock-summary-path')?.dataset.path === '/count-tokens');
  const tryOut = block.querySelector('.try-out__btn');
  if (tryOut && !tryOut.classList.contains('cancel')) { tryOut.click(); return 'clicked'; }
  const area = block.querySelector('textarea.body-param__text');
  if (!area) return 'waiting';
  const set = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set;
  set.call(area, JSON.stringify({text: 'Hello, world!', model_id: 'gpt-4'}));
  area.dispatchEvent(new Event('input', {bubbles: true}));
  block.querySelector('.execute').click();
  return 'executed';
})()
"""
STATUS = """
(() => {
  const block = [...document.querySelectorAll('.opblock-post')]
    .find(b => b.querySelector('.opblock-summary-path')?.dataset.path === '/count-tokens');
  const cell = block.querySelector('.live-responses-table tr.response .response-col_status');
  const body = block.querySelector('.live-responses-table .microlight, .live-responses-table pre');
  return cell ? JSON.stringify([cell.textContent.trim(), body ? body.textContent : '']) : '';
})()
"""


def test_docs_render_and_try_it_out_with_the_network_off(server, tmp_path):
    chrome = DevTools(tmp_path / "profile")
    try:
        target = chrome.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = chrome.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        chrome.send("Network.enable", session=session)
        chrome.send("Runtime.enable", session=session)
        chrome.send("Page.navigate", {"url": f"{server.url}/docs"}, session=session)

        def evaluate(js: str):
            r = chrome.send("Runtime.evaluate", {"expression": js, "returnByValue": True}, session=session)
            return r["result"].get("value")

        def until(js: str, ok, what: str, timeout: float = 30):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                value = evaluate(js)
                if ok(value):
                    return value
                time.sleep(0.2)
            raise AssertionError(f"{what}: {value!r}")

        paths = until(
            "[...document.querySelectorAll('.opblock-summary-path')].map(e => e.dataset.path)",
            lambda v: v and "/count-tokens" in v,
            "the page did not render the operations",
        )
        assert {"/count-tokens", "/count-tokens/batch", "/compress", "/validate"} <= set(paths)
        evaluate(TRY_IT)
        until(FILL, lambda v: v == "executed", "Try it out could not be filled in")
        status, body = json.loads(until(STATUS, bool, "no response appeared"))
        assert status == "200", body
        assert json.loads(body)["token_count"] == 4  # tiktoken: "Hello, world!" is 4 gpt-4 tokens
        urls = [e["params"]["request"]["url"] for e in chrome.events if e.get("method") == "Network.requestWillBeSent"]
        assert urls and all(u.startswith(server.url) or u.startswith("data:") for u in urls), urls
        failed = [e["params"] for e in chrome.events if e.get("method") == "Network.loadingFailed"]
        assert not failed, failed
    finally:
        chrome.close()
