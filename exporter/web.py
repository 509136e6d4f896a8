"""The exporter's HTTP server: Starlette routes served by uvicorn.

Routes::

    GET /metrics   the last rendered exposition: OpenMetrics 1.0.0 when the Accept header asks for
                   it, Prometheus text 0.0.4 otherwise; gzip when Accept-Encoding allows it.
                   503 before the first collection.
    GET /healthz   200 "ok" while the process runs (liveness)
    GET /readyz    200 "ready", or 503 with one reason per line (readiness)

The daemon adds the status console's routes (``exporter.status``) and the hibernation hooks
(``extra_routes``).

A scrape does no work beyond content negotiation: the collector renders the exposition (and its
gzip) once per collection and swaps it in; this module only picks which bytes to send. The web
layer knows the collector through the :class:`StatusSource` protocol and never imports the API
client.

Optional TLS, basic auth and extra response headers come from a web config file in the Prometheus
exporter-toolkit format (:mod:`exporter.webconfig`); auth applies to every route.

:class:`Server` runs the app on an already-bound socket (``listen`` may use port 0; ``.port``
tells the real one) and stops gracefully: the listener closes, in-flight requests finish, then the
``on_shutdown`` hooks run. :func:`serve` adds SIGTERM/SIGINT/SIGHUP handling for the command line
(SIGHUP stops gracefully like SIGTERM).

Under attack, :class:`Server` bounds connections, header and write times and accept failures
(:class:`WebLimits`, enforced by :mod:`exporter.webguard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from exporter.config import listen_address
from exporter.metrics.render import CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT
from exporter.webconfig import BasicAuthVerifier, WebConfig
from exporter.webguard import (
    CLOSING_SCOPE_KEY,
    Acceptor,
    Connections,
    GuardedH11,
    RequestGuard,
    WebLimits,
)

__all__ = [
    "ExpositionLike",
    "Server",
    "StatusSource",
    "WebLimits",
    "build_app",
    "on_stop_signals",
    "serve",
]

log = logging.getLogger(__name__)


# --- the interfaces the collector implements --------------------------------------------------


class ExpositionLike(Protocol):
    """One rendered exposition (``exporter.metrics``' Exposition implements it)."""

    def body(self, *, openmetrics: bool, gzip: bool) -> tuple[int, Iterable[bytes]]:
        """``(content length, pieces in order)``: Prometheus text 0.0.4 or OpenMetrics 1.0.0
        (``# EOF`` included), gzip-encoded or not. Pieces are produced as they are sent, so a
        large exposition is never joined or copied for a scrape."""


class StatusSource(Protocol):
    """What the web layer asks of the collector; every call must be cheap and non-blocking."""

    def exposition(self) -> ExpositionLike | None:
        """The last rendered exposition; None before the first render."""

    def readiness(self) -> tuple[bool, list[str]]:
        """(ready, reasons when not ready)."""


# --- content negotiation -----------------------------------------------------------------------


def _media_ranges(header: str) -> list[tuple[str, dict[str, str], float]]:
    """Parse an Accept / Accept-Encoding header into (value, params, q) triples."""
    out: list[tuple[str, dict[str, str], float]] = []
    for part in header.split(","):
        pieces = [p.strip() for p in part.split(";")]
        value = pieces[0].lower()
        if not value:
            continue
        params: dict[str, str] = {}
        for piece in pieces[1:]:
            name, _, v = piece.partition("=")
            params[name.strip().lower()] = v.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        out.append((value, params, q))
    return out


def wants_openmetrics(accept: str) -> bool:
    """Whether to answer OpenMetrics: asked for with a q at least that of the text format.

    Prometheus sends e.g. ``application/openmetrics-text;version=1.0.0;q=0.5,...,
    text/plain;version=0.0.4;q=0.3,*/*;q=0.2``. ``*/*`` alone gets the text format, as with
    every Prometheus client library.
    """
    om_q = 0.0
    text_q = 0.0
    for value, params, q in _media_ranges(accept):
        if value == "application/openmetrics-text":
            if params.get("version", "1.0.0") in ("1.0.0", "0.0.1"):
                om_q = max(om_q, q)
        elif value in ("text/*", "*/*") or (
            value == "text/plain" and params.get("version", "0.0.4") == "0.0.4"
        ):
            text_q = max(text_q, q)
    return om_q > 0 and om_q >= text_q


def accepts_gzip(accept_encoding: str) -> bool:
    gzip_q: float | None = None
    star_q: float | None = None
    for value, _params, q in _media_ranges(accept_encoding):
        if value in ("gzip", "x-gzip"):
            gzip_q = q
        elif value == "*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0
    return star_q is not None and star_q > 0


# --- routes ------------------------------------------------------------------------------------


def build_app(
    source: StatusSource,
    *,
    web_config: WebConfig | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    limits: WebLimits | None = None,
) -> Starlette:
    """The ASGI app. ``on_shutdown`` hooks run, in order, after in-flight requests finished."""
    limits = limits or WebLimits()

    async def metrics(request: Request) -> Response:
        exposition = source.exposition()
        if exposition is None:
            return PlainTextResponse("no collection has completed yet\n", status_code=503)
        headers = {"Vary": "Accept, Accept-Encoding", "Cache-Control": "no-store"}
        openmetrics = wants_openmetrics(request.headers.get("accept", ""))
        media = CONTENT_TYPE_OPENMETRICS if openmetrics else CONTENT_TYPE_TEXT
        gzip = accepts_gzip(request.headers.get("accept-encoding", ""))
        if gzip:
            headers["Content-Encoding"] = "gzip"
        length, parts = exposition.body(openmetrics=openmetrics, gzip=gzip)
        return PartsResponse(parts, length, headers=headers, media_type=media)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        ready, reasons = source.readiness()
        if ready:
            return PlainTextResponse("ready\n")
        text = "".join(f"{r}\n" for r in reasons) or "not ready\n"
        return PlainTextResponse(text, status_code=503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for hook in on_shutdown:
            # One failing hook must not keep the next (the state file, say) from running.
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook %s failed", getattr(hook, "__qualname__", hook))

    # The daemon adds the status console (exporter.status: /, /cluster, /status.json) and the
    # hibernation hooks.
    routes: list[BaseRoute] = [
        *extra_routes,
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    config = web_config or WebConfig()
    verifier = (
        BasicAuthVerifier(
            config.basic_auth_users, workers=limits.auth_workers, max_pending=limits.auth_queue
        )
        if config.auth_enabled
        else None
    )
    if verifier is not None:
        on_shutdown = [*on_shutdown, verifier.aclose]
    middleware = [Middleware(RequestGuard, verifier=verifier, headers=dict(config.headers))]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


class PartsResponse(Response):
    """A body of known length sent as the pieces it comes in: never joined or copied."""

    def __init__(
        self,
        parts: Iterable[bytes],
        length: int,
        *,
        headers: Mapping[str, str],
        media_type: str,
    ) -> None:
        # Starlette would append its own charset to a text/* type without one; ours carry it.
        super().__init__(b"", headers=headers, media_type=media_type)
        self.parts = parts
        self.headers["content-length"] = str(length)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if scope.get("method") != "HEAD":
            closing = scope.get(CLOSING_SCOPE_KEY)
            for part in self.parts:
                if closing is not None and closing():
                    # The client hung up: stop writing (asyncio warns about every write to a
                    # lost connection); one turn of the loop lets the server register the loss,
                    # after which the last message below is dropped quietly.
                    await asyncio.sleep(0)
                    break
                await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


# --- serving -----------------------------------------------------------------------------------


def _listen_address(listen: str) -> tuple[str, int]:
    """``(host, port)`` of a listen address, as the configuration reads it (host "" for
    ``:PORT``: every interface, of both IP families when the system has them)."""
    try:
        return listen_address(listen)
    except ValueError as exc:
        raise ValueError(f"listen address {listen!r} {exc}") from None


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket; "" (and "::") mean every interface, of both IP families if possible."""
    if host in ("", "::") and socket.has_dualstack_ipv6():
        sock = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    elif host == "":
        sock = socket.create_server(("0.0.0.0", port))  # noqa: S104 - asked for all interfaces
    else:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.create_server(address[:2], family=family)
    return with_tcp_proto(sock)


def with_tcp_proto(sock: socket.socket) -> socket.socket:
    """The same socket, its protocol recorded as TCP.

    ``socket.create_server`` leaves ``proto`` at 0, and asyncio sets ``TCP_NODELAY`` on accepted
    connections only when the listening socket says ``IPPROTO_TCP``: without it every small answer
    (a scrape of a small exposition, ``/healthz``) waits for Nagle and delayed ACKs
    (docs/performance.md).
    """
    if sock.proto == socket.IPPROTO_TCP:
        return sock
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


class _UvicornServer(uvicorn.Server):
    """uvicorn's server without its own signal handling, with a startup event, accepting through
    :class:`Acceptor` within :class:`Connections`' limits."""

    def __init__(self, config: uvicorn.Config, connections: Connections) -> None:
        super().__init__(config)
        self.started_event = asyncio.Event()
        self.connections_state = connections
        self.acceptors: list[Acceptor] = []

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        # Signals are handled by serve(): uvicorn's handler would re-raise them after shutdown
        # and so turn a clean SIGTERM stop into a killed process.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is None:  # not used by this module: uvicorn's own listening
            await super().startup(sockets=sockets)
            self.started_event.set()
            return
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(3)  # uvicorn's STARTUP_FAILURE; the app logged why
        config = self.config

        def create_protocol() -> asyncio.Protocol:
            protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )
            return protocol

        self.acceptors = [
            Acceptor(sock, create_protocol, self.connections_state, config.ssl) for sock in sockets
        ]
        self.servers = self.acceptors  # type: ignore[assignment]
        self.started = True
        self.started_event.set()


class Server:
    """The app on a bound socket. ``await start()``; ``.port``; ``await stop()``.

    ``stop()`` closes the listener, lets in-flight requests finish (up to ``grace`` seconds) and
    then runs the app's ``on_shutdown`` hooks.
    """

    def __init__(
        self,
        app: ASGIApp,
        listen: str,
        web_config: WebConfig | None = None,
        *,
        grace: int = 30,
        limits: WebLimits | None = None,
    ) -> None:
        self._host, self._port = _listen_address(listen)
        self.web_config = web_config
        ssl_ctx = web_config.tls.ssl_context() if web_config and web_config.tls else None
        self.tls = ssl_ctx is not None
        self.limits = limits or WebLimits()
        self.connections = Connections(
            self.limits.connection_limit(), self.limits.header_timeout, self.limits.write_timeout
        )
        protocol = type("_ServerH11", (GuardedH11,), {"connections_state": self.connections})
        self._config = uvicorn.Config(
            app,
            http=protocol,
            h11_max_incomplete_event_size=16 * 1024,  # request line and headers at most
            lifespan="on",
            log_config=None,
            access_log=False,  # ours logs at DEBUG: scrapes are frequent
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=grace,
            ssl_context_factory=(lambda _config, _default: ssl_ctx) if ssl_ctx else None,
        )
        self._server = _UvicornServer(self._config, self.connections)
        self._sock: socket.socket | None = None
        self._bound_port: int | None = None  # kept: the socket is closed at shutdown
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("the server is not started")
        return self._bound_port

    @property
    def url(self) -> str:
        """Base URL to reach the server locally (for logs and tests)."""
        host = self._host or "127.0.0.1"
        if host in ("0.0.0.0", "::"):  # noqa: S104 - not binding, naming a reachable address
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def start(self) -> None:
        """Bind, start serving, and return once connections are accepted."""
        if self._task is not None:
            raise RuntimeError("the server is already started")
        try:
            self._sock = _bind(self._host, self._port)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot listen on {self._host}:{self._port}: {exc.strerror}"
            ) from None
        self._bound_port = int(self._sock.getsockname()[1])
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        started = asyncio.create_task(self._server.started_event.wait())
        await asyncio.wait({self._task, started}, return_when=asyncio.FIRST_COMPLETED)
        if not self._server.started_event.is_set():
            started.cancel()
            await self._task  # raises what failed
            raise RuntimeError("the web server stopped during start-up")
        log.info(
            "listening on %s (at most %d connections, %.0f s for request headers)",
            self.url,
            self.connections.limit,
            self.limits.header_timeout,
        )

    @property
    def accept_failures(self) -> int:
        """accept() calls that failed (EMFILE...), for tests and the soak."""
        return sum(a.accept_failures for a in self._server.acceptors)

    def request_stop(self, *, force: bool = False) -> None:
        """Begin a graceful stop (``force``: skip waiting for in-flight requests and the hooks)."""
        self._server.should_exit = True
        if force:
            self._server.force_exit = True

    @property
    def stopping(self) -> bool:
        return bool(self._server.should_exit)

    async def wait(self) -> None:
        """Until the server has stopped."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Stop gracefully and wait for it."""
        self.request_stop()
        await self.wait()


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[signal.Signals], None]) -> Iterator[None]:
    """Within the block, SIGTERM, SIGINT and SIGHUP call ``handler`` (on the running loop); the
    handlers in place before are given back after it. Outside the main thread nothing is
    installed: the caller stops the block."""
    loop = asyncio.get_running_loop()
    installed: dict[signal.Signals, Any] = {}  # what signal.getsignal gives
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            previous = signal.getsignal(sig)
            loop.add_signal_handler(sig, handler, sig)
            installed[sig] = previous
        except (NotImplementedError, RuntimeError, ValueError):
            break  # not the main thread, or no signal support
    try:
        yield
    finally:
        for sig, previous in installed.items():
            loop.remove_signal_handler(sig)
            # remove_signal_handler resets to the default; give back what was there before.
            if previous is not None:
                signal.signal(sig, previous)


async def serve(
    app: ASGIApp,
    listen: str,
    web_config: WebConfig | None,
    *,
    ready: asyncio.Event | None = None,
    on_started: Callable[[Server], None] | None = None,
    limits: WebLimits | None = None,
) -> None:
    """Serve until SIGTERM, SIGINT or SIGHUP, then stop gracefully (a second SIGINT forces the
    stop). SIGHUP is a graceful stop like SIGTERM, not a reload: the configuration is read at
    start-up only, and a supervisor restarts the process with the new files.

    ``ready`` is set, and ``on_started`` called with the :class:`Server`, once connections are
    accepted. Signal handlers are installed only when running in the main thread.
    """
    server = Server(app, listen, web_config, limits=limits)
    await server.start()

    def on_signal(sig: signal.Signals) -> None:
        force = server.stopping and sig == signal.SIGINT
        log.info("received %s, %s", sig.name, "stopping now" if force else "stopping gracefully")
        server.request_stop(force=force)

    try:
        with on_stop_signals(on_signal):
            if on_started is not None:
                on_started(server)
            if ready is not None:
                ready.set()
            await server.wait()
    finally:
        if not server.stopping:
            await server.stop()
