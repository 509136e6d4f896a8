"""A lean HTTP/1.1 transport for httpx: asyncio protocols in place of httpcore, h11 and anyio.

Why: at 500 clusters a collection cycle makes over 5,000 small requests, and httpx's default
transport spends about a millisecond of CPU on each one (httpcore's pool bookkeeping polls every
idle connection, anyio wraps each socket operation, h11 parses byte by byte in Python). That made
the cycle CPU-bound at twice the network's limit. This transport does the same job, for the
requests this exporter makes, at about a tenth of the cost:

* HTTP/1.1 only, keep-alive, one request per connection at a time (no pipelining);
* at most ``max_connections`` connections in all, over every origin (add-ons are reached through
  one host name per cluster): a new connection to a full pool closes the least recently used idle
  one; a request waits for a free connection at most the ``pool`` timeout;
* idle connections expire after ``keepalive_expiry`` seconds (4 s: before the common 5 s idle
  timeout of servers, so that a reused connection is not one the server is closing);
* response bodies framed by ``Content-Length``, ``chunked`` or the end of the connection, read
  whole before the response is returned (bodies are bounded by ``max_body_bytes``); httpx then
  decodes ``Content-Encoding`` as usual;
* timeouts: ``connect`` for TCP and TLS set-up, ``read`` as the longest silence while waiting for
  the response, ``pool`` for a free connection (``write`` is not enforced: requests are small and
  written to the kernel's buffer at once);
* errors are httpx's: :class:`httpx.ConnectError` (cause chained, so that a refused certificate can
  be told apart), :class:`httpx.ConnectTimeout`, :class:`httpx.ReadTimeout`,
  :class:`httpx.PoolTimeout`, :class:`httpx.ReadError` and :class:`httpx.RemoteProtocolError`.

No proxy support, as before (the exporter passes its own transport, so httpx never read proxy
variables from the environment).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

__all__ = ["LeanTransport"]

#: Largest response head (status line and headers) accepted.
MAX_HEAD_BYTES = 64 * 1024
#: Largest response body accepted by default (a node list of 1,000 nodes is about 1 MB).
MAX_BODY_BYTES = 256 * 1024 * 1024

Origin = tuple[str, str, int]


class _ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 we can read."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection, answering one request at a time."""

    def __init__(self, origin: Origin, max_body: int) -> None:
        self.origin = origin
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.counted = False  # counted in the transport's open connections
        self._buf = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._got_data = False
        self._last_data = 0.0
        # Parsed state of the response being read.
        self._head_end = -1
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.keep_alive = False
        self._framing = ""  # "length", "chunked", "close", "none"
        self._length = 0
        self._chunk_pos = 0
        self._chunks: list[bytes] = []
        self._chunked_len = 0
        self._no_body = False

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._last_data = time.monotonic()
        self._got_data = True
        if self._waiter is None or self._waiter.done():
            # Bytes nobody asked for: the connection cannot be trusted any more.
            self._abort()
            return
        self._buf += data
        try:
            if self._parse():
                self._waiter.set_result(None)
        except _ProtocolError as exc:
            self._waiter.set_exception(exc)
            self._abort()

    def eof_received(self) -> bool:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._head_end >= 0 and self._framing == "close":
                if len(self._buf) - self._head_end > self.max_body:
                    self._waiter.set_exception(_ProtocolError("response body too large"))
                    return False
                self._finish(bytes(self._buf[self._head_end :]), len(self._buf))
                self._waiter.set_result(None)
            else:
                self._waiter.set_exception(ConnectionResetError("the server closed the connection"))
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc or ConnectionResetError("the connection was closed"))

    # --- request / response ----------------------------------------------------------------------

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(
        self, head: bytes, body: bytes, method: bytes, read_timeout: float | None
    ) -> None:
        """Send one request and read its whole response (or raise)."""
        assert self.transport is not None
        if self.closed:
            # Closed, or sent bytes, between connect and request: nothing would ever answer.
            raise ConnectionResetError("the server closed the connection before the request")
        loop = asyncio.get_running_loop()
        self._reset(no_body=method == b"HEAD")
        self._waiter = waiter = loop.create_future()
        self._last_data = time.monotonic()
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        if read_timeout is not None:
            # A bound method, not a closure: a closure naming itself would be a reference cycle
            # per request, left to the cyclic garbage collector.
            self._timer = loop.call_later(read_timeout, self._check_silence, read_timeout)
        try:
            await waiter
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._waiter = None
            self._buf = bytearray()

    def _check_silence(self, read_timeout: float) -> None:
        """The read timeout: fail the exchange after ``read_timeout`` seconds without data."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        silent = time.monotonic() - self._last_data
        if silent >= read_timeout:
            waiter.set_exception(TimeoutError())
        else:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(read_timeout - silent, self._check_silence, read_timeout)

    def _reset(self, *, no_body: bool) -> None:
        self._buf = bytearray()
        self._got_data = False
        self._head_end = -1
        self.status = 0
        self.reason = b""
        self.headers = []
        self.body = b""
        self.keep_alive = False
        self._framing = ""
        self._length = 0
        self._chunk_pos = 0
        self._chunks = []
        self._chunked_len = 0
        self._no_body = no_body

    def _parse(self) -> bool:
        """Advance over the buffer; True once the response is complete."""
        while self._head_end < 0:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD_BYTES:
                    raise _ProtocolError("response head too large")
                return False
            self._read_head(bytes(self._buf[:end]))
            if 100 <= self.status < 200:
                # Informational (100 Continue...): the real answer follows.
                del self._buf[: end + 4]
                self.headers = []
                continue
            self._head_end = end + 4
        buf = self._buf
        start = self._head_end
        if self._framing == "none":
            self._finish(b"", start)
            return True
        if self._framing == "length":
            if len(buf) - start < self._length:
                return False
            self._finish(bytes(buf[start : start + self._length]), start + self._length)
            return True
        if self._framing == "close":
            if len(buf) - start > self.max_body:
                raise _ProtocolError("response body too large")
            return False
        return self._parse_chunks()

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
            raise _ProtocolError("malformed status line")
        try:
            self.status = int(status_line[1])
        except ValueError:
            raise _ProtocolError("malformed status code") from None
        if not 100 <= self.status <= 999:
            raise _ProtocolError("malformed status code")
        self.reason = status_line[2] if len(status_line) > 2 else b""
        http10 = status_line[0] == b"HTTP/1.0"
        headers: list[tuple[bytes, bytes]] = []
        lengths: set[bytes] = set()
        chunked = False
        connection = b""
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or name[:1] in b" \t":
                raise _ProtocolError("malformed header line")
            value = value.strip(b" \t")
            headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                lengths.add(value)
            elif lower == b"transfer-encoding":
                chunked = value.lower().split(b",")[-1].strip() == b"chunked"
            elif lower == b"connection":
                connection = value.lower()
        self.headers = headers
        self.keep_alive = not http10 and b"close" not in connection
        if self._no_body or self.status in (204, 304) or 100 <= self.status < 200:
            self._framing = "none"
        elif chunked:
            self._framing = "chunked"
        elif lengths:
            if len(lengths) > 1:
                raise _ProtocolError("conflicting Content-Length headers")
            value = lengths.pop()
            if not value.isdigit():
                raise _ProtocolError("malformed Content-Length")
            self._length = int(value)
            if self._length > self.max_body:
                raise _ProtocolError("response body too large")
            self._framing = "length"
        else:
            self._framing = "close"
            self.keep_alive = False

    def _parse_chunks(self) -> bool:
        buf = self._buf
        pos = self._chunk_pos or self._head_end
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                if len(buf) - pos > 1024:
                    raise _ProtocolError("malformed chunk size line")
                self._chunk_pos = pos
                return False
            size_text = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _ProtocolError("malformed chunk size") from None
            if size < 0:
                raise _ProtocolError("malformed chunk size")
            if size == 0:
                # Trailers (ignored) up to an empty line.
                trailer_end = buf.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    self._chunk_pos = pos
                    if len(buf) - line_end > MAX_HEAD_BYTES:
                        raise _ProtocolError("response trailers too large")
                    return False
                self._finish(b"".join(self._chunks), trailer_end + 4)
                return True
            if self._chunked_len + size > self.max_body:
                raise _ProtocolError("response body too large")
            data_start = line_end + 2
            data_end = data_start + size
            if len(buf) < data_end + 2:
                self._chunk_pos = pos
                return False
            if buf[data_end : data_end + 2] != b"\r\n":
                raise _ProtocolError("malformed chunk")
            self._chunks.append(bytes(buf[data_start:data_end]))
            self._chunked_len += size
            pos = data_end + 2

    def _finish(self, body: bytes, end: int) -> None:
        self.body = body
        if len(self._buf) > end:
            # Bytes past the end of the response (nothing was asked for them): do not reuse.
            self.keep_alive = False


class _Body(httpx.AsyncByteStream):
    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._body:
            yield self._body

    async def aclose(self) -> None:
        self._body = b""


class LeanTransport(httpx.AsyncBaseTransport):
    """An :class:`httpx.AsyncBaseTransport` over asyncio protocols (see the module docstring)."""

    def __init__(
        self,
        max_connections: int,
        verify: ssl.SSLContext | bool = True,
        *,
        keepalive_expiry: float = 4.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        if isinstance(verify, ssl.SSLContext):
            self._ssl: ssl.SSLContext = verify
        elif verify:
            self._ssl = ssl.create_default_context()
        else:
            self._ssl = ssl.create_default_context()
            self._ssl.check_hostname = False
            self._ssl.verify_mode = ssl.CERT_NONE
        self._slots: asyncio.Semaphore | None = None
        # Idle connections, least recently used first, over every origin.
        self._idle: OrderedDict[int, _Connection] = OrderedDict()
        self._open = 0
        self._closed = False
        self.connections_opened = 0  # for tests and the benchmark

    @property
    def open_connections(self) -> int:
        return self._open

    def _slots_for_loop(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_connections)
        return self._slots

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        host = url.host
        port = url.port or (443 if scheme == "https" else 80)
        origin: Origin = (scheme, host, port)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        slots = self._slots_for_loop()
        try:
            await asyncio.wait_for(slots.acquire(), timeouts.get("pool"))
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection within the pool timeout") from None
        try:
            return await self._send(request, origin, timeouts)
        finally:
            slots.release()

    async def _send(
        self, request: httpx.Request, origin: Origin, timeouts: dict[str, Any]
    ) -> httpx.Response:
        body = await request.aread()
        head = self._head(request, body)
        method = request.method.encode("ascii")
        conn = self._take_idle(origin)
        reused = conn is not None
        if conn is None:
            conn = await self._connect(origin, timeouts.get("connect"))
        try:
            await conn.exchange(head, body, method, timeouts.get("read"))
        except TimeoutError:
            self._discard(conn)
            raise httpx.ReadTimeout("no answer within the read timeout") from None
        except _ProtocolError as exc:
            self._discard(conn)
            raise httpx.RemoteProtocolError(str(exc)) from exc
        except OSError as exc:
            self._discard(conn)
            if reused and not conn._got_data:
                raise httpx.RemoteProtocolError(
                    "the server closed a kept-alive connection without answering"
                ) from exc
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            # Cancelled mid-exchange: the answer may still arrive, so the connection is unusable.
            self._discard(conn)
            raise
        if conn.keep_alive and not conn.closed and not self._closed:
            conn.idle_since = self._clock()
            self._idle[id(conn)] = conn
        else:
            self._discard(conn)
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=_Body(conn.body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": conn.reason},
            request=request,
        )

    @staticmethod
    def _head(request: httpx.Request, body: bytes) -> bytes:
        target = request.url.raw_path
        lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
        chunked = False
        for name, value in request.headers.raw:
            lower = name.lower()
            if lower == b"transfer-encoding":
                chunked = True
                continue
            if lower == b"content-length":
                continue
            lines.append(name + b": " + value)
        if body or chunked or request.method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def _take_idle(self, origin: Origin) -> _Connection | None:
        now = self._clock()
        expired = [c for c in self._idle.values() if now - c.idle_since > self.keepalive_expiry]
        for conn in expired:
            self._discard(conn)
        found = None
        for key, conn in self._idle.items():
            if conn.origin == origin:
                found = key
                break
        if found is None:
            return None
        conn = self._idle.pop(found)
        if conn.closed or conn.transport is None or conn.transport.is_closing():
            self._discard(conn)
            return self._take_idle(origin)
        return conn

    async def _connect(self, origin: Origin, connect_timeout: float | None) -> _Connection:
        # Room for one more connection: close the least recently used idle one if needed.
        while self._open >= self.max_connections and self._idle:
            _, oldest = self._idle.popitem(last=False)
            self._discard(oldest)
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        conn = _Connection(origin, self.max_body_bytes)
        self._open += 1  # reserved now, so that concurrent connects respect the limit
        conn.counted = True
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: conn,
                    host,
                    port,
                    ssl=self._ssl if scheme == "https" else None,
                    server_hostname=host if scheme == "https" else None,
                ),
                connect_timeout,
            )
        except TimeoutError:
            self._discard(conn)
            raise httpx.ConnectTimeout(
                f"no connection to {host}:{port} within {connect_timeout}s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            self._discard(conn)
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        except BaseException:
            self._discard(conn)
            raise
        self.connections_opened += 1
        return conn

    def _discard(self, conn: _Connection) -> None:
        self._idle.pop(id(conn), None)
        if conn.counted:
            conn.counted = False
            self._open -= 1
        conn.close()

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._idle.values()):
            self._discard(conn)
        self._idle.clear()
