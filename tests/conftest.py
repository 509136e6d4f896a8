"""Shared fixtures: the simulator in process, the simulator as a process, and signed clients.

``simulator``      an in-process simulator on a free 127.0.0.1 port (function scope). Size and
                   seed: ``@pytest.mark.simulator(clusters=3, nodes_per_cluster=2, seed=5)`` or
                   indirect parametrisation with a dict of ``SimulatorConfig`` fields.
``sim_client``     an ``httpx.AsyncClient`` on that simulator whose requests are AK/SK-signed.
``start_simulator`` a factory that runs ``cce-exporter simulate ARGS...`` as a subprocess, reads
                   its settings until ``READY`` (with a deadline) and stops it by PID at teardown.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bench.procs import stop
from exporter.cce import signing
from exporter.simulator import Simulator, SimulatorConfig, running_simulator

#: Small enough to start fast, big enough for every phase of the metric contract.
TEST_SIM_DEFAULTS: dict[str, Any] = {"clusters": 30, "nodes_per_cluster": 6, "seed": 1}
PROCESS_START_DEADLINE = 30.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "simulator(**fields): SimulatorConfig fields for the simulator fixture"
    )


class SignAuth(httpx.Auth):
    """Signs each request with SDK-HMAC-SHA256 (``exporter.cce.signing``) for tests."""

    requires_request_body = True

    def __init__(self, ak: str, sk: str, *, date: datetime | None = None) -> None:
        self._ak = ak
        self._sk = sk
        self._date = date

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Sdk-Date"] = signing.sdk_date(self._date or datetime.now(UTC))
        signed = {
            "Host": request.headers["Host"],
            "X-Sdk-Date": request.headers["X-Sdk-Date"],
            "Content-Type": request.headers.setdefault("Content-Type", "application/json"),
        }
        request.headers["Authorization"] = signing.sign(
            request.method, str(request.url), signed, request.content, self._ak, self._sk
        )
        yield request


def signed_client(sim: Simulator, **kwargs: Any) -> httpx.AsyncClient:
    """An AsyncClient on ``sim`` signing with its AK/SK."""
    return httpx.AsyncClient(
        base_url=sim.base_url,
        auth=SignAuth(sim.settings["CCE_EXPORTER_AK"], sim.settings["CCE_EXPORTER_SK"]),
        **kwargs,
    )


@pytest.fixture
async def simulator(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    fields = dict(TEST_SIM_DEFAULTS)
    marker = request.node.get_closest_marker("simulator")
    if marker is not None:
        fields.update(marker.kwargs)
    param = getattr(request, "param", None)
    if isinstance(param, dict):
        fields.update(param)
    async with running_simulator(SimulatorConfig(**fields)) as sim:
        yield sim


@pytest.fixture
async def sim_client(simulator: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with signed_client(simulator, timeout=10.0) as client:
        yield client


@dataclass
class SimProcess:
    """A ``cce-exporter simulate`` subprocess and the settings it printed."""

    process: subprocess.Popen[bytes]
    settings: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return self.settings["CCE_EXPORTER_ENDPOINT"]


def _read_until_ready(process: subprocess.Popen[bytes], deadline: float) -> list[str]:
    assert process.stdout is not None
    fd = process.stdout.fileno()
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"READY\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"simulator printed no READY in time; got {buffer[-500:]!r}")
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"simulator exited (code {process.poll()}) before READY")
            buffer += chunk
    return buffer.decode().splitlines()


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM the process by its PID, SIGKILL it if it does not exit in time; its exit code."""
    return stop(process, timeout)


@pytest.fixture
def start_simulator(tmp_path: Any) -> Iterator[Callable[..., SimProcess]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, deadline: float = PROCESS_START_DEADLINE) -> SimProcess:
        stderr = open(tmp_path / f"simulate-{len(started)}.stderr", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "simulate", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        stderr.close()
        started.append(process)
        lines = _read_until_ready(process, time.monotonic() + deadline)
        settings = {}
        for line in lines:
            name, sep, value = line.partition("=")
            if sep and name.startswith("CCE_EXPORTER_"):
                settings[name] = value
        return SimProcess(process=process, settings=settings, lines=lines)

    yield start
    for process in started:
        stop_process(process)
