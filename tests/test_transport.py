"""LeanTransport (``exporter.cce.transport``): framing, keep-alive, limits, timeouts and errors.

A scripted raw asyncio TCP server on 127.0.0.1 (a port chosen by the kernel) plays the other side:
each test gives it a handler that reads requests and writes arbitrary bytes, in arbitrary pieces,
and closes connections when told. The server counts the connections it accepts and how many are
open at once, and notices when the client closes one. Requests go through
``httpx.AsyncClient(transport=LeanTransport(...))`` or straight to the transport. Where pieces
must reach the client one by one, a :class:`Pacer` sends the next piece only once the client's
protocol has received the previous one; the parser is also fed exact pieces by hand (hypothesis).

Every wait has a deadline (``DEADLINE``) so that a regression fails instead of hanging; no test
depends on how long anything takes.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

import httpx
import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.cce import transport as transport_module
from exporter.cce.transport import LeanTransport

#: Longest wait for anything in these tests (a guard against hangs, far above what is needed).
DEADLINE = 5.0
TIMEOUT = httpx.Timeout(DEADLINE)

#: For transports that never speak TLS: cheaper to build than one loading the system's CA store.
PLAIN_ONLY = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

T = TypeVar("T")


async def within(awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(DEADLINE):
        return await awaitable


# --- the scripted server -------------------------------------------------------------------------


@dataclass
class Received:
    """One request as the server read it off the wire."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None


