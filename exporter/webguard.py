"""The web server's defences against hostile clients: limits, and the accept loop and HTTP
protocol that enforce them (used by :class:`exporter.web.Server`).

* At most ``max_connections`` connections are open at once. At the limit the oldest idle
  connection (one that has not completed its request headers, or a keep-alive connection between
  requests) is closed to make room; when none is idle, accepting pauses until one closes (the
  kernel queues the rest).
* A request's headers must arrive within ``header_timeout`` seconds of the connection (or of its
  first byte after a keep-alive pause): slow-header clients (slowloris) are closed. A TLS
  handshake has the same time.
* A client that reads nothing of an answer for ``write_timeout`` seconds is disconnected (slow
  readers).
* ``accept()`` failures (EMFILE when out of file descriptors) pause accepting with a growing
  back-off, close idle connections to free descriptors, and are logged once per minute with a
  count, never once per attempt (asyncio's own accept loop logs a traceback for every pending
  connection of every event-loop turn).
* What any client can cause at will (a malformed request) is logged at DEBUG.
* :class:`RequestGuard` (one ASGI layer) checks basic auth, sheds a failed-login flood, adds the
  configured headers to every answer and logs errors and (at DEBUG) accesses.
* A request's scope carries :data:`CLOSING_SCOPE_KEY`, a callable telling whether the client has
  gone, so that a long answer stops being written at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import logging
import resource
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from exporter.config import Settings, from_settings, setting_field
from exporter.webconfig import AuthBusyError, BasicAuthVerifier

__all__ = [
    "CLOSING_SCOPE_KEY",
    "Acceptor",
    "Connections",
    "GuardedH11",
    "RequestGuard",
    "WebLimits",
]

log = logging.getLogger("exporter.web")
access_log = logging.getLogger("exporter.web.access")

REALM = "cce-exporter"

#: A scope entry the server adds: a callable telling whether the connection is closing (the
#: client hung up), so that a long answer stops being written at once.
CLOSING_SCOPE_KEY = "cce_exporter.closing"


@dataclass(frozen=True)
class WebLimits:
    """Bounds of the web server (``web_*`` settings); the defaults are safe for a public port."""

    #: Open connections at most; None: 512, or fewer when the open-file limit is low.
    max_connections: int | None = setting_field("web_max_connections")
    #: Seconds a client has to send a request's headers (a new connection, or after a pause).
    header_timeout: float = setting_field("web_header_timeout")
    #: Seconds a client may read nothing of an answer (slow readers) before it is disconnected.
    write_timeout: float = setting_field("web_write_timeout")
    #: Threads verifying bcrypt passwords (their own pool: scrapes and rendering never wait).
    auth_workers: int = setting_field("web_auth_workers")
    #: bcrypt checks waiting at most; more are answered 503 (after AUTH_BUSY_DELAY).
    auth_queue: int = setting_field("web_auth_queue")

    @classmethod
    def from_settings(cls, settings: Settings) -> WebLimits:
        return from_settings(cls, settings)

    def connection_limit(self) -> int:
        """``max_connections``, or the default: 512 within the open-file limit (128 kept spare)."""
        if self.max_connections is not None:
            return self.max_connections
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return 512
        return max(8, min(512, soft - 128))


#: Connections accepted per event-loop turn at most, so that accepting never starves the rest.
ACCEPT_BATCH = 32
#: accept() failures are logged at most once per this many seconds (with a count).
ACCEPT_LOG_INTERVAL = 60.0
#: Back-off after an accept() failure: doubles from the first value up to the second.
ACCEPT_BACKOFF = (0.05, 1.0)


class Connections:
    """The server's open connections: a count against the limit, and the idle ones, oldest first.

    "Idle" means waiting for a request: its headers not complete yet (a fresh connection, a
    slow-header client) or between two requests of a keep-alive connection. Idle connections are
    what gets closed to make room when the limit is reached.
    """

    def __init__(self, limit: int, header_timeout: float, write_timeout: float = 30.0) -> None:
        self.limit = limit
        self.header_timeout = header_timeout
        self.write_timeout = write_timeout
        self.open = 0  # accepted and not yet lost (TLS handshakes included)
        self.closing = 0  # closed by us, their connection_lost still to come
        self.idle: OrderedDict[GuardedH11, None] = OrderedDict()
        self.on_free: Callable[[], None] | None = None
        self.evicted = 0

    @property
    def full(self) -> bool:
        return self.open - self.closing >= self.limit

    def evict_idle(self, count: int = 1) -> int:
        """Close up to ``count`` idle connections, oldest first; how many were closed."""
        closed = 0
        while closed < count and self.idle:
            protocol, _ = self.idle.popitem(last=False)
            if protocol.close_idle():
                closed += 1
        self.evicted += closed
        return closed

    def lost(self, *, evicted: bool) -> None:
        self.open -= 1
        if evicted:
            self.closing -= 1
        if self.on_free is not None and not self.full:
            self.on_free()


class _ClientFaults:
    """uvicorn's logger for one connection, with its warnings (a malformed request, an
    unsupported upgrade: what any client can cause at will) at DEBUG, so that a flood of bad
    requests cannot flood the log. Errors stay errors."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._logger.debug(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request headers and a place in
    :class:`Connections` (one subclass per server sets ``connections``)."""

    connections_state: Connections

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = _ClientFaults(self.logger)  # type: ignore[assignment]
        self._header_deadline: asyncio.TimerHandle | None = None
        self._write_stall: asyncio.TimerHandle | None = None
        self._made = False
        self._evicted = False

    def _waiting(self) -> bool:
        return self.cycle is None or bool(self.cycle.response_complete)

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(
                self.connections_state.header_timeout, self._headers_too_slow
            )

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self._waiting() and not self.transport.is_closing():
            log.debug("closing a connection that sent no complete request headers in time")
            self.connections_state.idle.pop(self, None)
            self.transport.close()

    def close_idle(self) -> bool:
        """Close this connection to make room, if it is still idle and open."""
        if not self._waiting() or self.transport.is_closing():
            return False
        self._evicted = True
        self.connections_state.closing += 1
        self._disarm()
        self.transport.close()
        return True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._made = True
        self.connections_state.idle[self] = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        waiting = self._waiting()
        if waiting:
            self._arm()  # a keep-alive pause ended: the next headers are due in time too
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before:  # a request's headers are complete
            self._started(self.cycle)

    def _started(self, cycle: Any) -> None:
        """A new request: no header deadline, not idle, and its scope can tell a hang-up."""
        self._disarm()
        cycle.scope[CLOSING_SCOPE_KEY] = self.transport.is_closing
        if not self._waiting():
            self.connections_state.idle.pop(self, None)

    def on_response_complete(self) -> None:
        before = self.cycle
        super().on_response_complete()
        if self.cycle is not before:  # a pipelined request started
            self._started(self.cycle)
        if self._waiting() and not self.transport.is_closing():
            self.connections_state.idle[self] = None  # uvicorn's keep-alive timer runs

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_stall is None:
            self._write_stall = self.loop.call_later(
                self.connections_state.write_timeout, self._client_stopped_reading
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_stall is not None:
            self._write_stall.cancel()
            self._write_stall = None

    def _client_stopped_reading(self) -> None:
        self._write_stall = None
        if self.flow.write_paused and not self.transport.is_closing():
            log.debug(
                "closing a connection whose client read nothing for %.0f s",
                self.connections_state.write_timeout,
            )
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._write_stall is not None:
            self._write_stall.cancel()
            self._write_stall = None
        self._disarm()
        self.connections_state.idle.pop(self, None)
        self.connections_state.lost(evicted=self._evicted)


class Acceptor:
    """Accepts connections on a listening socket, within :class:`Connections`' limit.

    It replaces asyncio's own accept loop, which on EMFILE logs a traceback for every pending
    connection of every event-loop turn (hundreds of thousands a minute). Here a failure pauses
    accepting (growing back-off), closes idle connections to free descriptors, and is logged once
    per interval. Duck-types the part of ``asyncio.Server`` uvicorn uses at shutdown.
    """

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        connections: Connections,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock = sock
        self._fd = sock.fileno()
        self._factory = protocol_factory
        self._connections = connections
        self._ssl = ssl_context
        self._reading = False
        self._closed = False
        self._retry: asyncio.TimerHandle | None = None
        self._backoff = 0.0
        self._failures = 0  # since the last message
        self._last_log = -ACCEPT_LOG_INTERVAL
        self._setups: set[asyncio.Task[None]] = set()
        self.accept_failures = 0
        connections.on_free = self._resume
        sock.setblocking(False)
        self._resume()

    def _resume(self) -> None:
        if self._closed or self._reading:
            return
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._loop.add_reader(self._fd, self._on_readable)
        self._reading = True

    def _pause(self, delay: float | None) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        if delay is not None and self._retry is None and not self._closed:
            self._retry = self._loop.call_later(delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self._resume()

    def _on_readable(self) -> None:
        connections = self._connections
        for _ in range(ACCEPT_BATCH):
            if connections.full and not connections.evict_idle(1):
                self._pause(None)  # every connection is busy: resumed when one closes
                return
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._accept_failed(exc)
                return
            self._backoff = 0.0
            connections.open += 1
            task = self._loop.create_task(self._setup(conn))
            self._setups.add(task)
            task.add_done_callback(self._setups.discard)

    def _accept_failed(self, exc: OSError) -> None:
        self.accept_failures += 1
        self._failures += 1
        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            # Out of descriptors or memory: idle connections are the ones that can go.
            self._connections.evict_idle(max(1, self._connections.open // 10))
        low, high = ACCEPT_BACKOFF
        self._backoff = min(high, max(low, self._backoff * 2))
        now = time.monotonic()
        if now - self._last_log >= ACCEPT_LOG_INTERVAL:
            log.warning(
                "cannot accept connections: %s (%d failure(s) since the last message, %d open "
                "connections); retrying with a back-off of up to %.0f s, this is logged at most "
                "once every %.0f s",
                exc.strerror or exc,
                self._failures,
                self._connections.open,
                high,
                ACCEPT_LOG_INTERVAL,
            )
            self._last_log = now
            self._failures = 0
        self._pause(self._backoff)

    async def _setup(self, conn: socket.socket) -> None:
        made: list[asyncio.Protocol] = []

        def factory() -> asyncio.Protocol:
            protocol = self._factory()
            made.append(protocol)
            return protocol

        try:
            conn.setblocking(False)
            if self._ssl is not None:
                await self._loop.connect_accepted_socket(
                    factory,
                    conn,
                    ssl=self._ssl,
                    ssl_handshake_timeout=self._connections.header_timeout,
                )
            else:
                await self._loop.connect_accepted_socket(factory, conn)
        except (Exception, asyncio.CancelledError) as exc:
            # A failed TLS handshake, a client gone before the start: nothing to serve.
            log.debug("connection set-up failed: %s", exc or type(exc).__name__)
            conn.close()
            if not any(getattr(p, "_made", False) for p in made):
                self._connections.lost(evicted=False)
            if isinstance(exc, asyncio.CancelledError):
                raise

    # --- what uvicorn's shutdown calls on a server ---

    def close(self) -> None:
        if self._closed:
            return
        self._pause(None)
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._connections.on_free = None
        self._sock.close()

    async def wait_closed(self) -> None:
        if self._setups:
            await asyncio.wait(set(self._setups), timeout=self._connections.header_timeout)


# --- requests: basic auth, configured headers, error and access logs --------------------------

#: Routes with their own bearer-token check (the hibernation hooks): basic auth would refuse the
#: ``Authorization: Bearer`` header they need, so it does not apply to them. TLS still does.
BEARER_PATHS = ("/hooks/",)

#: Seconds a login refused for lack of bcrypt capacity waits before its 503 answer.
AUTH_BUSY_DELAY = 0.5
#: Connections remembered as having failed a login (their checks get the lower priority).
FAILED_CONNECTIONS_KEPT = 4096


class RequestGuard:
    """Access log (DEBUG), error log, configured headers and basic auth, in one ASGI layer.

    Headers go on every answer (401s and 500s included); an exception from a route is logged here
    and answered with a plain 500, so uvicorn does not log it a second time.
    """

    def __init__(
        self, app: ASGIApp, *, verifier: BasicAuthVerifier | None, headers: Mapping[str, str]
    ) -> None:
        self.app = app
        self.verifier = verifier
        # Connections (client address and port) that failed a login: their next checks wait
        # behind those of other clients (see BasicAuthVerifier). Bounded, oldest forgotten.
        self._failed: OrderedDict[Any, None] = OrderedDict()
        self.headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if self.headers:
                    message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        try:
            response: Response | None = None
            if self.verifier is not None and not str(scope.get("path", "")).startswith(
                BEARER_PATHS
            ):
                try:
                    if not await self._authorized(scope):
                        response = PlainTextResponse(
                            "unauthorized\n",
                            status_code=401,
                            headers={"WWW-Authenticate": f'Basic realm="{REALM}"'},
                        )
                except AuthBusyError:
                    # Too many password checks queued (a failed-login flood): shed this one,
                    # after a pause that costs no CPU, so a flood cannot spin on quick refusals.
                    await asyncio.sleep(AUTH_BUSY_DELAY)
                    response = PlainTextResponse(
                        "too many login attempts, retry later\n",
                        status_code=503,
                        headers={"Retry-After": "1"},
                    )
            if response is not None:
                await response(scope, receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("error serving %s %s", scope.get("method"), scope.get("path"))
            if status != 0:
                raise  # the answer is half sent: only dropping the connection is left
            await PlainTextResponse("internal server error\n", status_code=500)(
                scope, receive, send_wrapper
            )
        finally:
            if access_log.isEnabledFor(logging.DEBUG):
                client = scope.get("client")
                access_log.debug(
                    "%s %s %s -> %d in %.1f ms",
                    client[0] if client else "-",
                    scope.get("method"),
                    scope.get("path"),
                    status,
                    (time.perf_counter() - start) * 1000,
                )

    async def _authorized(self, scope: Scope) -> bool:
        assert self.verifier is not None
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if header is None:
            return False
        scheme, _, encoded = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        client = scope.get("client")
        key = tuple(client) if client else None
        try:
            ok = await self.verifier.verify(user, password, suspect=key in self._failed)
        except AuthBusyError:
            ok = False
            raise
        finally:
            if not ok and key is not None:  # failed, or refused and still sending: a suspect
                self._failed[key] = None
                self._failed.move_to_end(key)
                while len(self._failed) > FAILED_CONNECTIONS_KEPT:
                    self._failed.popitem(last=False)
        return ok
