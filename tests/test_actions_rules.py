"""The action rules that need no simulator: an action a shutdown cut short (its ``in_flight``
record left behind) is resolved after the restart from the cluster's phase, with the reason and
source recorded; a record that cannot be resolved yet waits; a cancel frees the cluster. And a
request's options: its override (``until``, ``reason``), source, dry run, progress, ``force``.

The API is a fake that answers from a script of phases, on a clock the controller's own waits
move forward.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.cce.errors import CCEError, RateLimited
from exporter.cce.models import Cluster
from exporter.hibernation.actions import Outcome
from exporter.hibernation.controller import (
    ControllerTarget,
    HibernationController,
    MemoryStateStore,
    StateNotSaved,
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
    """A cluster named after its ID (``dev-1`` is named ``dev-1``; ``dev-1=a`` is ``dev-1``
    with the ID ``a``); ``nameless-*`` has no name."""
    status = {} if phase is None else {"phase": phase}
    name, _, uid = cid.partition("=")
    metadata = (
        {"uid": uid or cid} if cid.startswith("nameless") else {"uid": uid or cid, "name": name}
    )
    return Cluster.model_validate({"metadata": metadata, "status": status})


class FakeAPI:
    """Clusters by ID; each read answers the next scripted phase (the last one stays)."""

    def __init__(self, phases: dict[str, list[str | None]]) -> None:
        self.phases = phases
        self.reads: list[str] = []
        self.calls: list[tuple[str, str]] = []
        self.list_error: CCEError | None = None
        self.read_error: CCEError | None = None
        self.lists = 0
        self.hold: asyncio.Event | None = None  # reads wait for it when set
        self.entered = asyncio.Event()
        self.call_hold: asyncio.Event | None = None  # calls wait for it when set
        self.called = asyncio.Event()

    async def list_clusters(self) -> list[Cluster]:
        self.lists += 1
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
        k = next(k for k in self.phases if cluster_id in (k, k.partition("=")[2]))
        script = self.phases[k]
        phase = script.pop(0) if len(script) > 1 else script[0]
        return cluster(k, phase)

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


def controller(
    api: FakeAPI, store: MemoryStateStore, policies: str = NONE_SELECTED, **kwargs: Any
) -> tuple[HibernationController, list[float]]:
    clock = [NOW]

    async def sleep(seconds: float) -> None:
        clock[0] += seconds
        await asyncio.sleep(0)

    ctl = HibernationController(
        parse_policy_file(policies),
        [ControllerTarget("t", api, "p")],
        store=store,
        clock=lambda: clock[0],
        sleep=sleep,
        **kwargs,
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
    other = {"action": "awake", "started": NOW, "attempt": 1}
    # The waiting record first: it does not hold up the records after it.
    store = MemoryStateStore({"in_flight": {"gone-target/c9": other, **interrupted()["in_flight"]}})
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


# --- requests ---------------------------------------------------------------------------------

#: dev-* governed (a schedule that never fires near NOW), dry-* governed in dry run, both-*
#: selected by two policies, anything else by none.
GOVERNING = """
policies:
  - name: dev
    clusters: {names: ["dev-*", "both-*"]}
    schedules: [{hibernate: "0 0 1 7 *"}]
  - name: dry
    clusters: {names: ["dry-*"]}
    schedules: [{hibernate: "0 0 1 7 *"}]
    dry_run: true
  - name: also
    clusters: {names: ["both-*"]}
    schedules: [{hibernate: "0 0 1 7 *"}]
controller:
  poll_seconds: 15
  retry_backoff_seconds: 60
  action_timeout_seconds: 900
  max_attempts: 3
