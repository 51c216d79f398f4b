"""Issue 23, items 4, 5 and 6: the server's edge, driven through a real `omnitok serve`.

Bodies: a body that has not arrived whole within --body-timeout gets 408 and its connection
closed; the bytes of the bodies being read at once are capped (--max-inflight-mb: 503 with Retry-After); 1,000
connections trickling bodies do not stop other clients being served, and are all dropped.
Secure defaults: a non-loopback --host without a token file is refused; Host headers other than
the names answered get 400 before auth and before the body; no file path in any response; the L3
password never in the workers' config nor in a repr. /metrics: 3,000 client-chosen model ids do
not add a series."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import socket
import time
from importlib.util import find_spec

import httpx
import pytest

from tests.console import omnitok
from tests.serve_server import Server, free_port

# Looked up, not imported: each xdist worker collects this file, and only the servers and two
# in-process tests below use FastAPI (importing it here cost every worker ~0.25 s of CPU).
pytestmark = pytest.mark.skipif(find_spec("fastapi") is None, reason="omnitok serve needs the serve extra")

TOKEN = "edge-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY_TIMEOUT = 2.0
MB = 1024 * 1024
L3_PASSWORD = "l3-Pa55word-never-shown-0123"


def _raise_fd_limit(want: int) -> int:
    """The soft limit on open files raised toward `want` (the server started after inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """Bound to 127.0.0.1 (the loopback names only), with a token, 2 s for a body to arrive, 1 MB
    bodies, 4 MB of bodies read at once."""
    _raise_fd_limit(4096)
    tmp = tmp_path_factory.mktemp("edge")
    (tmp / "token").write_text(TOKEN + "\n")
    srv = Server(
        tmp,
        "--auth-token-file",
        str(tmp / "token"),
        "--body-timeout",
        str(BODY_TIMEOUT),
        "--max-body-mb",
        "1",
        "--max-inflight-mb",
        "4",
        "--cpu-workers",  # no /validate nor /compress here: one CPU worker, not one a core
        "1",
        "--log-level",
        "warning",
    )
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log(), srv.log()


@pytest.fixture(scope="module")
def client(edge):
    """One keep-alive client for the module's plain requests (each new one builds an SSL context:
    ~20 ms of CPU)."""
    with httpx.Client(base_url=edge.url, timeout=30) as c:
        yield c


def head(method: str, path: str, host: str | None, headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(port: int, data: bytes, timeout: float = 15) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    return s


def reply(s: socket.socket, wait_close: bool = True) -> tuple[int, dict, bytes, bool]:
    """(status, headers, body, closed): one response, and whether the server then closed it
    (waited for up to 3 s when `wait_close`; else False)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"closed without a response: {data!r}"
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = s.recv(65536)
        assert chunk, "closed mid-response"
        body += chunk
    if not wait_close:
        return int(status_line.split()[1]), headers, body, False
    s.settimeout(3)
    try:
        closed = s.recv(1) == b""
    except TimeoutError:
        closed = False
    except ConnectionResetError:
        closed = True
    return int(status_line.split()[1]), headers, body, closed


def error_code(body: bytes) -> str:
    return json.loads(body)["error"]["code"]


# --- item 4: bodies ---------------------------------------------------------------------------------


def test_a_body_that_does_not_arrive_in_time_is_408_and_the_connection_closed(edge, client):
    host = f"127.0.0.1:{edge.port}"
    post = {**AUTH, "Content-Type": "application/json"}
    # A body trickled a byte every 0.25 s: the deadline is the whole body's, not a gap's.
    s = connect(edge.port, head("POST", "/count-tokens", host, {**post, "Content-Length": "500"}) + b'{"text": "')
    started = time.monotonic()
    s.settimeout(0.25)
    got = b""
    while not got and time.monotonic() - started < 15:
        with contextlib.suppress(OSError):  # the server answered and closed: stop sending
            s.sendall(b"a")
        with contextlib.suppress(TimeoutError):
            got = s.recv(1, socket.MSG_PEEK)
    elapsed = time.monotonic() - started
    s.settimeout(10)
    status, headers, body, closed = reply(s)
    s.close()
    assert status == 408 and error_code(body) == "body_timeout"
    assert headers["connection"] == "close" and closed
    assert elapsed >= BODY_TIMEOUT - 0.2, elapsed  # not before the deadline
    # A chunked body that stalls: the same.
    s = connect(
        edge.port,
        head("POST", "/count-tokens", host, {**post, "Transfer-Encoding": "chunked"}) + b'a\r\n{"text": "\r\n',
    )
    status, headers, body, closed = reply(s)
    s.close()
    assert status == 408 and headers["connection"] == "close" and closed
    # A body sent whole is unaffected.
    r = client.post("/count-tokens", json={"text": "Hello, world!", "model_id": "gpt-4"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["token_count"] == 4


def test_bodies_being_read_at_once_are_capped_and_released(edge, client):
    host = f"127.0.0.1:{edge.port}"
    post = {**AUTH, "Content-Type": "application/json"}
    declared = int(0.9 * MB)
    # Uploads that only declare large bodies hold nothing: four declaring 1 MB each (the whole
    # 4 MB, a byte sent) denied every POST for --body-timeout when the declared sizes counted.
    idle = [
        connect(edge.port, head("POST", "/count-tokens", host, {**post, "Content-Length": str(MB)}) + b"{")
        for _ in range(4)
    ]
    time.sleep(0.3)  # the server has read their headers
    small = json.dumps({"text": "Hello, world!", "model_id": "gpt-4"})
    r = client.post("/count-tokens", content=small, headers=post)
    assert r.status_code == 200 and r.json()["token_count"] == 4
    for s in idle:
        s.close()
    # Four bodies of 0.9 MB with all but their last byte sent: 3.6 MB of the 4 MB held.
    held = [
        connect(
            edge.port,
            head("POST", "/count-tokens", host, {**post, "Content-Length": str(declared)})
            + b"{"
            + b"a" * (declared - 2),
        )
        for _ in range(4)
    ]
    time.sleep(0.5)  # the server has read them
    try:
        # A fifth declaring 0.5 MB would pass 4 MB: 503 with Retry-After, nothing read, closed.
        s = connect(edge.port, head("POST", "/count-tokens", host, {**post, "Content-Length": str(MB // 2)}))
        status, headers, body, closed = reply(s)
        s.close()
        assert status == 503 and error_code(body) == "busy"
        assert headers["retry-after"] == "1" and headers["connection"] == "close" and closed
        # A chunked body counts as it arrives: cut off once it would pass the cap.
        s = connect(edge.port, head("POST", "/count-tokens", host, {**post, "Transfer-Encoding": "chunked"}))
        piece = b"a" * 65536
        try:
            for _ in range(8):  # 0.5 MB
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except OSError:
            pass
        status, headers, body, closed = reply(s)
        s.close()
        assert status == 503 and headers["retry-after"] == "1" and closed
        # A small body still fits: the cap counts bytes, not connections.
        r = client.post("/count-tokens", content=small, headers=post)
        assert r.status_code == 200 and r.json()["token_count"] == 4
    finally:
        for s in held:
            s.close()
    # Once those clients have gone, their share is free again.
    big = json.dumps({"text": "a" * (MB // 2), "model_id": "gpt-4"})
    deadline = time.monotonic() + 10
    while (r := client.post("/count-tokens", content=big, headers=post)).status_code == 503:
        assert time.monotonic() < deadline, "the held bodies were never released"
        time.sleep(0.1)
    assert r.status_code == 200


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_1000_trickling_connections_do_not_stop_other_clients(edge):
    n = min(1000, _raise_fd_limit(4096) - 200)
    host = f"127.0.0.1:{edge.port}"
    # 2,000 bytes each: 2 MB in all, inside the 4 MB being read at once (the cap is the next test's).
    headers = head("POST", "/count-tokens", host, {**AUTH, "Content-Length": "2000"}) + b'{"text": "'
    rss_before = _rss_kb(edge.proc.pid)

    async def trickler(started: asyncio.Event, answers: list):
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
        writer.write(headers)
        await writer.drain()
        started.set()
        data = await asyncio.wait_for(reader.read(), 30)  # to EOF: the server must close
        answers.append((time.monotonic(), data))
        writer.close()

    async def main():
        answers: list = []
        events = [asyncio.Event() for _ in range(n)]
        tasks = [asyncio.create_task(trickler(e, answers)) for e in events]
        await asyncio.gather(*(e.wait() for e in events))
        opened = time.monotonic()
        # Meanwhile another client is served, in full, while every trickler is still open.
        latencies = []
        async with httpx.AsyncClient(base_url=edge.url, headers=AUTH, timeout=30) as c:
            for i in range(20):
                t = time.monotonic()
                r = await (c.get("/healthz") if i % 2 else c.post("/count-tokens", json={"text": "hi there"}))
                latencies.append(time.monotonic() - t)
                assert r.status_code == 200
        served = time.monotonic()
        rss_during = _rss_kb(edge.proc.pid)
        await asyncio.gather(*tasks)
        return answers, opened, served, latencies, rss_during

    answers, opened, served, latencies, rss_during = asyncio.run(main())
    assert len(answers) == n
    assert all(data.startswith(b"HTTP/1.1 408") for _, data in answers)  # each answered, then EOF
    # The other client did not wait for them to go: none of its requests took a body timeout
    # (what a server held by the tricklers would make it wait), and it was served in full while
    # tricklers were still open. (It was `served < the first 408`: on a loaded machine the first
    # tricklers, opened ~1.5 s before the last, got their 408s while its 20 requests ran.)
    assert max(latencies) < BODY_TIMEOUT and served < max(t for t, _ in answers)
    last = max(t for t, _ in answers) - opened
    print(
        f"\n{n} tricklers: other client max {max(latencies) * 1000:.1f} ms; all 408 and closed "
        f"{last:.2f} s after they were open; server RSS +{(rss_during - rss_before) / 1024:.1f} MB"
    )
    assert last < BODY_TIMEOUT + 10


# --- item 5: secure defaults ------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "omnitok.example"])
def test_a_non_loopback_host_without_a_token_is_refused(host):
    r = omnitok("serve", "--host", host, "--port", str(free_port()))
    assert r.code == 2, r.err
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "--auth-token-file" in lines[0] and "--no-auth" in lines[0], r.err


def test_no_auth_and_a_token_file_together_are_refused(tmp_path):
    (tmp_path / "token").write_text(TOKEN)
    r = omnitok("serve", "--no-auth", "--auth-token-file", str(tmp_path / "token"), "--port", str(free_port()))
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1


def test_the_config_refuses_what_the_command_refuses():
    from omnitok.errors import UsageError
    from omnitok.serve.config import ServeConfig, is_loopback

    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(host) and ServeConfig(host=host).host_names is not None
    for host in ("0.0.0.0", "::", "::ffff:127.0.0.1", "10.0.0.1", "localhost.evil.example"):
        assert not is_loopback(host)
        with pytest.raises(UsageError, match="--auth-token-file"):
            ServeConfig(host=host)
        assert ServeConfig(host=host, no_auth=True).host_names is None  # any Host, on purpose
    with pytest.raises(UsageError, match="--allowed-host"):
        ServeConfig(allowed_hosts=("evil.example/x",))
    with pytest.raises(UsageError, match="--max-inflight-mb"):
        ServeConfig(max_body_mb=20, max_inflight_mb=10)


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "LOCALHOST", "[::1]", "localhost."])
def test_the_loopback_names_are_answered_with_any_port(edge, name):
    for host in (name, f"{name}:{edge.port}", f"{name}:80"):
        s = connect(edge.port, head("GET", "/healthz", host))
        status, _, body, _ = reply(s, wait_close=False)
        s.close()
        assert status == 200, (host, body)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        f"evil.example:{8001}",
        "127.0.0.1.evil.example",
        "localhost@evil.example",
        "[::2]",
        "",
        # Loopback names made odd: userinfo, a port that is not a number, empty labels, no ']'.
        "localhost:80@evil.example",
        "localhost:abc",
        "localhost..",
        "localhost:",
        "[::1",
        "[::1]x",
    ],
)
def test_other_host_headers_get_400_before_auth_and_before_the_body(edge, host):
    # The probe, without a token: 400, not 200.
    s = connect(edge.port, head("GET", "/healthz", host))
    status, _, body, _ = reply(s, wait_close=False)
    s.close()
    assert status == 400 and error_code(body) == "bad_host"
    assert host.encode() not in body or not host  # the header is not echoed
    # A POST without a token and with a body declared over the limit, none of it sent: 400 (not
    # 401, not 413), at once, and the connection closed.
    s = connect(edge.port, head("POST", "/count-tokens", host, {"Content-Length": str(50 * MB)}))
    status, headers, body, closed = reply(s)
    s.close()
    assert status == 400 and error_code(body) == "bad_host" and headers["connection"] == "close" and closed


def test_two_host_headers_get_400(edge):
    s = connect(edge.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n")
    status, _, _, _ = reply(s, wait_close=False)
    s.close()
    assert status == 400


def test_a_refusal_before_the_body_closes_the_connection(edge):
    """401 with a body declared and unread: the connection closes, so a client that goes on
    trickling its body holds nothing."""
    s = connect(edge.port, head("POST", "/count-tokens", f"127.0.0.1:{edge.port}", {"Content-Length": "1000"}))
    status, headers, _, closed = reply(s)
    s.close()
    assert status == 401 and headers["connection"] == "close" and closed


def test_allowed_host_names_and_star(tmp_path):
    from fastapi.testclient import TestClient

    from omnitok.serve import ServeConfig, create_app

    def statuses(config) -> dict:
        with TestClient(create_app(config)) as c:
            return {
                h: c.get("/healthz", headers={"host": h}).status_code
                for h in ("api.example", "API.example:8443", "a.corp.example", "corp.example", "localhost", "evil")
            }

    # cpu_workers=1: each app's lifespan starts its pool (one interpreter a core by default), unused here
    named = statuses(ServeConfig(allowed_hosts=("api.example", "*.corp.example"), cpu_workers=1))
    assert named == {
        "api.example": 200,
        "API.example:8443": 200,
        "a.corp.example": 200,
        "corp.example": 400,
        "localhost": 400,
        "evil": 400,
    }
    assert set(statuses(ServeConfig(allowed_hosts=("*",), cpu_workers=1)).values()) == {200}
    (tmp_path / "token").write_text(TOKEN)
    bound_wide = ServeConfig(host="0.0.0.0", auth_token_file=str(tmp_path / "token"), cpu_workers=1)
    assert set(statuses(bound_wide).values()) == {200}  # any name: the token guards it


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """A server whose default model's vocabulary is missing (gpt2: r50k_base is not embedded) and
    whose one HF model has a damaged tokenizer.json; two workers; an L3 URL with a password."""
    tmp = tmp_path_factory.mktemp("broken")
    home = tmp / "home"
    model_dir = home / "assets" / "hf" / "acme--damaged"
    model_dir.mkdir(parents=True)
    (model_dir / "tokenizer.json").write_text('{"model": ')
    (model_dir / "tokenizer_config.json").write_text("{}")
    (tmp / "token").write_text(TOKEN + "\n")
    dead = free_port()
    srv = Server(
        tmp,
        "--auth-token-file",
        str(tmp / "token"),
        "--model",
        "gpt2",
        "--workers",
        "2",
        "--cpu-workers",  # none of these requests reaches a CPU worker: the fewest, one a server worker
        "1",
        "--l3-url",
        f"redis://omnitok:{L3_PASSWORD}@127.0.0.1:{dead}/0",
        env={
            "OMNITOK_HOME": str(home),
            "TIKTOKEN_CACHE_DIR": str(tmp / "tiktoken"),
            "HF_HOME": str(tmp / "hf"),
            "HF_HUB_OFFLINE": "1",
        },
        ready=False,
    )
    srv.tmp = tmp
    yield srv
    srv.stop()


PATH = re.compile(r"(?:^|[\s(:'\"=,])(?:~|\.{1,2})?/[\w.\-]")


def no_path(text: str, tmp, routes: bool = False) -> None:
    """No file path in `text` (`routes`: the text names the app's routes, /metrics' labels)."""
    assert str(tmp) not in text and "/tmp/" not in text and (routes or not PATH.search(text)), text


def test_no_file_path_in_any_response(broken):
    tmp = broken.tmp
    with httpx.Client(base_url=broken.url, timeout=30) as c:
        deadline = time.monotonic() + 30
        while "cannot count" not in (r := c.get("/readyz")).text:  # the warm-up has failed
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        message = r.json()["error"]["message"]
        assert "r50k_base" in message and "<path>" in message  # the cause stays, the paths go
        no_path(r.text, tmp)
        for model in ("hf:acme/damaged", "gpt2", None):
            body = {"text": "hi"} if model is None else {"text": "hi", "model_id": model}
            r = c.post("/count-tokens", json=body, headers=AUTH)
            assert r.status_code == 503 and r.json()["error"]["code"] == "asset_unavailable", r.text
            no_path(r.text, tmp)
            r = c.post("/count-tokens/batch", json={**body, "texts": ["a", "b"], "text": None}, headers=AUTH)
            assert r.status_code in (422, 503), r.text
            no_path(r.text, tmp)
        for path in ("/cache/stats", "/stats", "/metrics"):
            r = c.get(path, headers=AUTH)
            assert r.status_code == 200
            no_path(r.text, tmp, routes=path == "/metrics")
            assert L3_PASSWORD not in r.text
    # The operator's log has the reason in full.
    assert str(tmp) in broken.log()


def test_the_l3_password_is_never_in_the_config_the_workers_read(broken):
    from omnitok.serve.config import ENV, L3_ENV, ServeConfig

    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid == broken.proc.pid:
                    with open(f"/proc/{entry}/environ", "rb") as f:
                        children.append(dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v))
            except OSError:
                continue
    workers = [env for env in children if ENV.encode() in env]  # the 2 workers (and a helper process)
    assert len(workers) >= 2
    for env in workers:
        assert L3_PASSWORD.encode() not in env[ENV.encode()]
        assert json.loads(env[ENV.encode()]).get("l3_url") is None
        assert L3_PASSWORD.encode() in env[L3_ENV.encode()]  # the URL travels apart, as secrets do
    assert L3_PASSWORD not in broken.log()
    # The object: its repr masks the userinfo; to_env/from_env give the URL back whole.
    config = ServeConfig(l3_url=f"redis://omnitok:{L3_PASSWORD}@cache:6379/0")
    assert L3_PASSWORD not in repr(config) and "redis://omnitok:***@cache:6379/0" in repr(config)
    env = config.to_env()
    assert L3_PASSWORD not in env[ENV]
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert ServeConfig.from_env() == config
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


# --- item 6: /metrics ------------------------------------------------------------------------------


def series(text: str) -> set[str]:
    """The series in a Prometheus exposition, without their values."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


async def _post_all(port: int, path: str, bodies: list[bytes], connections: int = 32) -> list[int]:
    """The status of a POST of each body, sent over `connections` keep-alive HTTP/1.1 connections,
    one request at a time on each: a plain client, a fraction of httpx's CPU a request (3,000
    requests through httpx.AsyncClient cost the test process ~11 s of CPU)."""
    statuses = [0] * len(bodies)
    todo = iter(range(len(bodies)))
    top = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {AUTH['Authorization']}\r\n"
    top += "Content-Type: application/json\r\nContent-Length: "

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in todo:  # shared: each connection takes the next body not yet sent
                writer.write(f"{top}{len(bodies[i])}\r\n\r\n".encode() + bodies[i])
                status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
                await reader.readexactly(int(headers["content-length"]))
                statuses[i] = int(status_line.split()[1])
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return statuses


def test_3000_client_chosen_model_ids_do_not_grow_metrics(edge, client):
    async def flood(ids: list[str]) -> list[int]:
        return await _post_all(
            edge.port, "/count-tokens", [json.dumps({"text": "hi", "model_id": m}).encode() for m in ids]
        )

    assert asyncio.run(flood(["hf:org0/m0", "gpt-4o", "gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022"])) == [200] * 4
    client.get("/metrics", headers=AUTH)  # /metrics' own series, made once
    before = client.get("/metrics", headers=AUTH).text
    assert asyncio.run(flood([f"hf:org{i}/m{i}" for i in range(1, 3001)])) == [200] * 3000
    after = client.get("/metrics", headers=AUTH).text
    assert series(after) == series(before)
    assert abs(len(after) - len(before)) < 500, (len(before), len(after))
    print(f"\n/metrics: {len(before)} bytes before 3,000 ids, {len(after)} after")
    labels = set(re.findall(r'model="([^"]*)"', after))
    assert "gpt-4o" in labels and "family:hf" in labels and "family:claude" in labels, labels
    assert not any(label.startswith("hf:org") for label in labels)


def test_metric_labels_come_from_fixed_sets():
    from omnitok.serve.metrics import OTHER, Metrics

    m = Metrics(default_model="hf:acme/house-model")
    m.keep_model("hf:acme/house-model")
    assert m.model_label("hf:acme/house-model") == "hf:acme/house-model"  # the server's default
    assert m.model_label("gpt-4o") == "gpt-4o" and m.model_label("meta.llama3-8b-instruct") == "meta.llama3-8b-instruct"
    assert m.model_label("hf:acme/other") == "family:hf" and m.model_label("x" * 5000) == OTHER
    size = len(m.render())
    for i in range(3000):
        m.counted(f"hf:o{i}/m", f"strategy-{i}", 1, 1)
        m.answered(f"METHOD{i}", "unmatched", 200, 0.001)
    text = m.render().decode()
    assert set(re.findall(r'strategy="([^"]*)"', text)) == {OTHER}
    assert set(re.findall(r'method="([^"]*)"', text)) == {OTHER}
    assert len(text) < size + 4000


def test_a_content_length_of_thousands_of_digits_is_read_as_the_number_it_is(edge):
    """int() refuses more than 4,300 digits: a Content-Length padded with zeros is its number
    (answered; it was a 500 and a traceback), one of thousands of nines a 400, neither a 500 (the
    fixture checks the log for tracebacks)."""
    host = f"127.0.0.1:{edge.port}"
    body = b'{"text": "hello world", "model_id": "gpt-4o"}'
    padded = "0" * 5000 + str(len(body))
    s = connect(
        edge.port,
        head("POST", "/count-tokens", host, {**AUTH, "Content-Type": "application/json", "Content-Length": padded})
        + body,
    )
    status, _, data, _ = reply(s, wait_close=False)
    s.close()
    assert (status, json.loads(data)["token_count"]) == (200, 2)
    s = connect(
        edge.port,
        head("POST", "/count-tokens", host, {**AUTH, "Content-Type": "application/json", "Content-Length": "9" * 5000}),
    )
    status, _, data, _ = reply(s)
    s.close()
    assert status == 400, (status, data)  # uvicorn's HTTP parser: a number past 64 bits
