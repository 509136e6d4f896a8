"""The HTTP client every part of the exporter uses (``build_http_client``): what its errors say
about a request (sent or not), its connection limit, keep-alive, and bodies read whole."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from prometheus_client import CollectorRegistry

from exporter.cce.client import CCEClient
from exporter.cce.errors import RequestTimeout, TransportError
from exporter.cce.http import PROXY_OFF, HttpOptions, build_http_client
from exporter.cce.instrumentation import ApiMetrics

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OPTIONS = HttpOptions(timeout=2.0, proxy=PROXY_OFF, max_connections=4)


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A raw loopback server; yields its URL and the number of connections it accepted."""
    accepted: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", accepted
    finally:
        server.close()
        await server.wait_closed()


def _answer(body: bytes, status: str = "200 OK") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def test_keep_alive_and_bodies_read_whole() -> None:
    body = b'{"items": [' + b",".join(b'{"n": %d}' % i for i in range(20000)) + b"]}"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(_answer(body))
            await writer.drain()

    async with serve(handler) as (url, accepted), build_http_client(OPTIONS) as client:
        for _ in range(5):
            response = await client.get(url + "/x")
            assert response.content == body
    assert len(accepted) == 1  # one kept-alive connection


async def test_connection_limit_holds() -> None:
    in_flight = 0
    most = 0
    gate = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, most
        while await reader.readuntil(b"\r\n\r\n"):
            in_flight += 1
            most = max(most, in_flight)
            if most >= 4:
                gate.set()
            await asyncio.wait_for(gate.wait(), 10)
            in_flight -= 1
            writer.write(_answer(b"{}"))
            await writer.drain()

    async with serve(handler) as (url, _), build_http_client(OPTIONS) as client:
        await asyncio.gather(*(client.get(url + f"/{i}") for i in range(12)))
    assert most == 4


async def test_a_closed_connection_is_not_a_connect_error_and_a_post_is_not_retried() -> None:
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        # Closed after reading the request: it may have been acted upon.

    async with serve(handler) as (url, _):
        async with build_http_client(OPTIONS) as client:
            with pytest.raises(httpx.TransportError) as excinfo:
                await client.post(url + "/op")
        assert not isinstance(excinfo.value, httpx.ConnectError | httpx.TimeoutException)
        client_ = CCEClient(
            url, httpx.Auth(), "p", max_retries=3, metrics=ApiMetrics(CollectorRegistry())
        )
        before = len(requests)
        async with client_:
            with pytest.raises(TransportError):
                await client_.hibernate("c1")
        assert len(requests) - before == 1  # sent once: a hibernate that may have run is not resent


async def test_refused_connection_is_a_connect_error_and_retried() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with build_http_client(OPTIONS) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client_ = CCEClient(
        f"http://127.0.0.1:{port}",
        httpx.Auth(),
        "p",
        max_retries=2,
        sleep=sleep,
        metrics=ApiMetrics(CollectorRegistry()),
    )
    async with client_:
        with pytest.raises(TransportError, match="ConnectError"):
            await client_.hibernate("c1")  # never sent: safe to retry even a POST
    assert len(sleeps) == 2


async def test_silence_is_a_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # never answers; ends when the client gives up

    options = HttpOptions(timeout=0.3, proxy=PROXY_OFF)
    async with serve(handler) as (url, _), build_http_client(options) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(url + "/slow")
        client_ = CCEClient(url, httpx.Auth(), "p", http=options, timeout=0.3, max_retries=0)
        async with client_:
            with pytest.raises(RequestTimeout):
                await client_.list_clusters()


@pytest.mark.parametrize(
    "garbage",
    [b"NOT HTTP AT ALL\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"],
)
async def test_garbage_and_truncated_answers_are_transport_errors(garbage: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(garbage)
        await writer.drain()

    async with serve(handler) as (url, _):
        client = CCEClient(url, httpx.Auth(), "p", http=OPTIONS, max_retries=0)
        async with client:
            with pytest.raises(TransportError):
                await client.list_clusters()
