"""The HTTP server over loopback HTTP: negotiation, health, extra routes, auth, TLS, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import bcrypt
import httpx
import pytest
import trustme
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from exporter.metrics.render import CONTENT_TYPE_OPENMETRICS as OPENMETRICS_CONTENT_TYPE
from exporter.metrics.render import CONTENT_TYPE_TEXT as TEXT_CONTENT_TYPE
from exporter.web import Server, build_app, serve
from exporter.webconfig import WebConfig, load_web_config

TEXT = b"# HELP cce_up Whether the API answered.\n# TYPE cce_up gauge\ncce_up 1\n"
OPENMETRICS = b"# HELP cce_up Whether the API answered.\n# TYPE cce_up gauge\ncce_up 1\n# EOF\n"

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


@dataclass
class FakeExposition:
    text: bytes
    openmetrics: bytes

    # Served in parts, as the renderer gives them: split in three to exercise that.
    def body(self, *, openmetrics: bool, gzip: bool) -> tuple[int, Iterable[bytes]]:
        if gzip:
            data = self.openmetrics_gzip if openmetrics else self.text_gzip
        else:
            data = self.openmetrics if openmetrics else self.text
        return len(data), iter(_thirds(data))

    @cached_property
    def text_gzip(self) -> bytes:
        return gzip.compress(self.text, mtime=0)

    @cached_property
    def openmetrics_gzip(self) -> bytes:
        return gzip.compress(self.openmetrics, mtime=0)


def _thirds(data: bytes) -> tuple[bytes, ...]:
    third = len(data) // 3
    return (data[:third], data[third : 2 * third], data[2 * third :])


@dataclass
class FakeSource:
    current: FakeExposition | None = None
    ready: bool = True
    reasons: list[str] = field(default_factory=list)

    def exposition(self) -> FakeExposition | None:
        return self.current

    def readiness(self) -> tuple[bool, list[str]]:
        return self.ready, list(self.reasons)


@contextlib.asynccontextmanager
async def running(app: object, web_config: WebConfig | None = None) -> AsyncIterator[Server]:
    server = Server(app, "127.0.0.1:0", web_config)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def source() -> FakeSource:
    return FakeSource(current=FakeExposition(TEXT, OPENMETRICS))


# --- /metrics ----------------------------------------------------------------------------------


async def test_metrics_503_before_first_exposition() -> None:
    async with running(build_app(FakeSource())) as server, httpx.AsyncClient() as client:
        r = await client.get(f"{server.url}/metrics")
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("text/plain")
    assert "no collection has completed yet" in r.text


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        (None, False),
        ("*/*", False),
        ("text/plain;version=0.0.4", False),
        (PROMETHEUS_ACCEPT, True),
        ("application/openmetrics-text; version=1.0.0", True),
        ("application/openmetrics-text", True),
        ("application/openmetrics-text;version=1.0.0;q=0.2,text/plain;version=0.0.4;q=0.5", False),
        ("application/openmetrics-text;version=2.0.0", False),
        ("application/openmetrics-text;version=1.0.0;q=0", False),
    ],
)
async def test_metrics_content_negotiation(
    source: FakeSource, accept: str | None, openmetrics: bool
) -> None:
    headers = {"Accept-Encoding": "identity"}
    if accept is not None:
        headers["Accept"] = accept
    async with running(build_app(source)) as server, httpx.AsyncClient() as client:
        r = await client.get(f"{server.url}/metrics", headers=headers)
    assert r.status_code == 200
    assert "content-encoding" not in r.headers
    if openmetrics:
        assert r.headers["content-type"] == OPENMETRICS_CONTENT_TYPE
        assert r.content == OPENMETRICS
    else:
        assert r.headers["content-type"] == TEXT_CONTENT_TYPE
        assert r.content == TEXT
    assert "Accept-Encoding" in r.headers["vary"]


@pytest.mark.parametrize("openmetrics", [False, True])
async def test_metrics_gzip_serves_the_cached_bytes(source: FakeSource, openmetrics: bool) -> None:
    headers = {"Accept-Encoding": "gzip"}
    if openmetrics:
        headers["Accept"] = PROMETHEUS_ACCEPT
    async with (
        running(build_app(source)) as server,
        httpx.AsyncClient() as client,
        client.stream("GET", f"{server.url}/metrics", headers=headers) as r,
    ):
        raw = b"".join([chunk async for chunk in r.aiter_raw()])
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in r.headers["vary"]
    assert source.current is not None
    expected = OPENMETRICS if openmetrics else TEXT
    assert gzip.decompress(raw) == expected
    cached = source.current.openmetrics_gzip if openmetrics else source.current.text_gzip
    assert raw == cached
    assert int(r.headers["content-length"]) == len(raw)


async def test_metrics_gzip_refused_with_q0(source: FakeSource) -> None:
    async with running(build_app(source)) as server, httpx.AsyncClient() as client:
        r = await client.get(f"{server.url}/metrics", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in r.headers
    assert r.content == TEXT


async def test_metrics_head(source: FakeSource) -> None:
    async with running(build_app(source)) as server, httpx.AsyncClient() as client:
        r = await client.head(f"{server.url}/metrics", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200
    assert r.headers["content-type"] == TEXT_CONTENT_TYPE
    assert int(r.headers["content-length"]) == len(TEXT)
    assert r.content == b""


async def test_metrics_follows_the_latest_exposition(source: FakeSource) -> None:
    async with running(build_app(source)) as server, httpx.AsyncClient() as client:
        first = await client.get(f"{server.url}/metrics")
        source.current = FakeExposition(b"cce_up 0\n", b"cce_up 0\n# EOF\n")
        second = await client.get(f"{server.url}/metrics")
    assert first.content == TEXT
    assert second.content == b"cce_up 0\n"


# --- health ------------------------------------------------------------------------------------


async def test_healthz_and_readyz(source: FakeSource) -> None:
    async with running(build_app(source)) as server, httpx.AsyncClient() as client:
        health = await client.get(f"{server.url}/healthz")
        ready = await client.get(f"{server.url}/readyz")
        source.ready = False
        source.reasons = ["target prod: clusters never collected", "target dev: token failed"]
        not_ready = await client.get(f"{server.url}/readyz")
        health_still = await client.get(f"{server.url}/healthz")
    assert (health.status_code, health.text) == (200, "ok\n")
    assert (ready.status_code, ready.text) == (200, "ready\n")
    assert not_ready.status_code == 503
    assert not_ready.text.splitlines() == [
        "target prod: clusters never collected",
        "target dev: token failed",
    ]
    assert health_still.status_code == 200


# --- the routes the daemon adds ----------------------------------------------------------------


async def test_the_status_console_is_an_extra_route(source: FakeSource) -> None:
    """``/`` is the daemon's status console (exporter.status), given as an extra route."""

    async def console(request: Request) -> Response:
        return PlainTextResponse("console\n")

    async with httpx.AsyncClient() as client:
        async with running(build_app(source)) as server:
            r = await client.get(f"{server.url}/")
        assert r.status_code == 404
        app = build_app(source, extra_routes=[Route("/", console, methods=["GET"])])
        async with running(app) as server:
            r = await client.get(f"{server.url}/")
        assert (r.status_code, r.text) == (200, "console\n")


