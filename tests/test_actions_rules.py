"""The action rules that need no simulator: an action a shutdown cut short (its ``in_flight``
record left behind) is resolved after the restart from the cluster's phase, with the reason and
source recorded; a record that cannot be resolved yet waits; a cancel frees the cluster.

The API is a fake that answers from a script of phases, on a clock the controller's own waits
move forward.
"""

from __future__ import annotations

import asyncio
from typing import Any

from exporter.cce.errors import CCEError
from exporter.cce.models import Cluster
from exporter.hibernation.actions import Outcome
from exporter.hibernation.controller import (
    ControllerTarget,
    HibernationController,
    MemoryStateStore,
)
from exporter.hibernation.policy import parse_policy_file

#: A policy that selects none of the clusters here: a tick does nothing but resolve records.
NONE_SELECTED = """
policies:
  - name: other
    clusters: {names: ["other-*"]}
    awake: ["Mon-Fri 08:00-20:00"]
controller:
  poll_seconds: 15
  retry_backoff_seconds: 60
  action_timeout_seconds: 900
  max_attempts: 3
"""
NOW = 1_800_000_000.0


def cluster(cid: str, phase: str | None) -> Cluster:
    status = {} if phase is None else {"phase": phase}
    return Cluster.model_validate(
        {"metadata": {"uid": cid, "name": f"name-{cid}"}, "status": status}
    )


class FakeAPI:
    """Clusters by ID; each read answers the next scripted phase (the last one stays)."""

    def __init__(self, phases: dict[str, list[str | None]]) -> None:
        self.phases = phases
        self.reads: list[str] = []
        self.calls: list[tuple[str, str]] = []
        self.list_error: CCEError | None = None
        self.read_error: CCEError | None = None
        self.hold: asyncio.Event | None = None  # reads wait for it when set
        self.entered = asyncio.Event()
        self.call_hold: asyncio.Event | None = None  # calls wait for it when set
        self.called = asyncio.Event()

    async def list_clusters(self) -> list[Cluster]:
        if self.list_error is not None:
            raise self.list_error
        return [cluster(cid, script[0]) for cid, script in self.phases.items()]

    async def get_cluster(self, cluster_id: str) -> Cluster:
        self.reads.append(cluster_id)
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.read_error is not None:
            raise self.read_error
        script = self.phases[cluster_id]
        phase = script.pop(0) if len(script) > 1 else script[0]
        return cluster(cluster_id, phase)

    async def hibernate(self, cluster_id: str) -> str | None:
        self.calls.append(("hibernate", cluster_id))
        self.called.set()
        if self.call_hold is not None:
            await self.call_hold.wait()
        return None

    async def awake(self, cluster_id: str) -> str | None:
        self.calls.append(("awake", cluster_id))
        return None


def interrupted(action: str = "hibernate", started: float = NOW, **more: Any) -> dict[str, Any]:
    record = {"action": action, "started": started, "attempt": 1, **more}
    return {"in_flight": {"t/c1": record}}


def controller(api: FakeAPI, store: MemoryStateStore) -> tuple[HibernationController, list[float]]:
    clock = [NOW]

    async def sleep(seconds: float) -> None:
        clock[0] += seconds
        await asyncio.sleep(0)

    ctl = HibernationController(
        parse_policy_file(NONE_SELECTED),
        [ControllerTarget("t", api, "p")],
        store=store,
        clock=lambda: clock[0],
        sleep=sleep,
    )
    return ctl, clock


def last(store: MemoryStateStore) -> dict[str, Any]:
    entry: dict[str, Any] = store.value["history"]["t/c1"][-1]
    return {k: entry[k] for k in ("action", "result", "reason", "source")}


def counted(ctl: HibernationController) -> dict[tuple[str, str], float]:
    return {(action, result): n for (_, action, result), n in ctl.actions.items()}


async def resolved(phases: list[str | None], **record: Any) -> tuple[dict[str, Any], Any]:
    api = FakeAPI({"c1": phases})
    store = MemoryStateStore(interrupted(**record))
    ctl, _ = controller(api, store)
    await ctl.tick()
    await ctl.wait_idle()
    assert store.value["in_flight"] == {}
    assert api.calls == []  # never called again
    result = last(store), counted(ctl)
    await ctl.close()
    return result


async def test_an_interrupted_action_found_done_is_a_success() -> None:
    entry, counts = await resolved(["Hibernation"])
    assert entry == {
        "action": "hibernate",
        "result": "success",
        "reason": "interrupted by a shutdown; Hibernation after the restart",
        "source": "restart",
    }
    assert counts == {("hibernate", "success"): 1}
    entry, _ = await resolved(["Available"], action="awake")
    assert (entry["result"], entry["reason"]) == (
        "success",
        "interrupted by a shutdown; Available after the restart",
    )


async def test_an_interrupted_action_still_in_transit_is_followed_to_the_end() -> None:
    entry, counts = await resolved(["Hibernating", "Hibernating", "Hibernation"])
    assert (entry["result"], entry["reason"]) == (
        "success",
        "interrupted by a shutdown; followed to the end",
    )
    assert counts == {("hibernate", "success"): 1}


async def test_an_interrupted_action_is_followed_until_its_own_deadline() -> None:
    # Started 900 s (the action timeout) before the restart: the first poll is past its deadline.
    entry, _ = await resolved(["Awaking"], action="awake", started=NOW - 900)
    assert (entry["result"], entry["reason"]) == (
        "failed",
        "interrupted by a shutdown; then not Available 900s after the call (last phase Awaking)",
    )
    # Started just now: followed through its polls.
    entry, _ = await resolved(["Awaking", "Awaking", "Available"], action="awake", started=NOW)
    assert entry["result"] == "success"