class Peer:
    """One accepted connection, as a handler drives it."""

    def __init__(
        self, server: ScriptedServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        #: Set once the server has read the end of the stream (or a reset) from the client.
        self.client_closed = asyncio.Event()

    async def read_request(self) -> Received | None:
        """The next request on this connection, or None once the client has closed it."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            self.client_closed.set()
            return None
        except ConnectionError:
            self.client_closed.set()
            return None
        request_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ")
        assert version == "HTTP/1.1"
        headers = []
        for line in header_lines:
            name, sep, value = line.partition(":")
            assert sep and name and name == name.strip(), line
            headers.append((name, value.strip()))
        received = Received(method, target, headers, b"")
        assert received.header("Transfer-Encoding") is None
        length = received.header("Content-Length")
        if length is not None:
            received.body = await self.reader.readexactly(int(length))
        await self.server.record(received)
        return received

    async def send(self, *pieces: bytes) -> None:
        """Write each piece with a write of its own (the client may still read them together)."""
        for piece in pieces:
            self.writer.write(piece)
            await self.writer.drain()

    async def until_client_closes(self) -> bytes:
        """Answer nothing; return whatever the client sends until it closes the connection."""
        data = b""
        with suppress(ConnectionError):
            data = await self.reader.read()
        self.client_closed.set()
        return data


Handler = Callable[[Peer], Awaitable[None]]


class ScriptedServer:
    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl_context = ssl_context
        self.accepted = 0
        self.active = 0
        self.max_active = 0
        self.peers: list[Peer] = []
        self.requests: list[Received] = []
        self.errors: list[BaseException] = []
        #: Handlers that hold their answer wait for this.
        self.release = asyncio.Event()
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_client, "127.0.0.1", 0, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def record(self, received: Received) -> None:
        self.requests.append(received)
        await self._notify()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(DEADLINE), self._changed:
            await self._changed.wait_for(predicate)

    async def wait_for_requests(self, count: int) -> None:
        await self.wait_until(lambda: len(self.requests) >= count)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        peer = Peer(self, reader, writer)
        self.peers.append(peer)
        try:
            await self._notify()
            await self.handler(peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            peer.client_closed.set()
        except asyncio.CancelledError:
            pass  # stopped by stop(): end as a finished task (3.11 logs cancelled ones)
        except Exception as exc:  # a broken script: fail the test at teardown
            self.errors.append(exc)
        finally:
            self.active -= 1
            writer.close()
            with suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        if self.errors:
            raise self.errors[0]


Serve = Callable[..., Awaitable[ScriptedServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start scripted servers: ``await serve(handler, ssl_context=None)``; stopped at teardown."""
    servers: list[ScriptedServer] = []

    async def start(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> ScriptedServer:
        server = ScriptedServer(handler, ssl_context)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


class Pacer:
    """Delivers pieces one by one: the next piece is sent once the client's protocol has been
    handed the previous one, so that each piece reaches it in a ``data_received`` of its own
    (writes alone would not do: the client only reads once the server yields to the loop)."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self._arrived = asyncio.Event()

    def count(self, size: int) -> None:
        self.received += size
        self._arrived.set()

    async def send(self, peer: Peer, *pieces: bytes) -> None:
        for piece in pieces:
            self.sent += len(piece)
            await peer.send(piece)
            async with asyncio.timeout(DEADLINE):
                while self.received < self.sent:
                    self._arrived.clear()
                    await self._arrived.wait()


@contextmanager
def pacing() -> Iterator[Pacer]:
    """Count what the client's connections receive (for :class:`Pacer`) while in the block."""
    pacer = Pacer()
    data_received = transport_module._Connection.data_received

    def counting(conn: transport_module._Connection, data: bytes) -> None:
        pacer.count(len(data))
        data_received(conn, data)

    transport_module._Connection.data_received = counting  # type: ignore[method-assign]
    try:
        yield pacer
    finally:
        transport_module._Connection.data_received = data_received  # type: ignore[method-assign]


@pytest.fixture
def pacer() -> Iterator[Pacer]:
    with pacing() as paced:
        yield paced


# --- responses and handlers ----------------------------------------------------------------------


def response(
    body: bytes = b"ok", *headers: str, status: str = "200 OK", version: str = "HTTP/1.1"
) -> bytes:
    """A response framed by Content-Length."""
    lines = [f"{version} {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(chunks: Sequence[bytes], *, extension: str = "", trailers: Sequence[str] = ()) -> bytes:
    """A chunked response of these chunks (the last, empty chunk is added)."""
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for chunk in chunks:
        out += f"{len(chunk):X}{extension}\r\n".encode() + chunk + b"\r\n"
    out += b"0\r\n" + "".join(f"{t}\r\n" for t in trailers).encode() + b"\r\n"
    return out


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({0, len(data), *cuts})
    return [data[a:b] for a, b in pairwise(points)]


def echo(received: Received) -> bytes:
    return response(f"{received.method} {received.target}".encode())


def answer_each(
    make: bytes | Callable[[Received], bytes], *, one_byte_at_a_time: Pacer | None = None
) -> Handler:
    """Answer every request on every connection, until the client closes it."""

    async def handler(peer: Peer) -> None:
        while (received := await peer.read_request()) is not None:
            data = make(received) if callable(make) else make
            if one_byte_at_a_time is None:
                await peer.send(data)
            else:
                await one_byte_at_a_time.send(peer, *bytewise(data))

    return handler


def first_then_echo(first: Callable[[Peer, Received], Awaitable[None]]) -> Handler:
    """Handle the server's very first request with ``first``, echo every other request."""

    async def handler(peer: Peer) -> None:
        while (received := await peer.read_request()) is not None:
            if len(peer.server.requests) == 1:
                await first(peer, received)
                return
            await peer.send(echo(received))

    return handler


async def hold(peer: Peer, received: Received) -> None:
    """Never answer: wait for the client to give up and close the connection."""
    await peer.until_client_closes()


def client(transport: LeanTransport, base_url: str = "", **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, base_url=base_url, timeout=TIMEOUT, **kwargs)


def free_port() -> int:
    """A port nothing listens on (bound by the kernel, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- framing and keep-alive ----------------------------------------------------------------------


async def test_content_length_response_and_keep_alive_reuse(serve: Serve) -> None:
    server = await serve(answer_each(lambda r: response(r.target.encode(), "X-Server: scripted")))
    transport = LeanTransport(4, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        for path in ("/one", "/two", "/three?x=1"):
            resp = await c.get(path)
            assert resp.status_code == 200
            assert resp.reason_phrase == "OK"
            assert resp.http_version == "HTTP/1.1"
            assert resp.headers["X-Server"] == "scripted"
            assert resp.content == path.encode()
        assert server.accepted == 1
        assert transport.connections_opened == 1
        assert transport.open_connections == 1


async def test_repeated_identical_content_length_is_accepted(serve: Serve) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc"
    server = await serve(answer_each(raw))
    transport = LeanTransport(4, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        assert (await c.get("/")).content == b"abc"
        assert (await c.get("/")).content == b"abc"
    assert server.accepted == 1


async def test_chunked_response_one_byte_at_a_time(serve: Serve, pacer: Pacer) -> None:
    raw = chunked(
        [b"hello", b" ", b"chunked world" * 3],
        extension=';name="value";flag',
        trailers=["X-Checksum: abc", "X-Other: 1"],
    )
    assert b"\r\n27;name" in raw  # upper-case hex sizes
    server = await serve(answer_each(raw, one_byte_at_a_time=pacer))
    transport = LeanTransport(4, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        for _ in range(2):
            resp = await c.get("/")
            assert resp.content == b"hello chunked world" + b"chunked world" * 2
            assert "X-Checksum" not in resp.headers  # trailers are read and dropped
    assert server.accepted == 1
    assert transport.connections_opened == 1
    assert pacer.received == pacer.sent == 2 * len(raw)


async def test_close_delimited_body_is_read_to_eof(serve: Serve, pacer: Pacer) -> None:
    body = b"no length, no chunks: " + bytes(range(256)) * 40

    async def handler(peer: Peer) -> None:
        if await peer.read_request() is not None:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\n"
            await pacer.send(peer, head, *split_at(body, [7, 999]))

    server = await serve(handler)
    transport = LeanTransport(4, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        assert (await c.get("/")).content == body
        assert transport.open_connections == 0
        assert (await c.get("/")).content == body
    assert server.accepted == 2
    assert transport.connections_opened == 2


@pytest.mark.parametrize(
    ("method", "raw", "status", "body"),
    [
        pytest.param(
            "GET",
            b"HTTP/1.1 100 Continue\r\n\r\n" + response(b"real"),
            200,
            b"real",
            id="100-continue",
        ),
        pytest.param(
            "GET",
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
            b"HTTP/1.1 100 Continue\r\n\r\n" + response(b"real", "X-Final: yes"),
            200,
            b"real",
            id="two-informational",
        ),
        pytest.param(
            "HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", 200, b"", id="head"
        ),
        pytest.param(
            "HEAD",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            200,
            b"",
            id="head-chunked",
        ),
        pytest.param("GET", b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", id="204"),
        pytest.param(
            "GET",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
            304,
            b"",
            id="304",
        ),
    ],
)
async def test_responses_without_body_keep_the_connection(
    serve: Serve, pacer: Pacer, method: str, raw: bytes, status: int, body: bytes
) -> None:
    first = True

    def make(received: Received) -> bytes:
        nonlocal first
        if first:
            first = False
            assert received.method == method
            return raw
        return echo(received)

    server = await serve(answer_each(make, one_byte_at_a_time=pacer))
    transport = LeanTransport(4, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        resp = await c.request(method, "/first")
        assert resp.status_code == status
        assert resp.content == body
        if "X-Final" in raw.decode():
            assert resp.headers["X-Final"] == "yes"
            assert "Link" not in resp.headers  # headers of the informational answers are dropped
        assert (await c.get("/next")).content == b"GET /next"
    assert server.accepted == 1
    assert transport.connections_opened == 1


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(response(b"bye", "Connection: close"), id="connection-close"),
        pytest.param(response(b"bye", "Connection: Close"), id="connection-close-case"),
        pytest.param(response(b"bye", "Connection: keep-alive, close"), id="connection-list"),
        pytest.param(response(b"bye", version="HTTP/1.0"), id="http-1.0"),
    ],
)
async def test_connection_close_and_http10_are_not_reused(serve: Serve, raw: bytes) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.send(raw)
            assert await peer.until_client_closes() == b""  # no second request on it

    server = await serve(handler)
    transport = LeanTransport(4, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        assert (await c.get("/")).content == b"bye"
        assert transport.open_connections == 0
        await within(server.peers[0].client_closed.wait())
        assert (await c.get("/")).content == b"bye"
    assert server.accepted == 2
    assert transport.connections_opened == 2


async def test_server_closing_an_idle_connection_leads_to_a_new_one(serve: Serve) -> None:
    async def handler(peer: Peer) -> None:
        received = await peer.read_request()
        assert received is not None
        await peer.send(echo(received))
        if peer is peer.server.peers[0]:
            # Close the kept-alive connection while idle; the client closes its side in turn.
            peer.writer.write_eof()
            await peer.until_client_closes()
            return
        while (received := await peer.read_request()) is not None:
            await peer.send(echo(received))

    server = await serve(handler)
    transport = LeanTransport(4, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        assert (await c.get("/a")).content == b"GET /a"
        await within(server.peers[0].client_closed.wait())
        assert (await c.get("/b")).content == b"GET /b"
        assert transport.open_connections == 1
        assert (await c.get("/c")).content == b"GET /c"
    assert server.accepted == 2
    assert transport.connections_opened == 2


async def test_gzip_content_encoding_is_decoded_by_httpx(serve: Serve) -> None:
    original = b'{"items": [' + b'{"name": "node"},' * 500 + b"{}]}"
    compressed = gzip.compress(original)
    assert len(compressed) < len(original)
    server = await serve(answer_each(response(compressed, "Content-Encoding: gzip")))
    transport = LeanTransport(4, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        resp = await c.get("/")
        assert resp.content == original
        assert resp.json()["items"][0] == {"name": "node"}
    assert server.requests[0].header("Accept-Encoding") is not None


# --- randomly split responses --------------------------------------------------------------------


@dataclass
class SplitCase:
    body: bytes
    framing: str  # "length", "chunked" or "close"
    raw: bytes
    pieces: list[bytes]


@st.composite
def split_cases(draw: st.DrawFn) -> SplitCase:
    body = draw(st.binary(max_size=1500))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    if framing == "length":
        raw = response(body)
    elif framing == "close":
        raw = b"HTTP/1.1 200 OK\r\n\r\n" + body
    else:
        sizes = draw(st.lists(st.integers(1, 400), max_size=12))
        chunks, rest = [], body
        for size in sizes:
            if rest:
                chunks.append(rest[:size])
                rest = rest[size:]
        if rest:
            chunks.append(rest)
        extension = draw(st.sampled_from(["", ";ext", ";a=b;c"]))
        trailers = draw(st.sampled_from([(), ("X-T: 1",), ("X-T: 1", "Y: 2")]))
        raw = chunked(chunks, extension=extension, trailers=trailers)
    cuts = draw(st.lists(st.integers(0, len(raw)), max_size=16))
    return SplitCase(body, framing, raw, split_at(raw, cuts))


async def _split_exchange_over_tcp(case: SplitCase, pacer: Pacer) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.read_request() is None:
            return
        await pacer.send(peer, *case.pieces)
        if case.framing == "close":
            return
        received = await peer.read_request()
        assert received is not None
        await peer.send(response(b"", "X-Second: yes"))
        await peer.until_client_closes()

    server = ScriptedServer(handler)
    await server.start()
    try:
        transport = LeanTransport(2, PLAIN_ONLY, max_body_bytes=len(case.body))
        async with client(transport, server.url) as c:
            assert (await c.get("/")).content == case.body
            if case.framing == "close":
                assert transport.open_connections == 0
            else:
                second = await c.get("/")
                assert second.headers["X-Second"] == "yes"
                assert second.content == b""
                assert server.accepted == 1
    finally:
        await server.stop()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split_cases())
def test_responses_split_at_random_points_over_tcp(case: SplitCase) -> None:
    with pacing() as pacer:
        asyncio.run(_split_exchange_over_tcp(case, pacer))


class _RecordingTransport(asyncio.Transport):
    """Stands in for the socket: the protocol is fed by hand, one piece per data_received."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


async def _parse_pieces(
    pieces: Sequence[bytes], *, eof: bool, max_body: int
) -> transport_module._Connection:
    conn = transport_module._Connection(("http", "127.0.0.1", 80), max_body)
    conn.connection_made(_RecordingTransport())

    def feed() -> None:
        for piece in pieces:
            conn.data_received(piece)
        if eof and not conn.closed:
            conn.eof_received()

    exchange = asyncio.ensure_future(conn.exchange(b"GET / HTTP/1.1\r\n\r\n", b"", b"GET", None))
    asyncio.get_running_loop().call_soon(feed)  # runs once the exchange waits for its answer
    await exchange
    return conn


@settings(max_examples=300, deadline=None)
@given(
    case=split_cases(),
    extra=st.sampled_from([b"", b"X", b"HTTP/1.1 200 OK\r\n\r\n"]),
    data=st.data(),
)
def test_parser_fed_exact_pieces(case: SplitCase, extra: bytes, data: st.DataObject) -> None:
    """The protocol itself, each piece delivered alone: the body is exact, within the limit."""
    if case.framing == "close":
        extra = b""  # bytes after the head are all body
    trailing_cut = data.draw(st.booleans())
    pieces = [*case.pieces, extra] if trailing_cut else [*case.pieces[:-1], case.pieces[-1] + extra]
    pieces = [p for p in pieces if p]
    conn = asyncio.run(_parse_pieces(pieces, eof=case.framing == "close", max_body=len(case.body)))
    assert conn.status == 200
    assert conn.body == case.body
    reusable = conn.keep_alive and not conn.closed
    assert reusable == (case.framing != "close" and not extra)

    if case.body:
        with pytest.raises(transport_module._ProtocolError, match="too large"):
            asyncio.run(
                _parse_pieces(case.pieces, eof=case.framing == "close", max_body=len(case.body) - 1)
            )


async def test_many_small_chunks(serve: Serve) -> None:
    chunks = [bytes([i % 251]) * (1 + i % 3) for i in range(20_000)]
    body = b"".join(chunks)
    server = await serve(answer_each(chunked(chunks)))
    transport = LeanTransport(2, PLAIN_ONLY, max_body_bytes=len(body))
    async with client(transport, server.url) as c:
        assert (await c.get("/")).content == body


# --- body limit ----------------------------------------------------------------------------------

LIMIT = 16


def _close_after(raw: bytes, one_byte_at_a_time: Pacer | None) -> Handler:
    async def handler(peer: Peer) -> None:
        if await peer.read_request() is not None:
            if one_byte_at_a_time is None:
                await peer.send(raw)
            else:
                await one_byte_at_a_time.send(peer, *bytewise(raw))

    return handler


@pytest.mark.parametrize(
    ("raw", "close", "expected"),
    [
        pytest.param(response(b"x" * LIMIT), False, b"x" * LIMIT, id="length-at-limit"),
        pytest.param(response(b"x" * (LIMIT + 1)), False, None, id="length-over"),
        pytest.param(
            chunked([b"a" * 5, b"b" * 5, b"c" * 6]),
            False,
            b"a" * 5 + b"b" * 5 + b"c" * 6,
            id="chunked-at-limit",
        ),
        pytest.param(chunked([b"a" * 9, b"b" * 8]), False, None, id="chunked-over"),
        pytest.param(chunked([b"a" * (LIMIT + 1)]), False, None, id="one-chunk-over"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n\r\n" + b"y" * LIMIT, True, b"y" * LIMIT, id="close-at-limit"
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\n" + b"y" * (LIMIT + 1), True, None, id="close-over"),
    ],
)
async def test_max_body_bytes(
    serve: Serve, pacer: Pacer, raw: bytes, close: bool, expected: bytes | None
) -> None:
    # Within the limit, one byte at a time (the client sees every partial state); over it, at once
    # (the client drops the connection on the error, so later bytes would never arrive).
    paced = pacer if expected is not None else None
    if close:
        server = await serve(_close_after(raw, paced))
    else:
        server = await serve(answer_each(raw, one_byte_at_a_time=paced))
    transport = LeanTransport(2, PLAIN_ONLY, max_body_bytes=LIMIT)
    async with client(transport, server.url) as c:
        if expected is None:
            with pytest.raises(httpx.RemoteProtocolError, match="too large"):
                await c.get("/")
            assert transport.open_connections == 0
        else:
            assert (await c.get("/")).content == expected
            assert transport.open_connections == (0 if close else 1)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"HTXP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", id="not-http"),
        pytest.param(b"garbage\r\n\r\n", id="garbage"),
        pytest.param(b"HTTP/1.1\r\nContent-Length: 0\r\n\r\n", id="no-status-code"),
        pytest.param(b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n", id="status-not-a-number"),
        pytest.param(b"HTTP/1.1 99 Low\r\nContent-Length: 0\r\n\r\n", id="status-too-low"),
        pytest.param(b"HTTP/1.1 1000 High\r\nContent-Length: 0\r\n\r\n", id="status-too-high"),
        pytest.param(b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", id="header-without-colon"),
        pytest.param(b"HTTP/1.1 200 OK\r\n: empty-name\r\n\r\n", id="header-empty-name"),
        pytest.param(b"HTTP/1.1 200 OK\r\nName : v\r\n\r\n", id="space-before-colon"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n folded\r\n\r\n", id="obsolete-fold"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            id="conflicting-content-length",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", id="negative-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n", id="length-not-digits"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="chunk-size-not-hex"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n",
            id="chunk-size-negative",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", id="chunk-size-empty"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhelloworld\r\n",
            id="chunk-longer-than-size",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 2000,
            id="chunk-size-line-too-long",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (transport_module.MAX_HEAD_BYTES + 10),
            id="head-too-large",
        ),
    ],
)
async def test_malformed_responses_are_remote_protocol_errors(serve: Serve, raw: bytes) -> None:
    async def handler(peer: Peer) -> None:
        if await peer.read_request() is not None:
            await peer.send(raw)
            await peer.until_client_closes()

    server = await serve(handler)
    transport = LeanTransport(2, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get("/")
        assert transport.open_connections == 0
        await within(server.peers[0].client_closed.wait())  # the connection was closed


@pytest.mark.parametrize(
    "partial",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Le", id="in-head"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", id="in-length-body"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", id="in-chunk"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            id="before-last-chunk",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n",
            id="in-trailers",
        ),
    ],
)
async def test_server_closing_mid_response_is_a_read_error(serve: Serve, partial: bytes) -> None:
    server = await serve(first_then_echo(lambda peer, _: peer.send(partial)))
    transport = LeanTransport(2, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        with pytest.raises(httpx.ReadError):
            await c.get("/")
        assert transport.open_connections == 0
        assert (await c.get("/again")).content == b"GET /again"
        assert transport.open_connections == 1


@pytest.mark.parametrize(
    ("partial", "error"),
    [
        pytest.param(b"", httpx.RemoteProtocolError, id="before-any-byte"),
        pytest.param(b"HTTP/1.1 200 O", httpx.ReadError, id="mid-head"),
    ],
)
async def test_reused_connection_closed_by_the_server(
    serve: Serve, partial: bytes, error: type[Exception]
) -> None:
    async def handler(peer: Peer) -> None:
        received = await peer.read_request()
        assert received is not None
        await peer.send(echo(received))
        if await peer.read_request() is not None:
            await peer.send(partial)  # and close

    server = await serve(handler)
    transport = LeanTransport(2, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        assert (await c.get("/a")).content == b"GET /a"
        with pytest.raises(error):
            await c.get("/b")
        assert transport.open_connections == 0
        assert (await c.get("/c")).content == b"GET /c"
    assert server.accepted == 2


async def test_read_timeout(serve: Serve) -> None:
    server = await serve(first_then_echo(hold))
    transport = LeanTransport(2, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get("/", timeout=httpx.Timeout(DEADLINE, read=0.2))
        assert transport.open_connections == 0
        await within(server.peers[0].client_closed.wait())
        assert (await c.get("/again")).content == b"GET /again"


async def test_connection_refused_is_a_connect_error() -> None:
    transport = LeanTransport(2, PLAIN_ONLY)
    async with client(transport) as c:
        with pytest.raises(httpx.ConnectError) as info:
            await c.get(f"http://127.0.0.1:{free_port()}/")
        assert isinstance(info.value.__cause__, OSError)
        assert transport.open_connections == 0
        assert transport.connections_opened == 0


async def test_tls_to_a_server_that_never_answers_is_a_connect_timeout(serve: Serve) -> None:
    async def silent(peer: Peer) -> None:
        await peer.until_client_closes()

    server = await serve(silent)
    transport = LeanTransport(2, verify=False)
    async with client(transport) as c:
        with pytest.raises(httpx.ConnectTimeout):
            await c.get(
                f"https://127.0.0.1:{server.port}/", timeout=httpx.Timeout(DEADLINE, connect=0.2)
            )
        assert transport.open_connections == 0
        await within(server.peers[0].client_closed.wait())


async def test_tls_to_a_plain_http_server_is_a_connect_error(serve: Serve) -> None:
    async def plain(peer: Peer) -> None:
        await peer.reader.read(1)  # the ClientHello
        await peer.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    server = await serve(plain)
    transport = LeanTransport(2, verify=False)
    async with client(transport) as c:
        with pytest.raises(httpx.ConnectError) as info:
            await c.get(f"https://127.0.0.1:{server.port}/")
        assert isinstance(info.value.__cause__, OSError)
        assert transport.open_connections == 0


async def test_pool_timeout(serve: Serve) -> None:
    async def handler(peer: Peer) -> None:
        while (received := await peer.read_request()) is not None:
            await within(peer.server.release.wait())
            await peer.send(echo(received))

    server = await serve(handler)
    transport = LeanTransport(1, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        held = asyncio.ensure_future(c.get("/held"))
        await server.wait_for_requests(1)
        with pytest.raises(httpx.PoolTimeout):
            await c.get("/waiting", timeout=httpx.Timeout(DEADLINE, pool=0.1))
        assert transport.open_connections == 1  # the held request's, no more
        server.release.set()
        assert (await within(held)).content == b"GET /held"
        assert transport.open_connections == 1  # idle, healthy
        assert (await c.get("/after")).content == b"GET /after"
    assert server.accepted == 1
    assert [r.target for r in server.requests] == ["/held", "/after"]


@pytest.mark.parametrize("variant", ["closes", "greets"])
async def test_connection_lost_between_connect_and_request(
    serve: Serve, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """A fresh connection the server closes (or talks on) before the request fails at once."""

    async def handler(peer: Peer) -> None:
        if variant == "greets":
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await peer.until_client_closes()
        # "closes": return, and the server closes the connection

    server = await serve(handler)
    transport = LeanTransport(2, PLAIN_ONLY)
    lost = asyncio.Event()
    connection_lost = transport_module._Connection.connection_lost

    def record_lost(conn: Any, exc: Exception | None) -> None:
        connection_lost(conn, exc)
        lost.set()

    connect = transport._connect

    async def connect_then_wait_for_loss(origin: Any, timeout: float | None) -> Any:
        conn = await connect(origin, timeout)
        await within(lost.wait())  # the server's move has landed before the request is written
        return conn

    monkeypatch.setattr(transport_module._Connection, "connection_lost", record_lost)
    monkeypatch.setattr(transport, "_connect", connect_then_wait_for_loss)
    async with client(transport, server.url) as c:
        # Not a ReadTimeout: nothing would ever answer on that connection.
        with pytest.raises(httpx.ReadError):
            await c.get("/", timeout=httpx.Timeout(DEADLINE, read=2.0))
        assert transport.open_connections == 0
    assert server.requests == []


# --- limits --------------------------------------------------------------------------------------


async def test_max_connections_with_concurrent_requests(serve: Serve) -> None:
    barrier = asyncio.Barrier(2)  # answers wait until two requests are in

    async def handler(peer: Peer) -> None:
        while (received := await peer.read_request()) is not None:
            await within(barrier.wait())
            await peer.send(echo(received))

    server = await serve(handler)
    transport = LeanTransport(2, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        responses = await within(asyncio.gather(*(c.get(f"/{i}") for i in range(6))))
        assert [r.content for r in responses] == [f"GET /{i}".encode() for i in range(6)]
        assert transport.open_connections == 2
    assert server.max_active == 2
    assert server.accepted == 2
    assert transport.connections_opened == 2
    assert len(server.requests) == 6


async def test_least_recently_used_idle_connection_is_evicted_across_origins(
    serve: Serve,
) -> None:
    a, b, c_ = [await serve(answer_each(echo)) for _ in range(3)]
    transport = LeanTransport(2, PLAIN_ONLY)
    async with client(transport) as c:
        for server in (a, b, c_):
            assert (await c.get(server.url + "/x")).content == b"GET /x"
            assert transport.open_connections <= 2
        await within(a.peers[0].client_closed.wait())  # a's was the least recently used
        assert (await c.get(b.url + "/y")).content == b"GET /y"  # reused
        assert (await c.get(a.url + "/z")).content == b"GET /z"  # evicts c's
        assert transport.open_connections == 2
        await within(c_.peers[0].client_closed.wait())
        assert not b.peers[0].client_closed.is_set()
    assert [s.accepted for s in (a, b, c_)] == [2, 1, 1]
    assert transport.connections_opened == 4


async def test_connections_are_per_origin(serve: Serve) -> None:
    a, b = [await serve(answer_each(echo)) for _ in range(2)]
    transport = LeanTransport(4, PLAIN_ONLY)
    async with client(transport) as c:
        for _ in range(3):
            for server in (a, b):
                assert (await c.get(server.url + "/")).content == b"GET /"
        assert transport.open_connections == 2
    assert (a.accepted, b.accepted) == (1, 1)


async def test_keepalive_expiry_with_injected_clock(serve: Serve) -> None:
    now = [100.0]
    server = await serve(answer_each(echo))
    transport = LeanTransport(4, PLAIN_ONLY, keepalive_expiry=4.0, clock=lambda: now[0])
    async with client(transport, server.url) as c:
        await c.get("/1")
        now[0] += 3.9
        await c.get("/2")
        assert transport.connections_opened == 1  # within the expiry: reused
        now[0] += 4.5
        await c.get("/3")
        assert transport.connections_opened == 2  # expired: a new connection
        assert transport.open_connections == 1
        await within(server.peers[0].client_closed.wait())  # and the expired one was closed
    assert server.accepted == 2


async def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        LeanTransport(0)
    transport = LeanTransport(1, PLAIN_ONLY)
    with pytest.raises(httpx.UnsupportedProtocol):
        await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/"))
    assert transport.open_connections == 0


# --- cancellation --------------------------------------------------------------------------------


async def test_cancelled_request_frees_its_connection(serve: Serve) -> None:
    server = await serve(first_then_echo(hold))
    transport = LeanTransport(1, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        request = asyncio.ensure_future(c.get("/held"))
        await server.wait_for_requests(1)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        assert transport.open_connections == 0
        await within(server.peers[0].client_closed.wait())
        assert (await c.get("/next")).content == b"GET /next"
    assert server.accepted == 2


async def test_cancelled_while_connecting(serve: Serve) -> None:
    async def silent(peer: Peer) -> None:
        await peer.until_client_closes()

    server = await serve(silent)
    transport = LeanTransport(1, verify=False)
    async with client(transport) as c:
        request = asyncio.ensure_future(c.get(server.url.replace("http:", "https:")))
        await server.wait_until(lambda: server.accepted == 1)  # the TLS handshake hangs
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        assert transport.open_connections == 0
        await within(server.peers[0].client_closed.wait())


async def test_cancelled_while_waiting_for_a_slot(serve: Serve) -> None:
    async def handler(peer: Peer) -> None:
        while (received := await peer.read_request()) is not None:
            if received.target == "/held":
                await within(peer.server.release.wait())
            await peer.send(echo(received))

    server = await serve(handler)
    waiting = asyncio.Event()

    async def on_request(request: httpx.Request) -> None:
        if request.url.path == "/waiting":
            waiting.set()  # the request then runs on, into the transport, until it must wait

    transport = LeanTransport(1, PLAIN_ONLY)
    async with client(transport, server.url, event_hooks={"request": [on_request]}) as c:
        held = asyncio.ensure_future(c.get("/held"))
        await server.wait_for_requests(1)
        no_pool_timeout = httpx.Timeout(DEADLINE, pool=None)
        queued = asyncio.ensure_future(c.get("/waiting", timeout=no_pool_timeout))
        await within(waiting.wait())
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        server.release.set()
        assert (await within(held)).content == b"GET /held"
        # The slot of the cancelled request was not lost.
        resp = await c.get("/after", timeout=httpx.Timeout(DEADLINE, pool=0.5))
        assert resp.content == b"GET /after"
        assert transport.open_connections == 1
    assert [r.target for r in server.requests] == ["/held", "/after"]


# --- unsolicited bytes ---------------------------------------------------------------------------


async def test_bytes_after_the_response_in_the_same_write(serve: Serve) -> None:
    async def handler(peer: Peer) -> None:
        received = await peer.read_request()
        assert received is not None
        if peer is peer.server.peers[0]:
            await peer.send(response(b"one") + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await peer.until_client_closes()
            return
        await peer.send(echo(received))
        while (received := await peer.read_request()) is not None:
            await peer.send(echo(received))

    server = await serve(handler)
    transport = LeanTransport(2, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        assert (await c.get("/")).content == b"one"
        assert (await c.get("/two")).content == b"GET /two"
    assert server.accepted == 2
    assert transport.connections_opened == 2


async def test_bytes_sent_on_an_idle_connection(serve: Serve) -> None:
    async def handler(peer: Peer) -> None:
        received = await peer.read_request()
        assert received is not None
        await peer.send(echo(received))
        if peer is peer.server.peers[0]:
            await within(peer.server.release.wait())
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # nobody asked
            await peer.until_client_closes()
            return
        while (received := await peer.read_request()) is not None:
            await peer.send(echo(received))

    server = await serve(handler)
    transport = LeanTransport(2, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        assert (await c.get("/one")).content == b"GET /one"
        server.release.set()
        await within(server.peers[0].client_closed.wait())  # the client dropped it
        assert (await c.get("/two")).content == b"GET /two"
        assert transport.open_connections == 1
    assert server.accepted == 2
    assert [r.target for r in server.requests] == ["/one", "/two"]


# --- request serialization and closing -----------------------------------------------------------


async def test_request_serialization(serve: Serve) -> None:
    server = await serve(answer_each(response(b"")))
    big = bytes(range(256)) * 400  # over 64 KiB: written apart from the head

    async def stream() -> AsyncIterator[bytes]:
        yield b"streamed "
        yield b"body"

    path = "/api/v3/projects/p%2F1/clusters?labelSelector=app%3Dx&limit=5"
    transport = LeanTransport(2, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        await c.get(path, headers={"X-Custom": "yes"})
        await c.post("/post", content=b'{"k": "v"}', headers={"Content-Type": "application/json"})
        await c.post("/empty")
        await c.put("/stream", content=stream())
        await c.post("/big", content=big)
        await c.delete("/thing")
    get, post, empty, streamed, large, delete = server.requests
    assert (get.method, get.target) == ("GET", path)
    assert get.header("Host") == f"127.0.0.1:{server.port}"
    assert get.header("X-Custom") == "yes"
    assert get.header("Content-Length") is None
    assert (post.method, post.target, post.body) == ("POST", "/post", b'{"k": "v"}')
    assert post.header("Content-Length") == "10"
    assert post.header("Content-Type") == "application/json"
    assert (empty.method, empty.header("Content-Length"), empty.body) == ("POST", "0", b"")
    assert (streamed.method, streamed.body) == ("PUT", b"streamed body")
    assert streamed.header("Content-Length") == str(len(b"streamed body"))
    assert large.body == big
    assert large.header("Content-Length") == str(len(big))
    assert (delete.method, delete.target, delete.header("Content-Length")) == (
        "DELETE",
        "/thing",
        None,
    )
    assert server.accepted == 1


async def test_aclose_closes_idle_connections(serve: Serve) -> None:
    server = await serve(answer_each(echo))
    transport = LeanTransport(2, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        await c.get("/")
    # Leaving the client closed the transport, and with it the idle connection.
    assert transport.open_connections == 0
    await within(server.peers[0].client_closed.wait())
    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(httpx.Request("GET", server.url))


async def test_aclose_during_a_request_drops_its_connection_after(serve: Serve) -> None:
    async def handler(peer: Peer) -> None:
        while (received := await peer.read_request()) is not None:
            await within(peer.server.release.wait())
            await peer.send(echo(received))

    server = await serve(handler)
    transport = LeanTransport(2, PLAIN_ONLY)
    async with client(transport, server.url) as c:
        request = asyncio.ensure_future(c.get("/slow"))
        await server.wait_for_requests(1)
        await transport.aclose()
        server.release.set()
        assert (await within(request)).content == b"GET /slow"
        assert transport.open_connections == 0
        await within(server.peers[0].client_closed.wait())


# --- TLS -----------------------------------------------------------------------------------------


@dataclass
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls() -> Iterator[Tls]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    yield Tls(server_context, client_context)


async def test_tls_keep_alive_and_close_delimited_body(serve: Serve, tls: Tls) -> None:
    body = b"over TLS " * 1000

    async def handler(peer: Peer) -> None:
        while (received := await peer.read_request()) is not None:
            if received.target == "/close":
                await peer.send(b"HTTP/1.1 200 OK\r\n\r\n", body)
                return
            await peer.send(echo(received))

    server = await serve(handler, ssl_context=tls.server)
    transport = LeanTransport(2, verify=tls.client)
    async with client(transport, server.url) as c:
        assert (await c.get("/a")).content == b"GET /a"
        assert (await c.get("/b")).content == b"GET /b"
        assert server.accepted == 1
        assert (await c.get("/close")).content == body
        assert transport.open_connections == 0
        assert (await c.get("/c")).content == b"GET /c"
    assert server.accepted == 2


async def test_tls_untrusted_certificate_is_a_connect_error(serve: Serve, tls: Tls) -> None:
    server = await serve(answer_each(echo), ssl_context=tls.server)
    transport = LeanTransport(2)  # the system's trust store: not this test CA
    async with client(transport, server.url) as c:
        with pytest.raises(httpx.ConnectError) as info:
            await c.get("/")
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        assert transport.open_connections == 0


async def test_tls_without_verification(serve: Serve, tls: Tls) -> None:
    server = await serve(answer_each(echo), ssl_context=tls.server)
    transport = LeanTransport(2, verify=False)
    async with client(transport, server.url) as c:
        assert (await c.get("/")).content == b"GET /"
