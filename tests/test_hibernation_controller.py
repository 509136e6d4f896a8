"""The hibernation controller against the simulator, on a frozen clock the tests move forward."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from exporter.cce.auth import AkSkAuth
from exporter.cce.client import CCEClient
from exporter.cce.models import Cluster
from exporter.hibernation.controller import (
    ControllerTarget,
    HibernationController,
    MemoryStateStore,
)
from exporter.hibernation.policy import PolicyFile, parse_policy_file
from exporter.hibernation.schedule import transitions
from exporter.simulator import Simulator, SimulatorConfig, running_simulator

START = datetime(2027, 3, 1, tzinfo=UTC)  # a Monday

POLICIES = """
policies:
  - name: berlin
    clusters: {names: ["dev-*"], exclude: ["dev-critical"]}
    timezone: Europe/Berlin
    awake: ["Mon-Fri 08:00-20:00"]
    holidays: {dates: ["2027-03-17"]}
  - name: newyork
    clusters: {names: ["ny-*"]}
    timezone: America/New_York
    awake: ["Mon-Fri 09:00-17:00", "Sat 22:00-02:30"]
pricing:
  currency: EUR
  control_plane_per_hour: {cce.s1.small: 0.5}
controller:
  poll_seconds: 15
  retry_backoff_seconds: 60
  action_timeout_seconds: 900
  max_attempts: 3