# --- basic auth, headers, errors, logs ---------------------------------------------------------


@pytest.fixture(scope="module")
def hashed() -> str:
    return bcrypt.hashpw(b"s3cret pass", bcrypt.gensalt(4)).decode()


async def test_basic_auth(source: FakeSource, hashed: str) -> None:
    config = WebConfig(basic_auth_users={"prom": hashed})
    async with running(build_app(source, web_config=config)) as server, httpx.AsyncClient() as c:
        right = await c.get(f"{server.url}/metrics", auth=("prom", "s3cret pass"))
        again = await c.get(f"{server.url}/metrics", auth=("prom", "s3cret pass"))
        wrong = await c.get(f"{server.url}/metrics", auth=("prom", "nope"))
        unknown = await c.get(f"{server.url}/metrics", auth=("other", "s3cret pass"))
        missing = await c.get(f"{server.url}/healthz")
        garbage = await c.get(f"{server.url}/healthz", headers={"Authorization": "Basic !!!"})
        bearer = await c.get(f"{server.url}/healthz", headers={"Authorization": "Bearer x"})
    assert right.status_code == 200
    assert right.content == TEXT
    assert again.status_code == 200
    for r in (wrong, unknown, missing, garbage, bearer):
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Basic realm="cce-exporter"'
        assert "cce_up" not in r.text


async def test_bearer_hook_routes_are_exempt_from_basic_auth(hashed: str) -> None:
    """The hooks check their own bearer token; basic auth would refuse that header."""

    async def hook(request: Request) -> Response:
        ok = request.headers.get("authorization") == "Bearer hook-token"
        return PlainTextResponse("done" if ok else "no", status_code=200 if ok else 401)

    config = WebConfig(basic_auth_users={"prom": hashed})
    app = build_app(
        FakeSource(), web_config=config, extra_routes=[Route("/hooks/x", hook, methods=["POST"])]
    )
    async with running(app) as server, httpx.AsyncClient() as c:
        hooked = await c.post(
            f"{server.url}/hooks/x", headers={"Authorization": "Bearer hook-token"}
        )
        refused = await c.post(f"{server.url}/hooks/x", headers={"Authorization": "Bearer bad"})
        metrics = await c.get(
            f"{server.url}/metrics", headers={"Authorization": "Bearer hook-token"}
        )
    assert (hooked.status_code, hooked.text) == (200, "done")
    assert refused.status_code == 401 and "www-authenticate" not in refused.headers
    assert metrics.status_code == 401  # everything else still needs basic auth


