"""Hibernation runs on its own timer: it acts at the scheduled transition, not at the next cluster
collection, and keeps acting while a collection hangs."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from exporter.cce.models import Cluster
from exporter.hibernation.controller import (
    ControllerTarget,
    HibernationController,
    MemoryStateStore,
)
from exporter.hibernation.policy import parse_policy_file
from exporter.simulator import Simulator
from tests.test_e2e_exporter import control, running_exporter, sim_env, until
from tests.test_hibernation_controller import START, environment

log = logging.getLogger(__name__)

NIGHTLY = """
policies:
  - name: nightly
    clusters: {names: ["dev-*"]}
    schedules: [{hibernate: "30 2 * * *"}]
"""


async def test_the_timer_acts_at_the_transition_without_any_collection() -> None:
    async with environment(["dev-a", "dev-b"], NIGHTLY) as env:
        transition = START.replace(hour=2, minute=30).timestamp()
        env.at(START.replace(hour=2, minute=20))  # the timer's waits of 30 s, 20 of them
        parked = asyncio.Event()

        async def sleep(seconds: float) -> None:
            # A frozen clock moved only by the controller's own waits, up to the transition;
            # past it nothing moves (so the call's time is exactly when the timer acted).
            now = env.sim.clock.now()
            if now + seconds <= transition:
                env.sim.advance(seconds)
                await asyncio.sleep(0)
            else:
                await parked.wait()

        target = ControllerTarget("sim", env.api, env.sim.credentials.project_id)
        ctl = HibernationController(
            env.policies, [target], store=env.store, clock=env.sim.clock.now, sleep=sleep
        )
        assert await ctl.tick() == []  # sees the clusters once; nothing is due at 02:20
        assert ctl.next_due(env.sim.clock.now()) == transition
        ctl.start_timer()
        try:
            # No tick and no collection from here on: only the timer.
            await until(lambda: len(env.api.calls) >= 2, "both clusters hibernated")
        finally:
            await ctl.close()
        first = env.api.calls[:2]
        assert {(a, n) for _, a, n in first} == {("hibernate", "dev-a"), ("hibernate", "dev-b")}
        assert all(at == transition for at, _, _ in first), first


@dataclass
class Calls:
    """The exporter's client, with the hibernate calls written down on the controller's clock."""

    client: object
    clock: object
    calls: list[tuple[float, str]] = field(default_factory=list)

    async def list_clusters(self) -> list[Cluster]:
        return await self.client.list_clusters()  # type: ignore[attr-defined,no-any-return]

    async def get_cluster(self, cluster_id: str) -> Cluster:
        return await self.client.get_cluster(cluster_id)  # type: ignore[attr-defined,no-any-return]

    async def hibernate(self, cluster_id: str) -> str | None:
        self.calls.append((self.clock(), cluster_id))  # type: ignore[operator]
        return await self.client.hibernate(cluster_id)  # type: ignore[attr-defined,no-any-return]

    async def awake(self, cluster_id: str) -> str | None:
        return await self.client.awake(cluster_id)  # type: ignore[attr-defined,no-any-return]


@pytest.mark.simulator(clusters=0, nodes_per_cluster=0, seed=5)
async def test_a_transition_is_acted_on_while_the_cluster_collection_hangs(
    simulator: Simulator,
) -> None:
    simulator.world.add_cluster(name="dev-hang", phase="Available", flavor="cce.s1.small")
    # The controller's clock is real time shifted: a minute before the daily firing of the
    # policy below while the exporter starts, then a quarter of a second before it when the
    # timer starts.
    real = time.time()
    boundary = math.floor(real / 60) * 60 + 120
    offset = boundary - 60.0 - real
    transition = float(boundary)
    at = datetime.fromtimestamp(boundary, UTC)

    def clock() -> float:
        return time.time() + offset

    policies = parse_policy_file(
        'policies:\n  - name: daily\n    clusters: {names: ["dev-*"]}\n'
        f'    schedules: [{{hibernate: "{at.minute} {at.hour} * * *"}}]\n'
    )
    env = sim_env(simulator, CCE_EXPORTER_TIMEOUT="30s", CCE_EXPORTER_REQUEST_DEADLINE="60s")
    async with running_exporter(env) as exporter:
        target = exporter.service.targets[0]
        api = Calls(target.client, clock)
        ctl = HibernationController(
            policies,
            [ControllerTarget("default", api, target.collector.project_id)],  # type: ignore[arg-type]
            store=MemoryStateStore(),
            clock=clock,
        )
        exporter.service.after_collect.append(ctl.on_collect)
        assert await exporter.collect("clusters")
        assert ctl.clusters and api.calls == []
        # From now on every cluster listing hangs (the answer never comes within the test).
        await control(
            simulator,
            "POST",
            "/_sim/faults",
            {"kind": "hang", "rate": 1.0, "path": "/clusters$", "hang_seconds": 120},
        )
        hanging = asyncio.ensure_future(exporter.collect("clusters"))
        offset = boundary - 0.25 - time.time()
        ctl.start_timer()
        try:
            await until(lambda: api.calls, "the scheduled hibernate call", deadline=30.0)
            assert not hanging.done(), "the cluster collection was expected to hang"
        finally:
            await ctl.close()
            hanging.cancel()
            await asyncio.gather(hanging, return_exceptions=True)
            simulator.app.stop_hanging()
        at, _ = api.calls[0]
        latency = at - transition
        log.warning("time from the scheduled transition to the API call: %.3f s", latency)
        assert latency >= 0
        assert datetime.fromtimestamp(at, UTC) >= datetime.fromtimestamp(transition, UTC)
