"""omnitok.serve.protocol: uvicorn's httptools protocol answering plain counts without an ASGI
cycle. Driven in-process, as uvicorn drives it (data_received on a connection, the event loop
running the app's tasks), with a transport that records what is written: the answers it gives
itself come out within the read that brought the request, byte for byte what the app (FastAPI's
route, the fast path left out) writes for the same request; everything else goes to the app as
before (a body still to come, a pipeline, another method or target, HTTP/1.0, Expect, errors),
and answers come in the order of the requests."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

pytest.importorskip("fastapi", reason="omnitok serve needs the serve extra: pip install 'omnitok[serve]'")
pytest.importorskip("httptools", reason="the protocol extends uvicorn's httptools protocol")

from uvicorn.config import Config  # noqa: E402
from uvicorn.server import ServerState  # noqa: E402

from omnitok import aio  # noqa: E402
from omnitok.serve import ServeConfig, create_app  # noqa: E402
from omnitok.serve.protocol import FastProtocol, usable  # noqa: E402
from tests.test_serve_fast import OTHER, PLAIN  # noqa: E402

DATE = [(b"date", b"Mon, 07 Dec 2026 20:00:00 GMT")]  # uvicorn's default headers, fixed for the test


class Transport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data):
        self.out += data

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


class Server:
    """An app behind FastProtocol connections, on this loop; `lifespan` run as uvicorn runs it."""

    def __init__(self, app):
        self.app = app
        self.config = Config(app, access_log=False, proxy_headers=False, http=FastProtocol, log_level="warning")
        self.config.load()
        self.state = ServerState()
        self.state.default_headers = DATE

    async def __aenter__(self):
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.outbox: asyncio.Queue = asyncio.Queue()
        await self.inbox.put({"type": "lifespan.startup"})
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.lifespan = asyncio.create_task(self.app(scope, self.inbox.get, self.outbox.put))
        assert (await self.outbox.get())["type"] == "lifespan.startup.complete"
        return self

    async def __aexit__(self, *exc):
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        await self.lifespan

    def connect(self) -> tuple[FastProtocol, Transport]:
        protocol = FastProtocol(self.config, self.state, {}, _loop=asyncio.get_running_loop())
        transport = Transport()
        protocol.connection_made(transport)
        return protocol, transport

    async def warm(self, body: bytes) -> tuple[FastProtocol, Transport]:
        """A connection that has had one count of `body` answered (its counter loaded and idle:
        the next such count can be answered in the read), its output cleared."""
        protocol, transport = self.connect()
        protocol.data_received(request(body, {}))
        await self.settle()
        transport.out.clear()
        return protocol, transport

    async def settle(self) -> None:
        """Until the app's tasks for the connections are done."""
        for _ in range(2000):
            if not self.state.tasks:
                return
            await asyncio.sleep(0.005)
        raise AssertionError("the app did not answer")


