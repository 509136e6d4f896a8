"""CCEClient TLS: verification on by default, a private CA via ``ca_file``, and the opt-out.

A throwaway CA (trustme) signs a certificate for 127.0.0.1, served by uvicorn over HTTPS on a
loopback port chosen by the kernel.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from exporter.cce.client import CCEClient
from exporter.cce.errors import TransportError
from exporter.cce.instrumentation import ApiMetrics

PROJECT = "tls-project"


class NoAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield request


async def quotas(request: Request) -> JSONResponse:
    return JSONResponse({"quotas": [{"quotaKey": "cluster", "quotaLimit": 20, "used": 1}]})


@dataclass
class TlsServer:
    url: str
    ca_file: Path
    requests: list[str]


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[TlsServer]:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    chain = tmp_path / "server.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(chain))

    seen: list[str] = []

    async def record(request: Request) -> JSONResponse:
        seen.append(request.url.path)
        return await quotas(request)

    app = Starlette(routes=[Route(f"/api/v3/projects/{PROJECT}/quotas", record)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        ssl_certfile=str(chain),
        lifespan="off",
        ws="none",
        http="h11",
        log_level="critical",
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while not server.started:
        if task.done() or loop.time() > end:
            raise RuntimeError("the HTTPS test server did not start")
        await asyncio.sleep(0.01)
    try:
        yield TlsServer(f"https://127.0.0.1:{port}", ca_file, seen)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


def make(server: TlsServer, registry: CollectorRegistry, **kw: Any) -> CCEClient:
    return CCEClient(
        server.url,
        NoAuth(),
        PROJECT,
        addon_endpoint=server.url,
        metrics=ApiMetrics(registry),
        timeout=5,
        **kw,
    )


async def test_verification_fails_without_the_ca_and_is_not_retried(
    tls_server: TlsServer, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    caplog.set_level(logging.WARNING)
    async with make(tls_server, registry) as client:
        with pytest.raises(TransportError, match="TLS"):
            await client.get_quotas()
    assert tls_server.requests == []
    # One attempt: a certificate problem does not go away by asking again.
    assert (
        registry.get_sample_value(
            "cce_exporter_api_requests_total",
            {
                "endpoint": "/api/v3/projects/{project_id}/quotas",
                "method": "GET",
                "code": "connection_error",
            },
        )
        == 1
    )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_verification_succeeds_with_ca_file(tls_server: TlsServer) -> None:
    async with make(tls_server, CollectorRegistry(), ca_file=tls_server.ca_file) as client:
        quotas = await client.get_quotas()
    assert [(q.quota_key, q.quota_limit) for q in quotas] == [("cluster", 20)]
    assert tls_server.requests == [f"/api/v3/projects/{PROJECT}/quotas"]


async def test_insecure_skip_verify_connects_and_warns_once(
    tls_server: TlsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="exporter.cce.client")
    async with make(tls_server, CollectorRegistry(), insecure_skip_verify=True) as client:
        await client.get_quotas()
        await client.get_quotas()
    warnings = [
        r
        for r in caplog.records
        if r.name == "exporter.cce.client" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    assert "verification is disabled" in warnings[0].getMessage()
    assert "127.0.0.1" in warnings[0].getMessage()
    assert len(tls_server.requests) == 2
