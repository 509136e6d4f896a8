"""Proxies: every request of a collection (IAM and CCE) goes through the configured or the
environment's proxy, none when NO_PROXY matches or ``proxy: none``; HTTPS is tunnelled (CONNECT)
with the API's certificate verified as without a proxy; proxy credentials are never shown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trustme
from forward_proxy import ForwardProxy
from prometheus_client import CollectorRegistry

from exporter.assemble import TargetBuilder
from exporter.cce.client import CCEClient
from exporter.cce.errors import CCEError, TransportError
from exporter.cce.http import PROXY_OFF, HttpOptions, build_http_client, redact_url, scrub
from exporter.cce.instrumentation import ApiMetrics
from exporter.collect.service import ExporterService
from exporter.config import ConfigError, load_settings, render_effective_config
from exporter.simulator import Simulator, SimulatorConfig, running_simulator

pytestmark = pytest.mark.simulator(clusters=2, nodes_per_cluster=2)

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
PROXY_PASSWORD = "pr0xy-S3cret-pa55"


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def _env(sim: Simulator, **extra: str) -> dict[str, str]:
    env = dict(sim.settings)
    env.update(
        {
            "CCE_EXPORTER_AUTH_METHOD": "password",  # an IAM token request, then CCE calls
            "CCE_EXPORTER_MAX_RETRIES": "0",
            "CCE_EXPORTER_TIMEOUT": "5s",
        }
    )
    env.update(extra)
    return env


async def _collect(env: dict[str, str]) -> tuple[dict[str, bool], bytes]:
    service = ExporterService(load_settings(None, env), build_targets=TargetBuilder())
    await service.setup()
    try:
        results = await service.collect_all()
        exposition = service.exposition()
        assert exposition is not None
        _, parts = exposition.body(openmetrics=False, gzip=False)
        text = b"".join(parts)
    finally:
        await service.close()
    return results, text


def _api_requests(sim: Simulator) -> int:
    return sum(sim.app.requests.values())


async def test_every_request_of_a_collection_goes_through_the_configured_proxy(
    simulator: Simulator,
) -> None:
    async with ForwardProxy() as proxy:
        results, _ = await _collect(_env(simulator, CCE_EXPORTER_PROXY=proxy.url))
    assert results and all(results.values()), results
    assert simulator.app.requests["iam_tokens"] == 1
    assert simulator.app.requests["clusters"] >= 1
    # Every request the simulator answered came through the proxy, IAM's included.
    assert len(proxy.seen) == _api_requests(simulator)
    assert ("POST", simulator.base_url + "/v3/auth/tokens") in proxy.seen
    assert all(target.startswith(simulator.base_url + "/") for _, target in proxy.seen)


@pytest.mark.parametrize(
    ("scheme_var", "extra_env", "target_proxy", "through"),
    [
        ("HTTP_PROXY", {}, None, True),
        ("ALL_PROXY", {}, None, True),
        ("HTTP_PROXY", {"NO_PROXY": "127.0.0.1"}, None, False),
        ("HTTP_PROXY", {"NO_PROXY": "example.com,127.0.0.1"}, None, False),
        ("HTTP_PROXY", {}, "none", False),
        ("HTTP_PROXY", {"NO_PROXY": "127.0.0.1"}, "proxy", True),
    ],
    ids=["env", "all_proxy", "no_proxy", "no_proxy_list", "proxy_none", "explicit_wins"],
)
async def test_environment_proxies_no_proxy_and_proxy_none(
    simulator: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    scheme_var: str,
    extra_env: dict[str, str],
    target_proxy: str | None,
    through: bool,
) -> None:
    async with ForwardProxy() as env_proxy, ForwardProxy() as explicit:
        monkeypatch.setenv(scheme_var, env_proxy.url)
        for name, value in extra_env.items():
            monkeypatch.setenv(name, value)
        extra = {}
        if target_proxy == "none":
            extra["CCE_EXPORTER_PROXY"] = "none"
        elif target_proxy == "proxy":
            extra["CCE_EXPORTER_PROXY"] = explicit.url
        results, _ = await _collect(_env(simulator, **extra))
    assert results and all(results.values()), results
    sent = _api_requests(simulator)
    assert sent > 0
    if target_proxy == "proxy":
        # The target's own proxy overrides the environment (NO_PROXY included).
        assert (len(explicit.seen), len(env_proxy.seen)) == (sent, 0)
    elif through:
        assert len(env_proxy.seen) == sent
    else:
        assert env_proxy.seen == [] and explicit.seen == []


async def test_proxy_credentials_are_used_and_never_shown(
    simulator: Simulator, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    async with ForwardProxy(credentials=("exporter", PROXY_PASSWORD)) as proxy:
        proxy_url = proxy.url_with_credentials()
        env = _env(simulator, CCE_EXPORTER_PROXY=proxy_url)
        results, exposition = await _collect(env)
        assert results and all(results.values()), results
        assert proxy.refused == 0 and len(proxy.seen) == _api_requests(simulator)
        assert proxy.proxy_authorizations  # the credentials went to the proxy, as Basic auth

        # A wrong password: the proxy refuses, the error says so without the password.
        bad = proxy_url.replace(PROXY_PASSWORD, PROXY_PASSWORD + "-wrong")
        failed, bad_exposition = await _collect(_env(simulator, CCE_EXPORTER_PROXY=bad))
        assert proxy.refused >= 1
    assert failed["default/clusters"] is False and "407" in caplog.text

    settings = load_settings(None, env)
    shown = render_effective_config(settings)
    assert "exporter:********@127.0.0.1" in shown
    errors: list[str] = []
    client = CCEClient(
        simulator.base_url,
        httpx.Auth(),
        "p",
        proxy=bad.replace(str(proxy.port), "1"),  # nothing listens there now
        max_retries=0,
        metrics=ApiMetrics(CollectorRegistry()),
    )
    async with client:
        with pytest.raises(CCEError) as excinfo:
            await client.list_clusters()
        errors.append(str(excinfo.value))
    with pytest.raises(ConfigError) as config_error:
        load_settings(None, {**env, "CCE_EXPORTER_PROXY": f"socks5://u:{PROXY_PASSWORD}@h:1"})
    errors.append(str(config_error.value))
    places = {
        "logs": caplog.text,
        "metrics": exposition.decode() + bad_exposition.decode(),
        "check-config": shown,
        "errors": "\n".join(errors),
        "repr": repr(settings) + repr(HttpOptions.for_target(settings.targets[0])),
        "stdout": "".join(capsys.readouterr()),
    }
    for where, text in places.items():
        assert PROXY_PASSWORD not in text, where
        assert proxy.proxy_authorizations[0].split()[1] not in text, where  # base64 user:password
    assert "proxy: http://exporter:***@127.0.0.1" in caplog.text  # the route is logged, masked


def test_redaction_helpers() -> None:
    assert redact_url("http://u:p@h:3128") == "http://u:***@h:3128"
    assert redact_url("http://h:3128") == "http://h:3128"
    assert redact_url("http://u:p@[::1]:3128/") == "http://u:***@[::1]:3128/"
    assert scrub("failed via http://u:secret@proxy:1 and https://a:b@c") == (
        "failed via http://***@proxy:1 and https://***@c"
    )


@pytest.mark.parametrize(
    "value",
    ["socks5://proxy:1080", "proxy:3128", "http://", "http://h:3128/path", "http://h:99999"],
)
def test_bad_proxy_settings_are_refused_clearly(simulator: Simulator, value: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(None, {**simulator.settings, "CCE_EXPORTER_PROXY": value})
    assert "CCE_EXPORTER_PROXY" in str(excinfo.value)


# --- HTTPS through CONNECT -------------------------------------------------------------------


class _TlsServer:
    def __init__(self, ca_file: Path, port: int) -> None:
        self.ca_file, self.port = ca_file, port
        self.url = f"https://127.0.0.1:{port}"


_ANSWER = b'{"kind":"Cluster","apiVersion":"v3","items":[]}'


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(_ANSWER)).encode()
                + b"\r\n\r\n"
                + _ANSWER
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def _tls_server(tmp_path: Path) -> AsyncIterator[_TlsServer]:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = await asyncio.start_server(_answer, "127.0.0.1", 0, ssl=context)
    try:
        yield _TlsServer(ca_file, server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.simulator(clusters=0)
async def test_https_through_the_proxy_is_tunnelled_and_verified(tmp_path: Path) -> None:
    async with _tls_server(tmp_path) as api, ForwardProxy() as proxy:
        registry = CollectorRegistry()
        trusted = CCEClient(
            api.url,
            httpx.Auth(),
            "p",
            ca_file=api.ca_file,
            proxy=proxy.url,
            metrics=ApiMetrics(registry),
        )
        async with trusted:
            assert await trusted.list_clusters() == []
        assert proxy.seen == [("CONNECT", f"127.0.0.1:{api.port}")]
        # Without the CA the API's certificate is refused through the tunnel as it is directly,
        # and that is not retried.
        untrusting = CCEClient(
            api.url,
            httpx.Auth(),
            "p",
            proxy=proxy.url,
            max_retries=3,
            metrics=ApiMetrics(CollectorRegistry()),
        )
        async with untrusting:
            with pytest.raises(TransportError, match="TLS certificate verification failed"):
                await untrusting.list_clusters()
        assert len(proxy.seen) == 2


async def test_metadata_style_direct_client_ignores_environment_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running_simulator(SimulatorConfig(clusters=0)) as sim, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with build_http_client(HttpOptions(proxy=PROXY_OFF)) as direct:
            assert (await direct.get(sim.base_url + "/_sim/state")).status_code == 200
        async with build_http_client(HttpOptions()) as from_env:
            assert (await from_env.get(sim.base_url + "/_sim/state")).status_code == 200
    assert proxy.seen == [("GET", sim.base_url + "/_sim/state")]


@pytest.mark.simulator(clusters=0)
async def test_https_proxy_from_the_environment_tunnels_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _tls_server(tmp_path) as api, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        client = CCEClient(
            api.url, httpx.Auth(), "p", ca_file=api.ca_file, metrics=ApiMetrics(CollectorRegistry())
        )
        async with client:
            assert await client.list_clusters() == []
    assert proxy.seen == [("CONNECT", f"127.0.0.1:{api.port}")]


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", b"garbage\r\n\r\n", b""],
    ids=["refused", "garbage", "closed"],
)
@pytest.mark.simulator(clusters=0)
async def test_a_broken_proxy_is_a_clear_transport_error(tmp_path: Path, answer: bytes) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(broken, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = CCEClient(
            "https://cce.example.invalid",
            httpx.Auth(),
            "p",
            proxy=f"http://user:{PROXY_PASSWORD}@127.0.0.1:{port}",
            max_retries=1,
            sleep=_no_sleep,
            metrics=ApiMetrics(CollectorRegistry()),
        )
        async with client:
            with pytest.raises(TransportError) as excinfo:
                await client.list_clusters()
    finally:
        server.close()
        await server.wait_closed()
    assert PROXY_PASSWORD not in str(excinfo.value)


async def _no_sleep(seconds: float) -> None:
    return None


def test_proxy_per_target_in_the_file(tmp_path: Path, simulator: Simulator) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "proxy: http://proxy.corp:3128\n"
        "targets:\n"
        "  - {name: a}\n"
        "  - {name: b, proxy: none}\n"
        "  - {name: c, proxy: null}\n"
    )
    env = {k: v for k, v in simulator.settings.items()}
    settings = load_settings(config, env)
    routes = [HttpOptions.for_target(t).route() for t in settings.targets]
    assert routes == ["http://proxy.corp:3128", "direct", "environment"]