def request(body: bytes, headers: dict, target: str = "/count-tokens", version: str = "1.1") -> bytes:
    lines = [f"POST {target} HTTP/{version}", "host: 127.0.0.1:8000", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def responses(data: bytes) -> list[bytes]:
    """The answers in `data`, each whole (headers and its Content-Length of body)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        out.append(head + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    return out


def run(coro):
    try:
        return asyncio.run(coro)
    finally:
        aio.close()


def test_the_class_it_extends_has_what_it_uses():
    assert usable()


async def _each(server: Server, routed: Server, cases) -> list[tuple]:
    """(case, answered in the read, the protocol's bytes, the route's bytes) for each case, sent
    whole in one read, twice (the first may load the counter in the thread pool)."""
    rows = []
    for body, headers in cases:
        for _ in range(2):
            protocol, transport = server.connect()
            protocol.data_received(request(body, headers))
            at_once = bytes(transport.out)
            await server.settle()
            theirs, their_transport = routed.connect()
            theirs.data_received(request(body, headers))
            await routed.settle()
            rows.append(((body, headers), at_once, bytes(transport.out), bytes(their_transport.out)))
    return rows


def test_plain_counts_are_answered_in_the_read_byte_for_byte_as_the_route():
    async def main():
        async with (
            Server(create_app(ServeConfig())) as server,
            Server(create_app(ServeConfig(), fast_path=False)) as routed,
        ):
            return await _each(server, routed, PLAIN + OTHER)

    rows = run(main())
    inline = 0
    for case, at_once, ours, theirs in rows:
        assert ours == theirs, case
        assert ours.startswith(b"HTTP/1.1 "), case
        inline += bool(at_once)
        if at_once:  # whole at once, and only what this layer answers itself: a 200 of a plain count
            assert at_once == ours and ours.startswith(b"HTTP/1.1 200 OK\r\n") and case in PLAIN, case
    # The second of each plain 200 (a loaded, idle counter; a text short enough) was answered in the read.
    assert inline >= len([c for c in PLAIN if b"gpt-44o" not in c[0] and b'"model_id": ""' not in c[0]]) - 6
    assert inline > 10


def test_what_it_leaves_to_the_app():
    """A body still to come after the read, another target, HTTP/1.0, Expect: 100-continue:
    the app answers (after the loop has run), the same bytes as a request it answers itself."""
    body = b'{"text": "hello world", "model_id": "gpt-4o"}'

    async def main():
        async with Server(create_app(ServeConfig())) as server:
            protocol, transport = server.connect()
            protocol.data_received(request(body, {}))  # loads the counter (the thread pool)
            await server.settle()
            protocol.data_received(request(body, {}))
            plain = bytes(transport.out)[len(responses(bytes(transport.out))[0]) :]
            assert plain.startswith(b"HTTP/1.1 200 OK"), plain  # answered in the read
            seen = []
            whole = request(body, {})
            for parts in (
                [whole[:-5], whole[-5:]],  # the body's end in a second read
                [request(body, {}, "/count-tokens?x=1")],
                [request(body, {}, version="1.0")],
                [request(body, {"expect": "100-continue"})],
            ):
                protocol, transport = server.connect()
                protocol.data_received(parts[0])
                assert bytes(transport.out) in (b"", b"HTTP/1.1 100 Continue\r\n\r\n"), parts
                for part in parts[1:]:
                    protocol.data_received(part)
                await server.settle()
                seen.append(responses(bytes(transport.out).removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n"))[-1])
            return plain, seen

    plain, seen = run(main())
    assert seen[0] == plain and seen[1] == plain and seen[3] == plain
    assert seen[2] == plain.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1)


def test_pipelined_requests_are_answered_in_order_and_the_connection_kept():
    """One read of: a count the app answers (another target), a plain count, a /healthz, a
    plain count: four answers in that order. Then one read of a plain count and one the app
    answers: the keep-alive timer is not running while the app works on the second."""
    body = b'{"text": "hello world", "model_id": "gpt-4o"}'

    async def main():
        async with Server(create_app(ServeConfig())) as server:
            protocol, transport = await server.warm(body)
            healthz = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1:8000\r\n\r\n"
            protocol.data_received(
                request(body, {}, "/count-tokens?x=1") + request(body, {}) + healthz + request(body, {})
            )
            assert bytes(transport.out) == b""  # the first is the app's: the others wait for it
            await server.settle()
            first = responses(bytes(transport.out))
            transport.out.clear()
            protocol.data_received(request(body, {}) + request(body, {}, "/count-tokens?y=2"))
            at_once = responses(bytes(transport.out))
            timer = protocol.timeout_keep_alive_task
            await server.settle()
            return first, at_once, timer, responses(bytes(transport.out)), transport.closed

    first, at_once, timer, second, closed = run(main())
    assert [r.split(b"\r\n")[-1] for r in first] == [
        first[0].split(b"\r\n")[-1],
        first[0].split(b"\r\n")[-1],
        b'{"status":"ok"}',
        first[0].split(b"\r\n")[-1],
    ]
    assert b'"token_count":2' in first[0]
    assert len(at_once) == 1 and timer is None and second == [at_once[0], at_once[0]] and not closed


def test_a_pipelined_burst_is_answered_in_order_a_few_at_a_time_here():
    """40 plain counts in one read: PER_READ answered in the read, the rest by the app, one at a
    time between other work, all in order and alike."""
    from omnitok.serve.protocol import PER_READ

    body = b'{"text": "hello world", "model_id": "gpt-4o"}'

    async def main():
        async with Server(create_app(ServeConfig())) as server:
            protocol, transport = await server.warm(body)
            protocol.data_received(request(body, {}) * 40)
            at_once = responses(bytes(transport.out))
            await server.settle()
            return at_once, responses(bytes(transport.out))

    at_once, every = run(main())
    assert len(at_once) == PER_READ and len(every) == 40 and set(every) == {at_once[0]}


def test_inline_answers_count_in_metrics_and_stats():
    body = b'{"text": "hello world", "model_id": "gpt-4o"}'

    async def main():
        async with Server(create_app(ServeConfig())) as server:
            protocol, transport = server.connect()
            for _ in range(5):
                protocol.data_received(request(body, {}))
                await server.settle()
            transport.out.clear()
            protocol.data_received(b"GET /stats HTTP/1.1\r\nhost: 127.0.0.1:8000\r\n\r\n")
            await server.settle()
            stats = responses(bytes(transport.out))[0]
            transport.out.clear()
            protocol.data_received(b"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1:8000\r\n\r\n")
            await server.settle()
            return stats, bytes(transport.out)

    stats, metrics = run(main())
    counted = json.loads(stats.split(b"\r\n\r\n", 1)[1])["metrics"]
    assert counted["count_requests"] == 5 and counted["tokens_counted"] == 10, stats
    assert b'omnitok_http_requests_total{method="POST",route="/count-tokens",status="200"} 5.0\n' in metrics
    assert b'omnitok_http_request_duration_seconds_count{method="POST",route="/count-tokens"} 5.0\n' in metrics


def test_a_connection_lost_mid_body_hands_nothing_on():
    async def main():
        async with Server(create_app(ServeConfig())) as server:
            protocol, transport = server.connect()
            protocol.data_received(request(b'{"text": "hello"}', {})[:-3])
            with contextlib.suppress(Exception):
                protocol.connection_lost(None)
            await server.settle()
            return bytes(transport.out)

    assert run(main()) == b""


def test_serve_runs_it():
    """By its import path (spawned --workers import it); with access lines on (--log-level info
    and below) it answers nothing itself (uvicorn writes those lines from its cycle)."""
    from omnitok.cli.serve import _http_protocol

    assert _http_protocol() == "omnitok.serve.protocol:FastProtocol"


def test_a_request_head_over_the_limit_is_431_and_the_connection_closed():
    """A header value sent without end: refused once the head passes MAX_HEAD (plus one read at
    most), where httptools kept copying it; a head just under it is read as any."""
    from omnitok.serve.protocol import MAX_HEAD

    async def main():
        async with Server(create_app(ServeConfig())) as server:
            protocol, transport = server.connect()
            protocol.data_received(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1:8000\r\nx-pad: ")
            sent = 0
            while not transport.closed and sent < 10 * MAX_HEAD:
                protocol.data_received(b"a" * 4096)
                sent += 4096
            refused = bytes(transport.out), transport.closed, sent
            protocol, transport = server.connect()
            pad = b"a" * (MAX_HEAD - 200)
            protocol.data_received(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1:8000\r\nx-pad: ")
            for i in range(0, len(pad), 4096):
                protocol.data_received(pad[i : i + 4096])
            protocol.data_received(b"\r\n\r\n")
            await server.settle()
            return refused, bytes(transport.out)

    (out, closed, sent), fine = run(main())
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n") and closed, out
    assert b'"code":"headers_too_large"' in out and MAX_HEAD <= sent <= MAX_HEAD + 4096
    assert fine.startswith(b"HTTP/1.1 200 OK") and fine.endswith(b'{"status":"ok"}')