async def test_configured_headers_on_every_answer(source: FakeSource, hashed: str) -> None:
    config = WebConfig(
        basic_auth_users={"prom": hashed},
        headers={"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"},
    )
    async with running(build_app(source, web_config=config)) as server, httpx.AsyncClient() as c:
        ok = await c.get(f"{server.url}/metrics", auth=("prom", "s3cret pass"))
        denied = await c.get(f"{server.url}/metrics")
    for r in (ok, denied):
        assert r.headers["x-frame-options"] == "deny"
        assert r.headers["x-content-type-options"] == "nosniff"


async def test_route_error_is_logged_and_answered_500(
    source: FakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("kaboom")

    app = build_app(
        source,
        web_config=WebConfig(headers={"X-Frame-Options": "sameorigin"}),
        extra_routes=[Route("/boom", boom)],
    )
    with caplog.at_level(logging.ERROR, logger="exporter.web"):
        async with running(app) as server, httpx.AsyncClient() as client:
            r = await client.get(f"{server.url}/boom")
            after = await client.get(f"{server.url}/healthz")
    assert r.status_code == 500
    assert r.headers["x-frame-options"] == "sameorigin"
    assert after.status_code == 200
    errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert any("GET /boom" in rec.getMessage() and rec.exc_info for rec in errors)


async def test_access_log_only_at_debug(
    source: FakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="exporter.web.access"):
        async with running(build_app(source)) as server, httpx.AsyncClient() as client:
            await client.get(f"{server.url}/healthz")
    access = [r for r in caplog.records if r.name == "exporter.web.access"]
    assert len(access) == 1
    assert access[0].levelno == logging.DEBUG
    assert "GET /healthz -> 200" in access[0].getMessage()


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _write_tls_files(ca: trustme.CA, directory: Path) -> None:
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    (directory / "server.crt").write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(directory / "server.key"))
    ca.cert_pem.write_to_path(str(directory / "ca.crt"))


async def test_tls(source: FakeSource, ca: trustme.CA, tmp_path: Path) -> None:
    _write_tls_files(ca, tmp_path)
    config_file = tmp_path / "web.yml"
    config_file.write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  min_version: TLS13\n"
    )
    config = load_web_config(config_file)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with running(build_app(source, web_config=config), config) as server:
        assert server.url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(verify=trusting) as client:
            r = await client.get(f"{server.url}/metrics", headers={"Accept-Encoding": "identity"})
            tls_version = r.extensions["network_stream"].get_extra_info("ssl_object").version()
        async with httpx.AsyncClient() as untrusting:  # system CAs only
            with pytest.raises(httpx.ConnectError):
                await untrusting.get(f"{server.url}/healthz")
        async with httpx.AsyncClient() as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://127.0.0.1:{server.port}/healthz")
    assert r.status_code == 200
    assert r.content == TEXT
    assert tls_version == "TLSv1.3"


async def test_tls_client_certificates(source: FakeSource, ca: trustme.CA, tmp_path: Path) -> None:
    _write_tls_files(ca, tmp_path)
    config_file = tmp_path / "web.yml"
    config_file.write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
    )
    config = load_web_config(config_file)
    with_cert = ssl.create_default_context()
    ca.configure_trust(with_cert)
    ca.issue_cert("scraper@example.com").configure_cert(with_cert)
    without_cert = ssl.create_default_context()
    ca.configure_trust(without_cert)
    async with running(build_app(source, web_config=config), config) as server:
        async with httpx.AsyncClient(verify=with_cert) as client:
            r = await client.get(f"{server.url}/healthz")
        async with httpx.AsyncClient(verify=without_cert) as client:
            # TLS 1.3 reports the rejected handshake on the first read, not at connect.
            with pytest.raises(httpx.TransportError):
                await client.get(f"{server.url}/healthz")
    assert r.status_code == 200


# --- serving and shutdown ----------------------------------------------------------------------


