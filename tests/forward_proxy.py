"""A small forward proxy on loopback for tests: plain HTTP (absolute-form requests) and CONNECT.

Every request that passes is recorded (``proxy.seen``: ``(method, target)``, where the target is
the absolute URL of a plain request or ``host:port`` of a CONNECT tunnel). With ``credentials``
the proxy requires ``Proxy-Authorization: Basic`` and answers 407 otherwise (``proxy.refused``
counts those). Plain HTTP requests are forwarded one at a time in origin form over one upstream
connection per client connection; responses are framed by ``Content-Length`` (the simulator and
the test servers always send it). CONNECT tunnels are piped as bytes, TLS untouched.

    async with ForwardProxy() as proxy:
        proxy.url            # http://127.0.0.1:<port>
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None


def _headers(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    out = []
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            out.append((name.strip(), value.strip()))
    return lines[0], out


def _length(headers: list[tuple[str, str]]) -> int:
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value)
    return 0


class ForwardProxy:
    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.seen: list[tuple[str, str]] = []
        self.refused = 0
        self.proxy_authorizations: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with_credentials(self) -> str:
        assert self.credentials is not None
        user, password = self.credentials
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0, limit=_MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        # Closing every socket ends every connection's task (reads see the end of the stream).
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
        await self._server.wait_closed()

    def _authorized(self, headers: list[tuple[str, str]]) -> bool:
        values = [v for n, v in headers if n.lower() == "proxy-authorization"]
        self.proxy_authorizations.extend(values)
        if self.credentials is None:
            return True
        expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
        return expected in values

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self._writers.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        upstream_origin = ""
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                request_line, headers = _headers(head)
                method, target, _version = request_line.split(" ", 2)
                body = await reader.readexactly(_length(headers))
                if not self._authorized(headers):
                    self.refused += 1
                    writer.write(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
                    )
                    await writer.drain()
                    continue
                self.seen.append((method, target))
                if method == "CONNECT":
                    host, _, port = target.rpartition(":")
                    up_reader, up_writer = await asyncio.open_connection(host, int(port))
                    self._writers.add(up_writer)
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await writer.drain()
                    await self._pipe(reader, writer, up_reader, up_writer)
                    return
                parts = urlsplit(target)
                origin = f"{parts.hostname}:{parts.port or 80}"
                if upstream is None or origin != upstream_origin:
                    if upstream is not None:
                        upstream[1].close()
                    upstream = await asyncio.open_connection(parts.hostname, parts.port or 80)
                    self._writers.add(upstream[1])
                    upstream_origin = origin
                path = parts.path or "/"
                if parts.query:
                    path += "?" + parts.query
                kept = [
                    (n, v)
                    for n, v in headers
                    if n.lower() not in ("proxy-authorization", "proxy-connection")
                ]
                out = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in kept)
                upstream[1].write(out.encode("latin-1") + b"\r\n" + body)
                await upstream[1].drain()
                response_head = await _read_head(upstream[0])
                if response_head is None:
                    return
                _, response_headers = _headers(response_head)
                response_body = await upstream[0].readexactly(_length(response_headers))
                writer.write(response_head + response_body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            if upstream is not None:
                upstream[1].close()
            writer.close()
            self._tasks.discard(task)  # type: ignore[arg-type]

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


@contextlib.asynccontextmanager
async def forward_proxy(credentials: tuple[str, str] | None = None) -> AsyncIterator[ForwardProxy]:
    async with ForwardProxy(credentials) as proxy:
        yield proxy