"""
UNTIL = datetime.fromtimestamp(NOW + 3600, UTC)


def awake_clusters(*ids: str) -> FakeAPI:
    """Clusters that go from Available through Hibernating to Hibernation when hibernated."""
    return FakeAPI({cid: ["Available", "Available", "Hibernating", "Hibernation"] for cid in ids})


async def governing(
    api: FakeAPI, store: MemoryStateStore | None = None, **kwargs: Any
) -> HibernationController:
    ctl, _ = controller(api, store or MemoryStateStore(), GOVERNING, **kwargs)
    await ctl.tick()
    return ctl


def history(ctl: HibernationController, cid: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = ctl.state["history"][f"t/{cid}"]
    return [{k: e[k] for k in ("action", "result", "reason", "source")} for e in entries]


async def test_a_request_until_keeps_the_resulting_state_with_its_reason() -> None:
    api = awake_clusters("dev-1", "dev-2")
    ctl = await governing(api)
    outcome = await ctl.request("dev-1", "hibernate", until=UNTIL, reason="holiday")
    assert (outcome.result, outcome.cluster) == ("started", "dev-1")
    assert ctl.state["overrides"] == {
        "t/dev-1": {
            "kind": "keep",
            "state": "hibernated",
            "until": NOW + 3600,
            "reason": "holiday",
            "created": NOW,
        }
    }
    await ctl.wait_idle()
    # Without a reason: none recorded; an awake keeps it awake.
    api.phases["dev-2"] = ["Hibernation"]
    await ctl.request("dev-2", "awake", until=UNTIL)
    assert ctl.state["overrides"]["t/dev-2"]["reason"] == ""
    assert ctl.state["overrides"]["t/dev-2"]["state"] == "awake"
    await ctl.close()


async def test_a_request_passes_its_source_and_progress_to_the_action() -> None:
    api = awake_clusters("dev-1")
    ctl = await governing(api)
    seen: list[str] = []
    outcome = await ctl.request(
        "dev-1", "hibernate", source="alertmanager", wait=True, progress=seen.append
    )
    assert outcome.as_dict() == {
        "result": "success",
        "cluster_id": "dev-1",
        "cluster": "dev-1",
        "action": "hibernate",
        "reason": "",
    }
    assert seen == ["Hibernating", "Hibernation"]
    assert history(ctl, "dev-1") == [
        {"action": "hibernate", "result": "success", "reason": "", "source": "alertmanager"}
    ]
    await ctl.close()


async def test_a_request_without_wait_answers_started() -> None:
    api = awake_clusters("dev-1")
    ctl = await governing(api)
    outcome = await ctl.request("dev-1", "hibernate")
    assert outcome == Outcome("started", "dev-1", "hibernate", "dev-1")
    assert "t/dev-1" not in ctl.state["history"]
    await ctl.wait_idle()
    assert history(ctl, "dev-1")[-1]["result"] == "success"
    await ctl.close()


async def test_a_known_cluster_is_not_listed_again_for_a_request() -> None:
    api = awake_clusters("dev-1")
    ctl = await governing(api)
    assert api.lists == 1
    await ctl.request("dev-1", "hibernate", wait=True)
    assert api.lists == 1
    assert (await ctl.request("dev-9", "hibernate")).result == "not_found"
    assert api.lists == 2  # an unknown one is looked for in a fresh listing
    await ctl.close()


@pytest.mark.parametrize("how", ["request", "controller", "policy"])
async def test_a_dry_run_request_calls_nothing_and_sets_no_override(how: str) -> None:
    api = awake_clusters("dev-1", "dry-1")
    ctl = await governing(api, dry_run=how == "controller")
    cid = "dry-1" if how == "policy" else "dev-1"
    outcome = await ctl.request(cid, "hibernate", until=UNTIL, dry_run=how == "request")
    assert outcome == Outcome(
        "dry_run", cid, "hibernate", cid, "dry run: nothing called", dry_run=True
    )
    assert api.calls == []
    assert ctl.state["overrides"] == {}
    assert history(ctl, cid) == [
        {
            "action": "hibernate",
            "result": "dry_run",
            "reason": "dry run: nothing called",
            "source": "hook",
        }
    ]
    await ctl.close()


async def test_a_request_whose_record_cannot_be_saved_is_not_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = awake_clusters("dev-1")
    store = MemoryStateStore()
    ctl = await governing(api, store)

    def refuse(value: Any) -> None:
        raise StateNotSaved("disk full")

    monkeypatch.setattr(store, "save", refuse)
    with pytest.raises(StateNotSaved, match="disk full"):
        await ctl.request("dev-1", "hibernate")
    assert api.calls == [] and ctl.runner.tasks == set()
    # A dry run writes nothing that must last: it answers.
    assert (await ctl.request("dev-1", "hibernate", dry_run=True)).result == "dry_run"
    await ctl.close()


async def test_a_request_for_a_cluster_no_policy_selects_is_refused_unless_forced() -> None:
    api = awake_clusters("prod-1", "nameless-1")
    ctl = await governing(api)
    refused = await ctl.request("prod-1", "hibernate")
    assert refused == Outcome(
        "skipped",
        "prod-1",
        "hibernate",
        "prod-1",
        "no policy selects cluster 'prod-1'; it is never acted on",
    )
    refused = await ctl.request("nameless-1", "hibernate")
    assert (refused.result, refused.cluster_id, refused.cluster) == ("skipped", "nameless-1", "")
    assert refused.reason.startswith("no policy selects cluster ")
    assert api.calls == []
    # Forced (the command line's --force): acted on as a one-off, not in dry run.
    forced = await ctl.request("prod-1", "hibernate", force=True, source="cli", wait=True)
    assert forced == Outcome("success", "prod-1", "hibernate", "prod-1", "")
    assert history(ctl, "prod-1") == [
        {"action": "hibernate", "result": "success", "reason": "", "source": "cli"}
    ]
    forced = await ctl.request("nameless-1", "hibernate", force=True, wait=True)
    assert (forced.result, forced.cluster) == ("success", "nameless-1")
    assert api.calls == [("hibernate", "prod-1"), ("hibernate", "nameless-1")]
    await ctl.close()


async def test_a_forced_request_cannot_keep_a_cluster_no_policy_reads() -> None:
    api = awake_clusters("prod-1")
    ctl = await governing(api)
    outcome = await ctl.request("prod-1", "hibernate", force=True, until=UNTIL)
    assert outcome == Outcome(
        "skipped",
        "prod-1",
        "hibernate",
        "prod-1",
        "--until needs a cluster a policy selects (an override of a cluster no policy governs "
        "would never be read)",
    )
    assert api.calls == [] and ctl.state["overrides"] == {}
    await ctl.close()


async def test_a_request_for_a_cluster_two_policies_select_is_refused_unless_forced() -> None:
    api = awake_clusters("both-1")
    ctl = await governing(api)
    message = (
        "cluster 'both-1' (both-1) of target 't' is selected by policies 'dev' and 'also'; it "
        "is left alone until only one policy selects it"
    )
    assert await ctl.request("both-1", "hibernate") == Outcome(
        "skipped", "both-1", "hibernate", "both-1", message
    )
    assert api.calls == []
    forced = await ctl.request("both-1", "hibernate", force=True, wait=True)
    assert forced.result == "success"
    await ctl.close()


# --- the controller around its actions ---------------------------------------------------------


class Notes:
    """A notifier that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def notify(self, event: Any) -> None:
        self.events.append(dict(event))

    async def drain(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def test_the_policy_file_s_webhooks_make_the_notifier() -> None:
    doc = GOVERNING + "notify:\n  webhooks: ['https://chat.example/hook']\n  timeout_seconds: 7\n"
    ctl, _ = controller(FakeAPI({}), MemoryStateStore(), doc)
    assert ctl.notifier is not None
    assert (ctl.notifier.urls, ctl.notifier.timeout) == (["https://chat.example/hook"], 7)  # type: ignore[attr-defined]
    notes = Notes()
    given, _ = controller(FakeAPI({}), MemoryStateStore(), doc, notifier=notes)
    assert given.notifier is notes
    none, _ = controller(FakeAPI({}), MemoryStateStore(), GOVERNING)
    assert none.notifier is None


async def test_the_controller_s_families_are_in_the_registry_it_is_given() -> None:
    registry = CollectorRegistry()
    ctl = await governing(awake_clusters("dev-1"), registry=registry)
    assert ctl.registry is registry
    labels = {"project_id": "p", "cluster_id": "dev-1", "cluster": "dev-1", "policy": "dev"}
    labels.update(dry_run="false", timezone="UTC")
    assert registry.get_sample_value("cce_hibernation_policy_info", labels) == 1.0
    await ctl.close()


async def test_a_second_action_on_a_cluster_is_refused_while_one_runs() -> None:
    api = awake_clusters("dev-1")
    api.call_hold = asyncio.Event()
    ctl = await governing(api)
    assert (await ctl.request("dev-1", "hibernate")).result == "started"
    await asyncio.wait_for(api.called.wait(), 30)
    again = await ctl.request("dev-1", "awake")
    assert again == Outcome(
        "skipped", "dev-1", "awake", "dev-1", "another action on this cluster is still running"
    )
    assert counted(ctl) == {("awake", "skipped"): 1}
    assert "t/dev-1" not in ctl.state["history"]  # counted, not recorded: nothing was decided
    api.call_hold.set()
    await ctl.wait_idle()
    assert [e["result"] for e in history(ctl, "dev-1")] == ["success"]
    await ctl.close()


@pytest.mark.parametrize(("action", "phase"), [("hibernate", "Hibernating"), ("awake", "Awaking")])
async def test_a_cluster_already_in_transit_is_followed_not_refused(
    action: str, phase: str
) -> None:
    done = "Hibernation" if action == "hibernate" else "Available"
    api = FakeAPI({"dev-1": [phase, phase, phase, done]})
    ctl = await governing(api)
    outcome = await ctl.request("dev-1", action, wait=True)  # type: ignore[arg-type]
    assert (outcome.result, outcome.reason) == ("success", "")
    assert api.calls == []  # in transit already: followed, not called again
    await ctl.close()


@pytest.mark.parametrize(
    ("phase", "reason"),
    [
        ("Hibernation", "the cluster is already Hibernation"),
        ("Upgrading", "the cluster is Upgrading; hibernate needs Available"),
        ("Awaking", "the cluster is Awaking; hibernate needs Available"),
    ],
)
async def test_a_cluster_in_the_wrong_phase_is_skipped_and_recorded(
    phase: str, reason: str
) -> None:
    api = FakeAPI({"dev-1": [phase]})
    ctl = await governing(api)
    outcome = await ctl.request("dev-1", "hibernate", source="cli")
    assert outcome == Outcome("skipped", "dev-1", "hibernate", "dev-1", reason)
    assert history(ctl, "dev-1") == [
        {"action": "hibernate", "result": "skipped", "reason": reason, "source": "cli"}
    ]
    assert counted(ctl) == {("hibernate", "skipped"): 1}
    assert api.calls == []
    await ctl.close()


async def test_notifications_name_the_cluster_and_the_instant() -> None:
    notes = Notes()
    api = awake_clusters("dev-1")
    ctl = await governing(api, notifier=notes)
    await ctl.request("dev-1", "hibernate", wait=True, source="alertmanager")
    assert notes.events == [
        {
            "event": "hibernate.before",
            "target": "t",
            "cluster_id": "dev-1",
            "cluster": "dev-1",
            "action": "hibernate",
            "result": "started",
            "reason": "",
            "source": "",
            "at": "2027-01-15T08:00:00Z",
        },
        {
            "event": "hibernate.after",
            "target": "t",
            "cluster_id": "dev-1",
            "cluster": "dev-1",
            "action": "hibernate",
            "result": "success",
            "reason": "",
            "source": "alertmanager",
            "at": "2027-01-15T08:00:30Z",
        },
    ]
    await ctl.close()


async def test_the_result_of_an_action_on_a_cluster_gone_from_the_listing() -> None:
    notes = Notes()
    api = awake_clusters("dev-1=id-1")
    api.call_hold = asyncio.Event()
    ctl = await governing(api, notifier=notes)
    assert (await ctl.request("dev-1", "hibernate")).cluster == "dev-1"
    await asyncio.wait_for(api.called.wait(), 30)
    api.phases = {"dev-2": ["Available"]}
    await ctl.tick()  # the cluster is not listed any more
    api.phases["dev-1=id-1"] = ["Hibernation"]
    api.call_hold.set()
    outcome = await ctl.runner.task_for(("t", "id-1"))
    # Named by its ID (its name went with the listing).
    assert outcome == Outcome("success", "id-1", "hibernate", "id-1", "")
    assert notes.events[-1]["cluster"] == ""
    await ctl.close()


async def test_closing_saves_the_state() -> None:
    store = MemoryStateStore()
    ctl = await governing(awake_clusters("dev-1"), store)
    ctl.state["handled"]["t/dev-1"] = 1.0
    await ctl.close()
    assert store.value["handled"] == {"t/dev-1": 1.0}


async def test_listings_of_targets_not_configured_are_ignored() -> None:
    ctl = await governing(awake_clusters("dev-1"))
    assert await ctl.tick({"elsewhere": [cluster("dev-9", "Available")]}) == []
    assert set(ctl.clusters) == {("t", "dev-1")}
    assert ctl.view.listed == {"t"}
    await ctl.close()


async def test_a_state_another_process_wrote_is_taken_in_with_its_gauges() -> None:
    class Shared(MemoryStateStore):
        written: Any = None

        def reload(self) -> Any:
            value, self.written = self.written, None
            return value

    store = Shared()
    ctl = await governing(awake_clusters("dev-1"), store)
    assert ctl.reload_state() is False
    store.written = {
        "overrides": {
            "t/dev-1": {"kind": "keep", "state": "awake", "until": NOW + 60, "created": NOW}
        }
    }
    assert ctl.reload_state() is True
    labels = {"project_id": "p", "cluster_id": "dev-1", "cluster": "dev-1", "state": "awake"}
    sample = ctl.registry.get_sample_value(
        "cce_hibernation_override_until_timestamp_seconds", labels
    )
    assert sample == NOW + 60
    await ctl.close()


# --- the tick: what is due, and what stops it --------------------------------------------------

#: dev-* awake 09:00-17:00 UTC every day (dev-x excluded), dry-* the same in dry run.
SCHEDULED = """
policies:
  - name: day
    clusters: {names: ["dev-*"], exclude: ["dev-x"]}
    timezone: UTC
    awake: ["Mon-Sun 09:00-17:00"]
  - name: dry
    clusters: {names: ["dry-*"]}
    timezone: UTC
    awake: ["Mon-Sun 09:00-17:00"]
    dry_run: true
controller:
  poll_seconds: 15
  retry_backoff_seconds: 60
  action_timeout_seconds: 900
  max_attempts: 3
  catch_up_seconds: 600
"""
NINE = NOW + 3600  # 09:00 UTC: the wake-up


def sleeping(*ids: str) -> FakeAPI:
    return FakeAPI({cid: ["Hibernation", "Hibernation", "Awaking", "Available"] for cid in ids})


async def scheduled(
    api: FakeAPI, store: MemoryStateStore | None = None, **kwargs: Any
) -> tuple[HibernationController, list[float]]:
    ctl, clock = controller(api, store or MemoryStateStore(), SCHEDULED, **kwargs)
    assert await ctl.tick() == []  # 08:00: nothing due
    return ctl, clock


async def test_a_transition_is_acted_on_once_from_the_policy() -> None:
    api = sleeping("dev-2", "dev-1")
    store = MemoryStateStore()
    ctl, clock = await scheduled(api, store)
    clock[0] = NINE + 5
    outcomes = await ctl.tick()
    assert outcomes == [
        Outcome("started", "dev-1", "awake", "dev-1"),
        Outcome("started", "dev-2", "awake", "dev-2"),
    ]
    assert store.value["handled"] == {"t/dev-1": NINE, "t/dev-2": NINE}
    await ctl.wait_idle()
    assert history(ctl, "dev-1") == [
        {"action": "awake", "result": "success", "reason": "", "source": "policy"}
    ]
    assert await ctl.tick() == []  # handled: not again
    await ctl.close()


@pytest.mark.parametrize(("late", "acted"), [(599, True), (600, False)])
async def test_a_missed_transition_is_caught_up_only_within_the_window(
    late: int, acted: bool
) -> None:
    api = sleeping("dev-1")
    ctl, clock = await scheduled(api)
    clock[0] = NINE + late
    outcomes = await ctl.tick()
    assert [o.result for o in outcomes] == (["started"] if acted else [])
    await ctl.close()


async def test_an_excluded_cluster_s_transition_is_handled_without_action() -> None:
    api = sleeping("dev-x")
    store = MemoryStateStore()
    ctl, clock = await scheduled(api, store)
    clock[0] = NINE + 5
    assert await ctl.tick() == []
    assert store.value["handled"] == {"t/dev-x": NINE}
    assert ctl.state["history"] == {} and api.calls == []
    await ctl.close()


async def test_a_skip_override_is_consumed_by_the_next_transition() -> None:
    api = sleeping("dev-1")
    store = MemoryStateStore()
    ctl, clock = await scheduled(api, store)
    assert ctl.set_override("dev-1", None, None, "demo") is None
    clock[0] = NINE + 5
    reason = "skipped on request (skip override)"
    assert await ctl.tick() == [Outcome("skipped", "dev-1", "awake", "dev-1", reason)]
    assert store.value["overrides"] == {}  # consumed, and saved so
    assert history(ctl, "dev-1") == [
        {"action": "awake", "result": "skipped", "reason": reason, "source": "policy"}
    ]
    assert counted(ctl) == {("awake", "skipped"): 1}
    assert api.calls == []
    await ctl.close()


async def test_a_keep_override_blocks_the_transition_and_stays() -> None:
    api = sleeping("dev-1")
    store = MemoryStateStore()
    ctl, clock = await scheduled(api, store)
    until = datetime.fromtimestamp(NINE + 3600, UTC)
    assert ctl.set_override("dev-1", "hibernated", until, "quiet") is None
    clock[0] = NINE + 5
    reason = "override keeps it hibernated until 2027-01-15T10:00:00Z"
    assert await ctl.tick() == [Outcome("skipped", "dev-1", "awake", "dev-1", reason)]
    assert set(store.value["overrides"]) == {"t/dev-1"}
    assert store.value["history"]["t/dev-1"][-1]["reason"] == reason
    # Its end is a transition of its own: the policy wants the cluster awake.
    clock[0] = NINE + 3600
    assert [(o.result, o.action) for o in await ctl.tick()] == [("started", "awake")]
    assert store.value["overrides"] == {}  # expired at its end, in the same tick
    await ctl.wait_idle()
    await ctl.close()


async def test_a_policy_in_dry_run_acts_in_dry_run() -> None:
    api = sleeping("dry-1")
    ctl, clock = await scheduled(api)
    clock[0] = NINE + 5
    assert await ctl.tick() == [
        Outcome("dry_run", "dry-1", "awake", "dry-1", "dry run: nothing called", True)
    ]
    assert history(ctl, "dry-1")[-1]["source"] == "policy"
    assert api.calls == []
    await ctl.close()


async def test_an_override_by_name_and_its_clearing() -> None:
    api = sleeping("dev-1=id-1")
    store = MemoryStateStore()
    ctl, _ = await scheduled(api, store)
    assert ctl.set_override("dev-1", "awake", None) is None
    assert store.value["overrides"] == {
        "t/id-1": {"kind": "keep", "state": "awake", "until": None, "reason": "", "created": NOW}
    }
    assert ctl.clear_override("dev-1") is True
    assert store.value["overrides"] == {}
    assert ctl.set_override("prod-1", "awake", None) == "cluster 'prod-1' is not known"
    await ctl.close()


# --- attempts ----------------------------------------------------------------------------------


async def test_the_wait_before_each_retry() -> None:
    ctl = await governing(awake_clusters("dev-1"))
    backoff = ctl.runner.backoff
    assert (backoff(2, None), backoff(3, None), backoff(4, CCEError("x"))) == (60, 120, 240)
    # A rate limit's Retry-After when it is longer than the backoff, never shorter.
    assert backoff(2, RateLimited(429, retry_after=500)) == 500
    assert backoff(3, RateLimited(429, retry_after=30)) == 120
    assert backoff(2, RateLimited(429, retry_after=None)) == 60
    assert backoff(2, RateLimited(429, retry_after=0)) == 60
    await ctl.close()


async def test_at_most_max_in_flight_actions_run_per_target() -> None:
    api = awake_clusters("dev-1", "dev-2", "dev-3")
    api.call_hold = asyncio.Event()
    ctl = await governing(api)  # max_in_flight: 2 (the default)
    for cid in ("dev-1", "dev-2", "dev-3"):
        assert (await ctl.request(cid, "hibernate")).result == "started"
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(api.calls) == 2
    api.call_hold.set()
    await ctl.wait_idle()
    assert sorted(c for _, c in api.calls) == ["dev-1", "dev-2", "dev-3"]
    await ctl.close()


class FailingOnce(FakeAPI):
    """The first hibernate call is refused with a 500."""

    in_flight_at_call: list[Any]

    async def hibernate(self, cluster_id: str) -> str | None:
        self.in_flight_at_call.append(dict(self.store.value["in_flight"]))
        if len(self.in_flight_at_call) == 1:
            raise CCEError("HTTP 500")
        return await super().hibernate(cluster_id)


async def test_each_attempt_is_on_record_with_its_number_and_notified_once() -> None:
    store = MemoryStateStore()
    api = FailingOnce(
        {"dev-1": ["Available", "Available", "Available", "Hibernating", "Hibernation"]}
    )
    api.store = store  # type: ignore[attr-defined]
    api.in_flight_at_call = []
    notes = Notes()
    ctl = await governing(api, store, notifier=notes)
    outcome = await ctl.request("dev-1", "hibernate", wait=True)
    assert (outcome.result, outcome.reason) == ("success", "")
    assert api.in_flight_at_call == [
        {"t/dev-1": {"action": "hibernate", "started": NOW, "attempt": 1}},
        {"t/dev-1": {"action": "hibernate", "started": NOW + 60, "attempt": 2}},
    ]
    assert [e["event"] for e in notes.events] == ["hibernate.before", "hibernate.after"]
    duration = ctl.registry.get_sample_value(
        "cce_hibernation_action_duration_seconds_sum", {"action": "hibernate"}
    )
    assert duration == 30  # from the successful call, two polls of 15 s
    await ctl.close()


async def test_closing_cancels_a_running_action_and_keeps_its_record() -> None:
    api = awake_clusters("dev-1")
    api.call_hold = asyncio.Event()
    store = MemoryStateStore()
    ctl = await governing(api, store)
    await ctl.request("dev-1", "hibernate")
    await asyncio.wait_for(api.called.wait(), 30)
    task = ctl.runner.task_for(("t", "dev-1"))
    await ctl.close()
    assert task.cancelled()
    assert ctl.runner.active == set()
    assert set(store.value["in_flight"]) == {"t/dev-1"}  # resolved after the restart
    assert "t/dev-1" not in store.value["history"]


# --- what the log says (an operator reads it to know why) --------------------------------------


@pytest.mark.parametrize(
    ("late", "said"),
    [(120, ""), (121, ", caught up 121s late"), (300, ", caught up 300s late")],
)
async def test_a_transition_caught_up_late_says_how_late(
    late: int, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter.hibernation.controller")
    ctl, clock = await scheduled(sleeping("dev-1"))
    clock[0] = NINE + late
    await ctl.tick()
    assert (
        f"hibernation: awake dev-1 (policy 'day', transition at 2027-01-15T09:00:00+00:00{said})"
        in caplog.messages
    )
    await ctl.wait_idle()
    await ctl.close()


async def test_a_request_s_log_line_says_who_why_and_whether_forced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="exporter.hibernation.controller")
    api = awake_clusters("dev-1", "prod-1")
    api.phases["prod-1"] = ["Upgrading"]
    ctl = await governing(api)
    await ctl.request("dev-1", "hibernate", wait=True)
    await ctl.request("prod-1", "hibernate", force=True, source="cli", reason="cost")
    assert "hibernation: hibernate of dev-1 requested by hook" in caplog.messages
    assert "hibernation: hibernate of dev-1: success" in caplog.messages
    assert (
        "hibernation: hibernate of prod-1 requested by cli (cost) (forced: no policy selects it)"
        in caplog.messages
    )
    await ctl.close()


async def test_waiting_for_the_actions_outlives_a_cancelled_one() -> None:
    api = awake_clusters("dev-1", "dev-2")
    api.call_hold = asyncio.Event()
    ctl = await governing(api)
    await ctl.request("dev-1", "hibernate")
    await ctl.request("dev-2", "hibernate")
    await asyncio.wait_for(api.called.wait(), 30)
    ctl.runner.task_for(("t", "dev-1")).cancel()
    api.call_hold.set()
    await ctl.wait_idle()  # neither raises the cancel nor stops before the other action ends
    assert ctl.runner.tasks == set()
    assert [e["result"] for e in history(ctl, "dev-2")] == ["success"]
    with pytest.raises(LookupError) as found:
        ctl.runner.task_for(("t", "dev-1"))
    assert found.value.args == (("t", "dev-1"),)
    await ctl.close()


async def test_an_action_s_duration_is_measured_to_the_fraction_of_a_second() -> None:
    ctl = await governing(awake_clusters("dev-1"))
    ctl.options = ctl.options.model_copy(update={"poll_seconds": 0.25})
    assert (await ctl.request("dev-1", "hibernate", wait=True)).result == "success"
    sample = ctl.registry.get_sample_value
    duration = {"action": "hibernate"}
    assert sample("cce_hibernation_action_duration_seconds_sum", duration) == 0.5  # two polls
    assert sample("cce_hibernation_action_duration_seconds_count", duration) == 1
    await ctl.close()


async def test_interrupted_actions_of_two_targets_each_resolved_in_turn() -> None:
    """A record whose resolution is still running does not hold up the next one."""
    first, second = FakeAPI({"c1": ["Hibernation"]}), FakeAPI({"c2": ["Available"]})
    first.hold = asyncio.Event()
    second.list_error = CCEError("listing failed")
    record = {"action": "hibernate", "started": NOW, "attempt": 1}
    store = MemoryStateStore(
        {"in_flight": {"t/c1": record, "team-b/c2": {**record, "action": "awake"}}}
    )
    ctl = HibernationController(
        parse_policy_file(NONE_SELECTED),
        [ControllerTarget("t", first, "p"), ControllerTarget("team-b", second, "p")],
        store=store,
        clock=lambda: NOW,
    )
    await ctl.tick()  # t/c1 is being resolved (held); team-b is not listed yet
    await asyncio.wait_for(first.entered.wait(), 30)
    second.list_error = None
    await ctl.tick()  # t/c1 still running: team-b/c2 is resolved all the same
    await ctl.runner.task_for(("team-b", "c2"))
    assert ctl.state["history"]["team-b/c2"][-1]["reason"] == (
        "interrupted by a shutdown; Available after the restart"
    )
    first.hold.set()
    await ctl.wait_idle()
    assert ctl.state["in_flight"] == {}
    await ctl.close()


async def test_a_tick_lists_every_target_not_given() -> None:
    given, listed = FakeAPI({"c1": ["Available"]}), FakeAPI({"c2": ["Available"]})
    ctl = HibernationController(
        parse_policy_file(NONE_SELECTED),
        [ControllerTarget("t", given, "p"), ControllerTarget("u", listed, "p")],
        clock=lambda: NOW,
    )
    await ctl.tick({"t": [cluster("c1", "Available")]})
    assert (given.lists, listed.lists) == (0, 1)
    assert set(ctl.clusters) == {("t", "c1"), ("u", "c2")}
    await ctl.close()


async def test_a_gone_cluster_s_record_does_not_hold_up_the_next_one() -> None:
    api = FakeAPI({"c2": ["Hibernation"]})
    record = {"action": "hibernate", "started": NOW, "attempt": 1}
    store = MemoryStateStore({"in_flight": {"t/c1": record, "t/c2": dict(record)}})
    ctl, _ = controller(api, store)
    await ctl.tick()
    await ctl.wait_idle()
    assert store.value["in_flight"] == {}
    history = store.value["history"]
    assert [history[k][-1]["reason"] for k in ("t/c1", "t/c2")] == [
        "interrupted by a shutdown; the cluster is gone",
        "interrupted by a shutdown; Hibernation after the restart",
    ]
    await ctl.close()


async def test_cancelling_the_actions_waits_for_each_to_end() -> None:
    """Closing the controller saves its state after every action has ended: one whose cancel
    takes a few more steps (its own cleanup) is waited for too."""
    ctl, _ = controller(FakeAPI({}), MemoryStateStore())
    ended: list[str] = []

    async def action(name: str, steps: int) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            for _ in range(steps):
                await asyncio.sleep(0)
            ended.append(name)
            raise

    ctl.runner.spawn(("t", "quick"), action("quick", 0))
    ctl.runner.spawn(("t", "slow"), action("slow", 5))
    await asyncio.sleep(0)  # both wait
    await ctl.runner.cancel()
    assert sorted(ended) == ["quick", "slow"]
    assert ctl.runner.tasks == set()
    await ctl.close()
