"""The hibernation controller's rules in detail: what it records, counts and exposes for each
decision, how long it waits between attempts, and its overrides' edges."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.cce.errors import CCEError
from exporter.cce.models import Cluster
from exporter.hibernation.controller import (
    ControllerTarget,
    HibernationController,
    MemoryStateStore,
)
from exporter.hibernation.policy import parse_policy_file
from tests.test_hibernation_controller import POLICIES, Env, environment


def _labels(env: Env, name: str) -> dict[str, str]:
    return {
        "project_id": env.sim.credentials.project_id,
        "cluster_id": env.ids[name],
        "cluster": name,
    }


def exposition(ctl: HibernationController) -> dict[str, Any]:
    """Family -> (type, help, {(sample name, labels): value}) of the controller's registry."""
    out: dict[str, Any] = {}
    for fam in text_string_to_metric_families(generate_latest(ctl.registry).decode()):
        samples = {(s.name, frozenset(s.labels.items())): s.value for s in fam.samples}
        out[fam.name] = (fam.type, fam.documentation, samples)
    return out


async def test_the_hibernation_counters_after_a_night() -> None:
    async with environment(["dev-a", "prod-x"]) as env:
        env.at(datetime(2027, 3, 1, 18, 59, tzinfo=UTC))
        ctl = env.controller()
        await ctl.tick()
        env.at(datetime(2027, 3, 1, 19, 0, 5, tzinfo=UTC))  # 20:00 Berlin: hibernate
        await ctl.tick()
        await ctl.wait_idle()
        assert env.phase("dev-a") == "Hibernation"
        await ctl.tick()  # observed in Hibernation from here on
        for _ in range(2):
            env.sim.advance(1800)
            await ctl.tick()
        env.sim.advance(2 * 3600)  # a gap counts for one hour at most
        await ctl.tick()
        found = exposition(ctl)
        a = frozenset(_labels(env, "dev-a").items())
        hibernated = found["cce_cluster_hibernated_seconds"]
        assert hibernated[:2] == (
            "counter",
            "Time the exporter observed the cluster in phase Hibernation.",
        )
        assert list(hibernated[2]) == [("cce_cluster_hibernated_seconds_total", a)]
        seconds = hibernated[2][("cce_cluster_hibernated_seconds_total", a)]
        assert seconds == 2 * 3600
        savings = found["cce_hibernation_estimated_savings"]
        assert savings[:2] == (
            "counter",
            "Hibernated hours times the configured control-plane price per hour.",
        )
        assert savings[2] == {
            ("cce_hibernation_estimated_savings_total", a | {("currency", "EUR")}): pytest.approx(
                seconds / 3600 * 0.5
            )
        }
        actions = found["cce_hibernation_actions"]
        assert actions[:2] == ("counter", "Hibernation actions taken, by result.")
        assert actions[2] == {
            (
                "cce_hibernation_actions_total",
                a | {("action", "hibernate"), ("result", "success")},
            ): 1.0
        }
        await ctl.close()


async def test_without_pricing_there_is_no_savings_family() -> None:
    head, _, tail = POLICIES.partition("pricing:")
    doc = head + "controller:" + tail.partition("controller:")[2]
    async with environment(["dev-a"], doc) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        ctl = env.controller()
        await ctl.tick()
        assert "cce_hibernation_estimated_savings" not in exposition(ctl)
        assert "cce_cluster_hibernated_seconds" in exposition(ctl)
        await ctl.close()


async def test_a_skip_override_is_recorded_counted_and_answered() -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        ctl = env.controller()
        await ctl.tick()
        assert ctl.set_override(env.ids["dev-a"], None, None, "demo tonight") is None
        env.at(datetime(2027, 3, 1, 19, 0, 5, tzinfo=UTC))
        outcomes = await ctl.tick()
        reason = "skipped on request (skip override)"
        assert [o.as_dict() for o in outcomes] == [
            {
                "result": "skipped",
                "cluster_id": env.ids["dev-a"],
                "cluster": "dev-a",
                "action": "hibernate",
                "reason": reason,
            }
        ]
        entry = ctl.state["history"][f"sim/{env.ids['dev-a']}"][-1]
        assert {k: entry[k] for k in ("action", "result", "reason", "source")} == {
            "action": "hibernate",
            "result": "skipped",
            "reason": reason,
            "source": "policy",
        }
        assert ctl.actions == {(("sim", env.ids["dev-a"]), "hibernate", "skipped"): 1.0}
        await ctl.close()