async def test_an_interrupted_action_that_went_back_is_a_failure() -> None:
    # Seen in transit when read again after the restart, then in transit, then back.
    entry, counts = await resolved(["Hibernating", "Hibernating", "Available"])
    assert (entry["result"], entry["reason"]) == (
        "failed",
        "interrupted by a shutdown; then the cluster went back to Available",
    )
    assert counts == {("hibernate", "failed"): 1}


async def test_an_interrupted_action_that_did_not_happen_is_a_failure() -> None:
    entry, _ = await resolved(["Available"])
    assert (entry["result"], entry["reason"]) == (
        "failed",
        "interrupted by a shutdown; the cluster is Available",
    )
    entry, _ = await resolved([None])
    assert entry["reason"] == "interrupted by a shutdown; the cluster is in no phase"
    entry, _ = await resolved([""], action="awake")
    assert entry["reason"] == "interrupted by a shutdown; the cluster is in no phase"


async def test_an_interrupted_action_on_a_cluster_gone_is_a_failure() -> None:
    api = FakeAPI({"c2": ["Available"]})
    store = MemoryStateStore(interrupted())
    ctl, _ = controller(api, store)
    assert await ctl.tick() == []
    await ctl.wait_idle()
    assert last(store) == {
        "action": "hibernate",
        "result": "failed",
        "reason": "interrupted by a shutdown; the cluster is gone",
        "source": "restart",
    }
    assert store.value["in_flight"] == {}
    assert api.reads == []
    await ctl.close()


async def test_an_interrupted_action_whose_cluster_cannot_be_read_waits_for_a_later_tick() -> None:
    api = FakeAPI({"c1": ["Hibernation"]})
    api.read_error = CCEError("connection refused")
    store = MemoryStateStore(interrupted())
    ctl, _ = controller(api, store)
    await ctl.tick()
    outcome = await ctl.runner.task_for(("t", "c1"))
    assert outcome == Outcome("skipped", "c1", "hibernate", reason="connection refused")
    await ctl.wait_idle()
    assert "t/c1" in ctl.state["in_flight"]
    assert ctl.state["history"] == {}
    assert "t/c1" not in ctl.runner.active
    # The next tick asks again, and resolves it.
    api.read_error = None
    await ctl.tick()
    await ctl.wait_idle()
    assert last(store)["reason"] == "interrupted by a shutdown; Hibernation after the restart"
    assert store.value["in_flight"] == {}
    assert api.reads == ["c1", "c1"]
    await ctl.close()


async def test_an_interrupted_action_of_a_target_not_listed_yet_waits() -> None:
    api = FakeAPI({"c1": ["Hibernation"]})
    api.list_error = CCEError("listing failed")
    store = MemoryStateStore(interrupted())
    other = {"action": "awake", "started": NOW, "attempt": 1}
    store.value["in_flight"]["gone-target/c9"] = other
    ctl, _ = controller(api, store)
    await ctl.tick()
    await ctl.wait_idle()
    assert api.reads == []
    assert set(ctl.state["in_flight"]) == {"t/c1", "gone-target/c9"}
    api.list_error = None
    await ctl.tick()
    await ctl.wait_idle()
    assert last(store)["result"] == "success"
    # A target that is not configured any more: its record is left alone.
    assert ctl.state["in_flight"] == {"gone-target/c9": other}
    await ctl.close()


async def test_a_running_action_is_not_taken_for_an_interrupted_one() -> None:
    api = FakeAPI({"c1": ["Available", "Available", "Hibernating", "Hibernation"]})
    store = MemoryStateStore()
    ctl, _ = controller(api, store)
    await ctl.tick()
    api.call_hold = asyncio.Event()
    outcome = await ctl.request("c1", "hibernate", force=True)
    assert outcome.result == "started"
    await asyncio.wait_for(api.called.wait(), 30)  # inside the call, its record written
    assert set(store.value["in_flight"]) == {"t/c1"}
    await ctl.tick()
    api.call_hold.set()
    await ctl.wait_idle()
    assert store.value["history"]["t/c1"] == [
        {
            "at": NOW + 30,
            "action": "hibernate",
            "result": "success",
            "reason": "",
            "source": "hook",
        }
    ]
    assert api.calls == [("hibernate", "c1")]
    await ctl.close()


async def test_a_cancelled_resolution_frees_its_cluster() -> None:
    api = FakeAPI({"c1": ["Available"]})
    api.hold = asyncio.Event()
    store = MemoryStateStore(interrupted())
    ctl, _ = controller(api, store)
    await ctl.tick()
    await asyncio.wait_for(api.entered.wait(), 30)
    assert "t/c1" in ctl.runner.active
    task = ctl.runner.task_for(("t", "c1"))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert "t/c1" not in ctl.runner.active
    assert "t/c1" in store.value["in_flight"]  # resolved at a later start
    await ctl.close()


async def test_a_resolution_cancelled_while_following_frees_its_cluster() -> None:
    api = FakeAPI({"c1": ["Hibernating"]})
    store = MemoryStateStore(interrupted())
    ctl, _ = controller(api, store)
    parked = asyncio.Event()

    async def stuck(seconds: float) -> None:
        await parked.wait()

    ctl.sleep = stuck
    await ctl.tick()
    task = ctl.runner.task_for(("t", "c1"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert api.reads == ["c1"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert "t/c1" not in ctl.runner.active
    await ctl.close()
