"""Running the simulator: configuration, the in-process context manager, the settings it prints.

In process (tests, the demo)::

    async with running_simulator(SimulatorConfig(clusters=5, seed=7)) as sim:
        sim.base_url              # http://127.0.0.1:<port>
        sim.settings              # {"CCE_EXPORTER_ENDPOINT": ..., "CCE_EXPORTER_AK": ..., ...}
        sim.world, sim.faults, sim.clock, sim.app   # the live state, for direct control

The uvicorn server runs in the current event loop, bound to a free port, and leaves the process's
signal handlers alone (the ``simulate`` command installs its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import uvicorn

from exporter.simulator.app import Credentials, SimulatorApp
from exporter.simulator.clock import SimClock
from exporter.simulator.faults import Faults
from exporter.simulator.identity import Agency
from exporter.simulator.kube import KubeSim, KubeSizes
from exporter.simulator.world import World
from exporter.web import with_tcp_proto

#: How long ``running_simulator`` waits for uvicorn to bind and serve.
START_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class SimulatorConfig:
    clusters: int = 30
    nodes_per_cluster: int = 10
    seed: int = 1
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    transition_seconds: float = 60.0
    host: str = "127.0.0.1"
    port: int = 0
    #: Start the clock at this instant (Unix seconds) instead of now.
    clock_start: float | None = None
    #: Keep the clock still except when advanced (for byte-for-byte determinism).
    clock_frozen: bool = False
    hang_seconds: float = 60.0
    max_skew_seconds: float = 900.0
    #: Lifetime of the metadata service's temporary credentials.
    temporary_seconds: float = 3600.0
    #: Clusters of the other account reached through its agency (0: no agency).
    agency_clusters: int = 2
    #: Kubernetes objects per cluster (Jobs, CronJobs, ResourceQuotas; exporter.simulator.kube).
    kube_jobs: int = 16
    kube_cronjobs: int = 4
    kube_quotas: int = 4


class Simulator:
    """A simulator's state (world, clock, faults, credentials) and, once serving, its address."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        start_ns = int(config.clock_start * 1e9) if config.clock_start is not None else None
        self.clock = SimClock(start_ns, frozen=config.clock_frozen)
        self.credentials = Credentials.from_seed(config.seed)
        self.world = World(
            seed=config.seed,
            clusters=config.clusters,
            nodes_per_cluster=config.nodes_per_cluster,
            now_ns=self.clock.now_ns,
            transition_seconds=config.transition_seconds,
            project_id=self.credentials.project_id,
            region=self.credentials.project_name,
        )
        self.agency = Agency.for_seed(config.seed) if config.agency_clusters > 0 else None
        self.agency_world = (
            World(
                seed=config.seed + 7919,
                clusters=config.agency_clusters,
                nodes_per_cluster=min(config.nodes_per_cluster, 3),
                now_ns=self.clock.now_ns,
                transition_seconds=config.transition_seconds,
                project_id=self.agency.project_id,
                region=self.agency.project_name,
            )
            if self.agency is not None
            else None
        )
        self.faults = Faults(
            seed=config.seed, rate=config.fault_rate, hang_seconds=config.hang_seconds
        )
        self.app = SimulatorApp(
            world=self.world,
            clock=self.clock,
            faults=self.faults,
            credentials=self.credentials,
            latency_ms=config.latency_ms,
            max_skew=timedelta(seconds=config.max_skew_seconds),
            kube=KubeSim(
                self.world, KubeSizes(config.kube_jobs, config.kube_cronjobs, config.kube_quotas)
            ),
            temporary_seconds=config.temporary_seconds,
            agency=self.agency,
            agency_world=self.agency_world,
        )
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the simulator is not serving")
        return f"http://{self.config.host}:{self.port}"

    @property
    def settings(self) -> dict[str, str]:
        """The exporter's environment settings that point it at this simulator (secrets included:
        the credentials are fake, and printing them is the point). The project is given by ID: its
        name (``credentials.project_name``) may replace it, not join it."""
        c = self.credentials
        return {
            "CCE_EXPORTER_ENDPOINT": self.base_url,
            "CCE_EXPORTER_IAM_ENDPOINT": self.base_url,
            "CCE_EXPORTER_ADDON_ENDPOINT": self.base_url,
            # The clusters' Kubernetes API (127.0.0.1 takes no {cluster_id}. host prefix).
            "CCE_EXPORTER_KUBERNETES_ENDPOINT": self.base_url + "/kubernetes/{cluster_id}",
            "CCE_EXPORTER_PROJECT_ID": c.project_id,
            "CCE_EXPORTER_AUTH_METHOD": "aksk",
            "CCE_EXPORTER_AK": c.ak,
            "CCE_EXPORTER_SK": c.sk,
            "CCE_EXPORTER_USERNAME": c.username,
            "CCE_EXPORTER_PASSWORD": c.password,
            "CCE_EXPORTER_DOMAIN": c.domain,
        }

    def state(self) -> dict[str, Any]:
        """The control API's state summary."""
        return self.app.state()

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward (what ``POST /_sim/clock/advance`` does)."""
        self.clock.advance(seconds)
        self.world.invalidate()


class _Server(uvicorn.Server):
    """uvicorn's server without its signal capture: the caller owns signal handling."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve(sim: Simulator) -> AsyncIterator[Simulator]:
    """Serve ``sim`` on its configured host and port (0 = a free one) in the current loop."""
    config = uvicorn.Config(
        sim.app,
        host=sim.config.host,
        port=sim.config.port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    # Bound here rather than by uvicorn, with the protocol recorded as TCP so that asyncio sets
    # TCP_NODELAY on each connection: otherwise every small answer waits for the client's
    # delayed acknowledgement (Nagle's algorithm).
    sock = with_tcp_proto(socket.create_server((sim.config.host, sim.config.port)))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_SECONDS
        # uvicorn offers no startup event; its ``started`` flag is the documented signal.
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the simulator's server stopped during start-up")
            if loop.time() > deadline:
                raise RuntimeError("the simulator's server did not start in time")
            await asyncio.sleep(0.01)
        sim.port = sock.getsockname()[1]
        yield sim
    finally:
        sim.app.stop_hanging()
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def running_simulator(
    config: SimulatorConfig | None = None, **overrides: Any
) -> AsyncIterator[Simulator]:
    """Build a simulator from ``config`` (fields overridden by keyword) and serve it until the
    block ends: ``running_simulator(clusters=5, seed=7)`` works too."""
    config = dataclasses.replace(config or SimulatorConfig(), **overrides)
    async with serve(Simulator(config)) as sim:
        yield sim