"""


async def _no_wait(_: float) -> None:
    return None


@dataclass
class Recorder:
    """The real client, with every hibernate/awake call written down (time, action, name)."""

    client: CCEClient
    sim: Simulator
    calls: list[tuple[float, str, str]] = field(default_factory=list)
    fail_wakeups: set[str] = field(default_factory=set)

    async def list_clusters(self) -> list[Cluster]:
        return await self.client.list_clusters()

    async def get_cluster(self, cluster_id: str) -> Cluster:
        return await self.client.get_cluster(cluster_id)

    def _name(self, cluster_id: str) -> str:
        return self.sim.world.clusters[cluster_id].name

    async def hibernate(self, cluster_id: str) -> str | None:
        self.calls.append((self.sim.clock.now(), "hibernate", self._name(cluster_id)))
        return await self.client.hibernate(cluster_id)

    async def awake(self, cluster_id: str) -> str | None:
        self.calls.append((self.sim.clock.now(), "awake", self._name(cluster_id)))
        if cluster_id in self.fail_wakeups:
            self.sim.world.fail_next_wakeup(cluster_id)
        return await self.client.awake(cluster_id)


@dataclass
class Env:
    sim: Simulator
    api: Recorder
    policies: PolicyFile
    store: MemoryStateStore
    ids: dict[str, str]

    def controller(self, **kwargs: Any) -> HibernationController:
        async def sleep(seconds: float) -> None:
            self.sim.advance(seconds)
            await asyncio.sleep(0)

        target = ControllerTarget("sim", self.api, self.sim.credentials.project_id)
        return HibernationController(
            self.policies,
            [target],
            store=self.store,
            clock=self.sim.clock.now,
            sleep=sleep,
            **kwargs,
        )

    def at(self, when: datetime) -> None:
        now = self.sim.clock.now()
        assert when.timestamp() >= now, "the clock only moves forward"
        self.sim.advance(when.timestamp() - now)

    def phase(self, name: str) -> str | None:
        return self.sim.world.cluster(self.ids[name]).segment(self.sim.clock.now_ns()).phase


@asynccontextmanager
async def environment(
    names: list[str], policies: str = POLICIES, *, serve: bool = False
) -> AsyncIterator[Env]:
    """The simulator with ``names`` (Available) and the real client signed for it. The client
    talks to the simulator's application in-process (the same requests and answers, faults
    included, without a server to start and stop); ``serve`` puts a real HTTP server between
    them, for the tests where the connection itself matters."""
    config = SimulatorConfig(
        clusters=0,
        nodes_per_cluster=0,
        seed=3,
        clock_start=START.timestamp(),
        clock_frozen=True,
        transition_seconds=60,
    )
    async with contextlib.AsyncExitStack() as stack:
        if serve:
            sim = await stack.enter_async_context(running_simulator(config))
            endpoint, transport = sim.base_url, None
        else:
            sim = Simulator(config)
            endpoint, transport = "http://127.0.0.1", httpx.ASGITransport(app=sim.app)
        ids = {
            n: sim.world.add_cluster(name=n, phase="Available", flavor="cce.s1.small").uid
            for n in names
        }
        c = sim.credentials
        client = CCEClient(
            endpoint,
            AkSkAuth(c.ak, c.sk, project_id=c.project_id),
            c.project_id,
            sleep=_no_wait,
            transport=transport,
        )
        async with client:
            yield Env(
                sim, Recorder(client, sim), parse_policy_file(policies), MemoryStateStore(), ids
            )


async def run_until(env: Env, ctl: HibernationController, end: datetime, step: float) -> None:
    """Tick every ``step`` seconds of simulated time (on a fixed grid) until ``end``."""
    grid = env.sim.clock.now()
    while grid <= end.timestamp():
        if env.sim.clock.now() < grid:
            env.sim.advance(grid - env.sim.clock.now())
        await ctl.tick()
        await ctl.wait_idle()
        grid += step


def sample(ctl: HibernationController, name: str, **labels: str) -> float | None:
    return ctl.registry.get_sample_value(name, labels)


@pytest.mark.slow
async def test_a_simulated_month() -> None:
    names = ["dev-a", "dev-b", "dev-critical", "ny-a", "prod-x"]
    async with environment(names) as env:
        ctl = env.controller()
        end = START + timedelta(days=31)
        manual_wake = datetime(2027, 3, 10, 2, tzinfo=UTC)  # Wednesday night, dev-b asleep
        await run_until(env, ctl, manual_wake, 900)
        assert env.phase("dev-b") == "Hibernation"
        await env.api.client.awake(env.ids["dev-b"])  # a person wakes it by hand
        env.at(manual_wake + timedelta(hours=2))
        await run_until(env, ctl, end, 900)
        # Left alone until the next transition (08:00 Berlin, when it is already awake).
        # (Checked from the calls below: no hibernate of dev-b between 02:00 and 19:00 UTC.)

        by_cluster: dict[str, list[tuple[float, str]]] = {}
        for at, action, name in env.api.calls:
            by_cluster.setdefault(name, []).append((at, action))
        assert set(by_cluster) == {"dev-a", "dev-b", "ny-a"}  # none on excluded or ungoverned

        policies = {p.name: p for p in env.policies.policies}
        for name, policy in (("dev-a", "berlin"), ("dev-b", "berlin"), ("ny-a", "newyork")):
            expected = transitions(policies[policy], START, end)
            # The first wake-up finds the cluster already awake (it starts Available).
            assert expected[0].action == "awake"
            expected = expected[1:]
            if name == "dev-b":
                expected = [
                    t
                    for t in expected
                    if not (t.action == "awake" and t.at == datetime(2027, 3, 10, 7, tzinfo=UTC))
                ]
            calls = by_cluster[name]
            assert [a for _, a in calls] == [t.action for t in expected], name
            for (at, _), t in zip(calls, expected, strict=True):
                # Exactly once, on the first tick at or after the transition.
                assert t.at.timestamp() <= at < t.at.timestamp() + 900, (name, t)
            skipped_awake = sample(
                ctl,
                "cce_hibernation_actions_total",
                project_id=env.sim.credentials.project_id,
                cluster_id=env.ids[name],
                cluster=name,
                action="awake",
                result="skipped",
            )
            assert skipped_awake == (2 if name == "dev-b" else 1)

        dev_a = [datetime.fromtimestamp(at, UTC) for at, _ in by_cluster["dev-a"]]
        # Hand-computed instants: Berlin moved to CEST on Sunday 28 March, so Monday's 08:00 is
        # 06:00Z (07:00Z before); the holiday on Wednesday 17 March has no transition at all.
        assert datetime(2027, 3, 29, 6, tzinfo=UTC) in dev_a
        assert datetime(2027, 3, 26, 7, tzinfo=UTC) in dev_a
        assert not [d for d in dev_a if d.date() == datetime(2027, 3, 17).date()]
        ny = {datetime.fromtimestamp(at, UTC): a for at, a in by_cluster["ny-a"]}
        # Saturday 13 March 22:00 EST = 03:00Z on the 14th; the window ends at 02:30, which that
        # night does not exist (DST starts): 03:00 EDT = 07:00Z.
        assert ny[datetime(2027, 3, 14, 3, tzinfo=UTC)] == "awake"
        assert ny[datetime(2027, 3, 14, 7, tzinfo=UTC)] == "hibernate"
        assert ny[datetime(2027, 3, 15, 13, tzinfo=UTC)] == "awake"  # 09:00 EDT

        labels = {
            "project_id": env.sim.credentials.project_id,
            "cluster_id": env.ids["dev-a"],
            "cluster": "dev-a",
        }
        hibernated = sample(ctl, "cce_cluster_hibernated_seconds_total", **labels)
        assert hibernated is not None and hibernated > 15 * 86400
        savings = sample(ctl, "cce_hibernation_estimated_savings_total", **labels, currency="EUR")
        assert savings == pytest.approx(hibernated / 3600 * 0.5)
        await ctl.close()


async def test_catch_up_once_after_restart_and_not_beyond_the_window() -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 18, tzinfo=UTC))
        first = env.controller()
        await first.tick()
        await first.close()  # stopped at 19:00 Berlin; the 20:00 (19:00Z) transition is missed
        env.at(datetime(2027, 3, 1, 19, 40, tzinfo=UTC))
        second = env.controller()
        await second.tick()
        await second.wait_idle()
        assert [a for _, a, _ in env.api.calls] == ["hibernate"]
        assert env.phase("dev-a") == "Hibernation"
        await second.tick()
        await second.wait_idle()
        await second.close()
        key = f"sim/{env.ids['dev-a']}"
        history = second.state["history"][key]
        assert [(h["action"], h["result"]) for h in history] == [("hibernate", "success")]
        third = env.controller()  # a restart does not repeat the action
        # Not even as a "skipped, already Hibernation": the transition was handled before the
        # restart, so the restarted controller decides nothing about it and records nothing.
        assert await third.tick() == []
        await third.wait_idle()
        assert len(env.api.calls) == 1
        assert third.state["history"][key] == history
        assert third.actions == {}  # nothing counted either (no skipped, no success)
        await third.close()

        # Down over the 08:00 (07:00Z) wake-up and back 2 hours later: beyond the 1 h window.
        env.at(datetime(2027, 3, 2, 9, tzinfo=UTC))
        fourth = env.controller()
        await fourth.tick()
        await fourth.wait_idle()
        assert len(env.api.calls) == 1
        assert env.phase("dev-a") == "Hibernation"
        await fourth.close()


async def test_transitional_and_wrong_phase_clusters_are_skipped() -> None:
    async with environment(["dev-a", "dev-b"]) as env:
        env.at(datetime(2027, 3, 1, 18, 55, tzinfo=UTC))
        env.sim.world.set_phase("cluster", env.ids["dev-a"], "Upgrading")
        ctl = env.controller()
        await ctl.tick()
        env.at(datetime(2027, 3, 1, 19, 0, 30, tzinfo=UTC))
        outcomes = await ctl.tick()
        await ctl.wait_idle()
        assert [a for _, a, n in env.api.calls] == ["hibernate"]  # dev-b only
        skipped = [o for o in outcomes if o.result == "skipped"]
        assert [o.cluster for o in skipped] == ["dev-a"]
        assert "Upgrading" in skipped[0].reason
        history = ctl.state["history"][f"sim/{env.ids['dev-a']}"]
        assert history[-1]["result"] == "skipped" and "Upgrading" in history[-1]["reason"]
        await ctl.close()


@pytest.mark.parametrize("kind", ["http_429", "http_502", "http_500"])
async def test_429_and_5xx_during_an_action_are_retried(kind: str) -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 18, 59, tzinfo=UTC))
        ctl = env.controller()
        await ctl.tick()
        env.sim.faults.add(kind, count=1, path="operation/hibernate")
        env.at(datetime(2027, 3, 1, 19, 0, 10, tzinfo=UTC))
        await ctl.tick()
        await ctl.wait_idle()
        assert env.sim.faults.injected[kind] == 1
        assert env.phase("dev-a") == "Hibernation"
        labels = {
            "project_id": env.sim.credentials.project_id,
            "cluster_id": env.ids["dev-a"],
            "cluster": "dev-a",
            "action": "hibernate",
        }
        assert sample(ctl, "cce_hibernation_actions_total", **labels, result="success") == 1
        assert sample(ctl, "cce_hibernation_actions_total", **labels, result="failed") is None
        # 429 is retried inside the client; a 5xx answer to a POST is retried by the controller,
        # after checking the phase again.
        assert len(env.api.calls) == (1 if kind == "http_429" else 2)
        await ctl.close()


async def test_wakeup_failure_gives_up_after_the_limit() -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 18, 59, tzinfo=UTC))
        ctl = env.controller()
        await ctl.tick()
        env.at(datetime(2027, 3, 1, 19, 1, tzinfo=UTC))
        await ctl.tick()
        await ctl.wait_idle()
        assert env.phase("dev-a") == "Hibernation"
        env.api.fail_wakeups.add(env.ids["dev-a"])
        env.at(datetime(2027, 3, 2, 7, 0, 5, tzinfo=UTC))  # 08:00 Berlin
        await ctl.tick()
        await ctl.wait_idle()
        awakes = [c for c in env.api.calls if c[1] == "awake"]
        assert len(awakes) == 3  # max_attempts
        labels = {
            "project_id": env.sim.credentials.project_id,
            "cluster_id": env.ids["dev-a"],
            "cluster": "dev-a",
            "action": "awake",
        }
        assert sample(ctl, "cce_hibernation_actions_total", **labels, result="failed") == 1
        last = ctl.state["history"][f"sim/{env.ids['dev-a']}"][-1]
        assert last["result"] == "failed"
        assert "gave up after 3 attempts" in last["reason"]
        assert "insufficient resources" in last["reason"]
        # Backoff between attempts: 60 s, then 120 s (plus the polling).
        assert awakes[1][0] - awakes[0][0] >= 60 and awakes[2][0] - awakes[1][0] >= 120
        await ctl.close()


async def test_overrides_and_skip() -> None:
    async with environment(["dev-a", "dev-b"]) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        ctl = env.controller()
        await ctl.tick()
        keep = datetime(2027, 3, 1, 21, tzinfo=UTC)
        assert ctl.set_override(env.ids["dev-a"], "awake", keep, "release night") is None
        assert ctl.set_override(env.ids["dev-b"], None, None, "skip") is None
        env.at(datetime(2027, 3, 1, 19, 0, 5, tzinfo=UTC))
        outcomes = await ctl.tick()
        await ctl.wait_idle()
        assert env.api.calls == []
        assert sorted(o.cluster for o in outcomes if o.result == "skipped") == ["dev-a", "dev-b"]
        assert f"sim/{env.ids['dev-b']}" not in ctl.state["overrides"]  # a skip is used once
        # The keep-awake override ends at 21:00Z; the policy then wants dev-a hibernated.
        env.at(datetime(2027, 3, 1, 21, 0, 5, tzinfo=UTC))
        await ctl.tick()
        await ctl.wait_idle()
        assert [(a, n) for _, a, n in env.api.calls] == [("hibernate", "dev-a")]
        assert ctl.state["overrides"] == {}
        await ctl.close()


async def test_dry_run_calls_nothing() -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 18, 59, tzinfo=UTC))
        ctl = env.controller(dry_run=True)
        await ctl.tick()
        env.at(datetime(2027, 3, 1, 19, 0, 5, tzinfo=UTC))
        outcomes = await ctl.tick()
        await ctl.wait_idle()
        assert [o.result for o in outcomes] == ["dry_run"]
        assert env.api.calls == []
        assert env.phase("dev-a") == "Available"
        info = sample(
            ctl,
            "cce_hibernation_policy_info",
            project_id=env.sim.credentials.project_id,
            cluster_id=env.ids["dev-a"],
            cluster="dev-a",
            policy="berlin",
            timezone="Europe/Berlin",
            dry_run="true",
        )
        assert info == 1
        await ctl.close()


async def test_conflicting_policies_leave_the_cluster_alone() -> None:
    # A second policy that also selects dev-a, inserted before 'pricing'.
    head, _, tail = POLICIES.partition("pricing:")
    doc = head + "  - name: also-dev\n    clusters: {names: ['dev-a']}\n    awake: ['Sat']\n"
    doc += "pricing:" + tail
    async with environment(["dev-a"], doc) as env:
        env.at(datetime(2027, 3, 1, 19, 0, 5, tzinfo=UTC))
        ctl = env.controller()
        await ctl.tick()
        await ctl.wait_idle()
        assert env.api.calls == []
        plan = ctl.plan(1)
        assert plan["clusters"] == []
        assert plan["conflicts"][0]["policies"] == ["berlin", "also-dev"]
        outcome = await ctl.request(env.ids["dev-a"], "hibernate")
        assert outcome.result == "skipped" and "'berlin' and 'also-dev'" in outcome.reason
        await ctl.close()