async def test_graceful_shutdown_finishes_in_flight_then_runs_hooks(source: FakeSource) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()
    events: list[str] = []

    async def slow(request: Request) -> Response:
        entered.set()
        await release.wait()
        events.append("response")
        return PlainTextResponse("finished\n")

    async def failing_hook() -> None:
        events.append("failing hook")
        raise RuntimeError("hook failed")

    async def state_hook() -> None:
        events.append("state hook")

    app = build_app(
        source, extra_routes=[Route("/slow", slow)], on_shutdown=[failing_hook, state_hook]
    )
    server = Server(app, "127.0.0.1:0")
    await server.start()
    async with httpx.AsyncClient() as client:
        request = asyncio.create_task(client.get(f"{server.url}/slow"))
        await asyncio.wait_for(entered.wait(), 5)
        stopping = asyncio.create_task(server.stop())

        # The listener closes first: new connections are refused while /slow is in flight.
        deadline = time.monotonic() + 5
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            except (ConnectionRefusedError, ConnectionResetError):
                # Refused once the listener is closed; reset if it closed with us in its backlog.
                break
            writer.close()
            await writer.wait_closed()
            assert time.monotonic() < deadline, "the listener did not close"
            await asyncio.sleep(0.02)
        assert events == []
        assert not stopping.done()

        release.set()
        response = await asyncio.wait_for(request, 5)
        await asyncio.wait_for(stopping, 5)
    assert response.status_code == 200
    assert response.text == "finished\n"
    assert events == ["response", "failing hook", "state hook"]


async def test_serve_stops_gracefully_on_sigterm(source: FakeSource) -> None:
    hooks: list[str] = []

    async def hook() -> None:
        hooks.append("ran")

    ready = asyncio.Event()
    started: list[Server] = []
    app = build_app(source, on_shutdown=[hook])
    previous = signal.getsignal(signal.SIGTERM)
    task = asyncio.create_task(
        serve(app, "127.0.0.1:0", None, ready=ready, on_started=started.append)
    )
    await asyncio.wait_for(ready.wait(), 5)
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{started[0].url}/healthz")
    assert r.status_code == 200
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 5)
    assert hooks == ["ran"]
    assert signal.getsignal(signal.SIGTERM) == previous


async def test_listen_on_a_busy_port_fails_clearly(source: FakeSource) -> None:
    async with running(build_app(source)) as server:
        other = Server(build_app(source), f"127.0.0.1:{server.port}")
        with pytest.raises(OSError, match=rf"cannot listen on 127.0.0.1:{server.port}"):
            await other.start()


@pytest.mark.parametrize("listen", ["9100", "host:port", "127.0.0.1:70000"])
def test_bad_listen_address(source: FakeSource, listen: str) -> None:
    with pytest.raises(ValueError, match="listen address"):
        Server(build_app(source), listen)


# --- a real Prometheus scrapes us --------------------------------------------------------------


@dataclass
class RecordingExposition(FakeExposition):
    """Remembers which of the four renderings was served."""

    served: list[str] = field(default_factory=list)

    def body(self, *, openmetrics: bool, gzip: bool) -> tuple[int, Iterable[bytes]]:
        self.served.append(("openmetrics" if openmetrics else "text") + ("_gzip" if gzip else ""))
        return super().body(openmetrics=openmetrics, gzip=gzip)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.prometheus
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs the prometheus binary")
async def test_prometheus_scrapes_over_tls_with_basic_auth(
    ca: trustme.CA, tmp_path: Path, hashed: str
) -> None:
    _write_tls_files(ca, tmp_path)
    exposition = RecordingExposition(
        b"# TYPE cce_test_value gauge\ncce_test_value 42\n",
        b"# TYPE cce_test_value gauge\ncce_test_value 42\n# EOF\n",
    )
    config = WebConfig(
        tls=load_web_config_text(tmp_path, "cert_file: server.crt\n  key_file: server.key").tls,
        basic_auth_users={"prom": hashed},
    )
    async with running(build_app(FakeSource(current=exposition), web_config=config), config) as s:
        prom_port = _free_port()
        (tmp_path / "prometheus.yml").write_text(
            f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: cce
    scheme: https
    tls_config:
      ca_file: {tmp_path / "ca.crt"}
    basic_auth:
      username: prom
      password: s3cret pass
    static_configs:
      - targets: ["127.0.0.1:{s.port}"]
"""
        )
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            value = None
            deadline = time.monotonic() + 30
            async with httpx.AsyncClient() as client:
                while value is None and time.monotonic() < deadline:
                    try:
                        r = await client.get(
                            f"http://127.0.0.1:{prom_port}/api/v1/query",
                            params={"query": 'cce_test_value{job="cce"}'},
                        )
                        result = r.json()["data"]["result"] if r.status_code == 200 else []
                    except httpx.TransportError:
                        result = []
                    if result:
                        value = result[0]["value"][1]
                    else:
                        await asyncio.sleep(0.25)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert value == "42"
    # Prometheus asks for OpenMetrics with gzip: it got the cached OpenMetrics gzip bytes.
    assert "openmetrics_gzip" in exposition.served


def load_web_config_text(directory: Path, tls_body: str) -> WebConfig:
    path = directory / "web.yml"
    path.write_text(f"tls_server_config:\n  {tls_body}\n")
    return load_web_config(path)