async def test_a_cluster_in_no_known_phase_is_not_acted_on() -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        ctl = env.controller()
        await ctl.tick()
        phaseless = Cluster.model_validate(
            {"metadata": {"uid": env.ids["dev-a"], "name": "dev-a"}, "status": {}}
        )
        outcome = await ctl.request(env.ids["dev-a"], "hibernate", wait=True)
        assert outcome.result == "success"
        env.at(datetime(2027, 3, 1, 13, tzinfo=UTC))
        ctl.clusters[("sim", env.ids["dev-a"])] = phaseless
        started = ctl._start(("sim", env.ids["dev-a"]), "awake", source="hook", dry_run=False)
        assert (started.result, started.reason) == (
            "skipped",
            "the cluster is in an unknown phase; awake needs Hibernation",
        )
        await ctl.close()


async def test_overrides_at_their_edges() -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        ctl = env.controller()
        await ctl.tick()
        cid = env.ids["dev-a"]
        now = datetime.fromtimestamp(env.sim.clock.now(), UTC)
        assert ctl.set_override(cid, "awake", now, "x") == "'until' is in the past"
        assert ctl.clear_override("no-such-cluster") is False
        assert ctl.clear_override(cid) is False  # nothing to clear
        assert ctl.set_override(cid, "awake", now + timedelta(hours=1), "r" * 300) is None
        assert ctl.state["overrides"][f"sim/{cid}"]["reason"] == "r" * 200
        assert "cce_hibernation_override_until_timestamp_seconds" in str(
            generate_latest(ctl.registry)
        )
        saves = ctl.store.saves  # type: ignore[attr-defined]
        assert ctl.clear_override(cid) is True
        assert ctl.store.saves == saves + 1  # type: ignore[attr-defined]
        assert ctl.state["overrides"] == {}
        # The metric goes at once, not at the next tick.
        text = generate_latest(ctl.registry).decode()
        assert "cce_hibernation_override_until_timestamp_seconds{" not in text
        await ctl.close()


async def test_an_override_from_an_older_state_file_shows_an_empty_reason() -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        cid = env.ids["dev-a"]
        until = env.sim.clock.now() + 3600
        env.store.value = {
            "overrides": {
                f"sim/{cid}": {"kind": "keep", "state": "awake", "until": until, "created": 0}
            }
        }
        ctl = env.controller()
        await ctl.tick()
        assert ctl.plan(1)["clusters"][0]["override"] == {
            "kind": "keep_awake",
            "until": datetime.fromtimestamp(until, UTC).isoformat().replace("+00:00", "Z"),
            "reason": "",
        }
        await ctl.close()


async def test_the_wait_between_attempts_doubles_and_honours_retry_after() -> None:
    async with environment(["dev-a"]) as env:
        waits: list[float] = []
        env.at(datetime(2027, 3, 1, 18, 59, tzinfo=UTC))
        ctl = env.controller()

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            env.sim.advance(seconds)
            await asyncio.sleep(0)

        ctl.sleep = sleep
        await ctl.tick()
        # Every hibernate call answers 500 (not retried inside the client: not idempotent).
        env.sim.faults.add("http_500", count=3, path="operation/hibernate")
        env.at(datetime(2027, 3, 1, 19, 0, 5, tzinfo=UTC))
        await ctl.tick()
        await ctl.wait_idle()
        assert waits == [60, 120]  # retry_backoff_seconds, doubled; no polling after a refusal
        assert ctl.state["history"][f"sim/{env.ids['dev-a']}"][-1]["result"] == "failed"
        # A 429 whose Retry-After is longer than the backoff: the controller waits that long.
        waits.clear()
        env.sim.faults.add("http_429", count=1, path="operation/awake", retry_after=500)
        outcome = await ctl.request(env.ids["dev-a"], "awake", wait=True)
        assert outcome.result == "skipped"  # still Available: the hibernation failed
        env.sim.world.set_phase("cluster", env.ids["dev-a"], "Hibernation")
        outcome = await ctl.request(env.ids["dev-a"], "awake", wait=True)
        assert outcome.result == "success"
        assert waits[0] == 500
        await ctl.close()


class _Listing:
    def __init__(self, error: CCEError) -> None:
        self.error = error

    async def list_clusters(self) -> list[Cluster]:
        raise self.error

    async def get_cluster(self, cluster_id: str) -> Cluster:
        raise self.error

    async def hibernate(self, cluster_id: str) -> str | None:
        raise AssertionError("never called")

    async def awake(self, cluster_id: str) -> str | None:
        raise AssertionError("never called")


@pytest.mark.parametrize(
    ("error", "reason"), [(CCEError("boom"), "boom"), (CCEError(""), "CCEError")]
)
async def test_a_failed_listing_is_reported_by_target(error: CCEError, reason: str) -> None:
    ctl = HibernationController(
        parse_policy_file(POLICIES),
        [ControllerTarget("t", _Listing(error))],
        store=MemoryStateStore(),
    )
    assert await ctl.refresh() == {"t": reason}
    await ctl.close()
