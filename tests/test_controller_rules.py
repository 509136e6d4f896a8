"""The hibernation controller's rules in detail: what it records, counts and exposes for each
decision, how long it waits between attempts, and its overrides' edges."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
    StateNotSaved,
)
from exporter.hibernation.policy import parse_policy_file
from exporter.hibernation.schedule import Action
from tests.test_actions_rules import Notes
from tests.test_hibernation_controller import POLICIES, Env, environment


@asynccontextmanager
async def ticked(names: list[str]) -> AsyncIterator[tuple[Env, HibernationController]]:
    """An environment at noon (no transition due) with a controller that has seen one tick."""
    async with environment(names) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        ctl = env.controller()
        await ctl.tick()
        yield env, ctl


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
    async with ticked(["dev-a"]) as (env, ctl):
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
    async with ticked(["dev-a"]) as (env, ctl):
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
    async with ticked(["dev-a"]) as (env, ctl):
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
        last = ctl.state["history"][f"sim/{env.ids['dev-a']}"][-1]
        assert last["result"] == "failed"
        assert last["reason"].startswith("gave up after 3 attempts: HTTP 500 from POST ")
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


async def test_requests_answer_in_full() -> None:
    head, _, tail = POLICIES.partition("pricing:")
    doc = head + "  - name: also-dev\n    clusters: {names: ['dev-c']}\n    awake: ['Sat']\n"
    doc += (
        "  - name: dry\n    clusters: {names: ['dry-*']}\n    awake: ['Sat']\n    dry_run: true\n"
    )
    doc += "pricing:" + tail
    async with environment(["dev-a", "dev-c", "prod-x", "dry-a"], doc) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        ctl = env.controller()
        await ctl.tick()
        ids = env.ids

        def answer(outcome: Any) -> tuple[str, str, str, str, str]:
            d = outcome.as_dict()
            return (d["result"], d["cluster_id"], d["action"], d["cluster"], d["reason"])

        assert answer(await ctl.request("nope", "hibernate")) == (
            "not_found",
            "nope",
            "hibernate",
            "",
            "cluster 'nope' is not known",
        )
        assert answer(await ctl.request(ids["prod-x"], "hibernate")) == (
            "skipped",
            ids["prod-x"],
            "hibernate",
            "prod-x",
            "no policy selects cluster 'prod-x'; it is never acted on",
        )
        past = datetime(2027, 3, 1, 11, tzinfo=UTC)
        assert answer(await ctl.request(ids["dev-a"], "hibernate", until=past)) == (
            "skipped",
            ids["dev-a"],
            "hibernate",
            "dev-a",
            "'until' is in the past",
        )
        # A policy in dry run, or a request asking for one: nothing is called.
        assert (await ctl.request(ids["dry-a"], "hibernate")).result == "dry_run"
        assert (await ctl.request(ids["dev-a"], "hibernate", dry_run=True)).result == "dry_run"
        assert env.api.calls == []
        entry = ctl.state["history"][f"sim/{ids['dev-a']}"][-1]
        assert {k: entry[k] for k in ("action", "result", "reason", "source")} == {
            "action": "hibernate",
            "result": "dry_run",
            "reason": "dry run: nothing called",
            "source": "hook",
        }
        assert {k: v for k, v in ctl.actions.items() if k[2] == "dry_run"} == {
            (("sim", ids["dry-a"]), "hibernate", "dry_run"): 1,
            (("sim", ids["dev-a"]), "hibernate", "dry_run"): 1,
        }
        # The phase is read again for the answer; a failed read leaves the listed one.
        env.sim.faults.add("http_500", count=1, path=ids["dev-a"] + "$")
        outcome = await ctl.request(ids["dev-a"], "hibernate", wait=True)
        assert env.sim.faults.injected["http_500"] == 1
        assert outcome.result == "success"
        assert [c[1:] for c in env.api.calls] == [("hibernate", "dev-a")]
        # A cluster created since the last listing is found by listing again.
        late = env.sim.world.add_cluster(name="dev-late", phase="Available").uid
        outcome = await ctl.request(late, "hibernate", wait=True)
        assert (outcome.result, outcome.cluster) == ("success", "dev-late")
        entry = ctl.state["history"][f"sim/{late}"][-1]
        assert (entry["source"], entry["result"]) == ("hook", "success")  # the default source
        await ctl.close()


async def test_a_controller_in_dry_run_calls_nothing_on_request() -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        ctl = env.controller(dry_run=True)
        await ctl.tick()
        assert (await ctl.request(env.ids["dev-a"], "hibernate")).result == "dry_run"
        assert env.api.calls == []
        await ctl.close()


async def _scripted(
    env: Env, script: list[tuple[str, str | None]], action: Action = "hibernate"
) -> tuple[Any, list[str]]:
    """Act on dev-a by request while each poll first sets the next scripted phase."""
    script = list(script)  # a copy: the caller's list may be a shared parameter
    env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
    ctl = env.controller()
    cid = env.ids["dev-a"]
    if action == "awake":
        env.sim.world.set_phase("cluster", cid, "Hibernation")

    async def sleep(seconds: float) -> None:
        if seconds == ctl.options.poll_seconds and script:
            phase, reason = script.pop(0)
            env.sim.world.set_phase("cluster", cid, phase, reason=reason)
        env.sim.advance(seconds)
        await asyncio.sleep(0)

    ctl.sleep = sleep
    await ctl.tick()
    seen: list[str] = []
    outcome = await ctl.request(cid, action, wait=True, progress=seen.append)
    await ctl.close()
    return outcome, seen


async def test_following_reports_each_phase_once() -> None:
    async with environment(["dev-a"]) as env:
        outcome, seen = await _scripted(env, [])
        assert outcome.result == "success"
        assert seen == ["Hibernating", "Hibernation"]


async def test_following_waits_while_the_api_still_shows_the_old_phase() -> None:
    async with environment(["dev-a"]) as env:
        outcome, _ = await _scripted(env, [("Available", None), ("Hibernation", None)])
        assert outcome.result == "success"
        assert len(env.api.calls) == 1  # not retried: the API was just late


@pytest.mark.parametrize(
    ("action", "script"),
    [
        ("hibernate", [("Hibernating", None), ("Available", None)]),  # went back after moving
        ("awake", [("Hibernation", "WakeupFailed")]),  # never moved, and says it failed
    ],
    ids=["went-back", "failed-reason"],
)
async def test_following_sees_a_failure_at_once(
    action: Action, script: list[tuple[str, str | None]]
) -> None:
    async with environment(["dev-a"]) as env:
        outcome, _ = await _scripted(env, script, action)
        assert outcome.result == "success"  # the second attempt
        first, second = (at for at, _, _ in env.api.calls)
        # Detected at the poll that saw it, not at the 900 s action timeout.
        assert second - first < 300


async def test_following_a_cluster_without_a_phase() -> None:
    async with environment(["dev-a"]) as env:
        outcome, seen = await _scripted(env, [("", None)])
        assert seen == []  # no phase is no news
        assert (outcome.result, outcome.reason) == (
            "failed",
            "the cluster went to ; then the cluster is in an unknown phase; "
            "hibernate needs Available",
        )


@pytest.mark.parametrize(
    ("action", "phase", "reason"),
    [
        (
            "awake",
            ("Hibernation", "WakeupFailed", "no capacity"),
            "gave up after 3 attempts: the cluster went back to Hibernation: WakeupFailed "
            "no capacity",
        ),
        (
            "hibernate",
            ("Upgrading", "UpgradeStarted", "by hand"),
            "the cluster went to Upgrading: UpgradeStarted by hand; then the cluster is "
            "Upgrading; hibernate needs Available",
        ),
    ],
    ids=["went-back", "went-elsewhere"],
)
async def test_the_reasons_of_a_failed_action(
    action: Action, phase: tuple[str, str, str], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        ctl = env.controller()
        cid = env.ids["dev-a"]
        if action == "awake":
            env.sim.world.set_phase("cluster", cid, "Hibernation")

        async def sleep(seconds: float) -> None:
            if seconds == ctl.options.poll_seconds:
                env.sim.world.set_phase("cluster", cid, phase[0], reason=phase[1], message=phase[2])
            env.sim.advance(seconds)
            await asyncio.sleep(0)

        ctl.sleep = sleep
        await ctl.tick()
        outcome = await ctl.request(cid, action, wait=True)
        assert (outcome.result, outcome.reason) == ("failed", reason)
        assert f"hibernation: {action} of dev-a, attempt 1/3: the cluster went" in caplog.text
        await ctl.close()


async def test_an_action_times_out_at_its_deadline() -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        ctl = env.controller()
        cid = env.ids["dev-a"]

        async def sleep(seconds: float) -> None:
            if seconds == ctl.options.poll_seconds:
                env.sim.world.set_phase("cluster", cid, "Available")  # the API never moves
            env.sim.advance(seconds)
            await asyncio.sleep(0)

        ctl.sleep = sleep
        await ctl.tick()
        outcome = await ctl.request(cid, "hibernate", wait=True)
        assert (outcome.result, outcome.reason) == (
            "failed",
            "gave up after 3 attempts: not Hibernation 900s after the call (last phase Available)",
        )
        first, second, third = (at for at, _, _ in env.api.calls)
        assert (second - first, third - second) == (900 + 60, 900 + 120)
        await ctl.close()


async def test_an_unreadable_cluster_times_out_with_an_unknown_phase(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        ctl = env.controller(dry_run=False)
        cid = env.ids["dev-a"]
        ctl.options = ctl.options.model_copy(update={"max_attempts": 1})
        await ctl.tick()
        original = env.api.hibernate

        async def hibernate_then_vanish(cluster_id: str) -> str | None:
            job = await original(cluster_id)
            env.sim.faults.add("http_500", rate=1.0, path=cid + "$")  # every read fails now
            return job

        env.api.hibernate = hibernate_then_vanish  # type: ignore[method-assign]
        outcome = await ctl.request(cid, "hibernate", wait=True)
        assert (outcome.result, outcome.reason) == (
            "failed",
            "gave up after 1 attempts: not Hibernation 900s after the call (last phase unknown)",
        )
        await ctl.close()


async def test_a_cluster_without_a_name_is_named_by_its_id() -> None:
    async with ticked(["dev-a"]) as (env, ctl):
        nameless = env.sim.world.add_cluster(name="", phase="Available").uid
        listing = await env.api.list_clusters()
        assert {c.id: c.name for c in listing}[nameless] in (None, "")
        ctl.policy_file.policies[0].clusters.ids.append(nameless)  # governed by ID
        outcome = await ctl.request(nameless, "hibernate", wait=True)
        assert (outcome.result, outcome.cluster) == ("success", nameless)
        await ctl.close()


async def test_a_cancelled_action_frees_its_cluster() -> None:
    async with ticked(["dev-a"]) as (env, ctl):
        cid = env.ids["dev-a"]
        entered, release = asyncio.Event(), asyncio.Event()
        original = env.api.hibernate

        async def held(cluster_id: str) -> str | None:
            entered.set()
            await release.wait()
            return await original(cluster_id)

        env.api.hibernate = held  # type: ignore[method-assign]
        assert (await ctl.request(cid, "hibernate")).result == "started"
        await asyncio.wait_for(entered.wait(), 30)  # running, inside the call
        running = list(ctl._tasks)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        release.set()
        again = await ctl.request(cid, "hibernate")
        assert again.reason != "another action on this cluster is still running"
        await ctl.close()


async def test_a_crash_in_an_action_is_a_failure_not_a_dead_controller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="exporter.hibernation.controller")
    async with ticked(["dev-a", "dev-b"]) as (env, ctl):
        original = env.api.hibernate

        async def broken(cluster_id: str) -> str | None:
            if cluster_id == env.ids["dev-a"]:
                raise RuntimeError("a bug")
            return await original(cluster_id)

        env.api.hibernate = broken  # type: ignore[method-assign]
        outcome = await ctl.request(env.ids["dev-a"], "hibernate", wait=True)
        assert (outcome.result, outcome.reason) == ("failed", "a bug")
        entry = ctl.state["history"][f"sim/{env.ids['dev-a']}"][-1]
        assert (entry["result"], entry["reason"]) == ("failed", "a bug")
        assert ctl.state["in_flight"] == {}
        # The controller goes on: the other cluster is hibernated.
        assert (await ctl.request(env.ids["dev-b"], "hibernate", wait=True)).result == "success"
        assert ctl.state["in_flight"] == {}
        levels = {
            r.getMessage(): r.levelno
            for r in caplog.records
            if r.getMessage().startswith(
                ("hibernation: hibernate of dev-a: ", "hibernation: hibernate of dev-b: ")
            )
        }
        assert levels == {
            "hibernation: hibernate of dev-a: failed (a bug)": logging.WARNING,
            "hibernation: hibernate of dev-b: success": logging.INFO,
        }
        await ctl.close()


async def test_an_action_is_on_record_before_the_call_and_notified_around_it() -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        notes = Notes()
        ctl = env.controller(notifier=notes)
        await ctl.tick()
        cid = env.ids["dev-a"]
        on_disk: list[Any] = []
        original = env.api.hibernate

        async def recording(cluster_id: str) -> str | None:
            on_disk.append(env.store.value["in_flight"].get(f"sim/{cid}"))
            return await original(cluster_id)

        env.api.hibernate = recording  # type: ignore[method-assign]
        started = env.sim.clock.now()
        outcome = await ctl.request(cid, "hibernate", wait=True, reason="maintenance")
        assert outcome.as_dict() == {
            "result": "success",
            "cluster_id": cid,
            "cluster": "dev-a",
            "action": "hibernate",
            "reason": "",
        }
        assert on_disk == [{"action": "hibernate", "started": started, "attempt": 1}]
        done = ctl.state["history"][f"sim/{cid}"][-1]["at"]
        duration = {"action": "hibernate"}
        sample = ctl.registry.get_sample_value
        assert sample("cce_hibernation_action_duration_seconds_count", duration) == 1
        assert sample("cce_hibernation_action_duration_seconds_sum", duration) == done - started
        assert done - started >= ctl.options.poll_seconds
        assert env.store.value["in_flight"] == {}
        assert [
            {k: e[k] for k in ("event", "cluster_id", "cluster", "result", "reason", "source")}
            for e in notes.events
        ] == [
            {
                "event": "hibernate.before",
                "cluster_id": cid,
                "cluster": "dev-a",
                "result": "started",
                "reason": "",
                "source": "",
            },
            {
                "event": "hibernate.after",
                "cluster_id": cid,
                "cluster": "dev-a",
                "result": "success",
                "reason": "",
                "source": "hook",
            },
        ]
        await ctl.close()


async def test_a_failed_read_before_the_call_is_retried() -> None:
    async with ticked(["dev-a"]) as (env, ctl):
        cid = env.ids["dev-a"]
        # The request's own read and the first attempt's read fail; the second attempt acts.
        env.sim.faults.add("http_500", count=2, path=cid + "$")
        outcome = await ctl.request(cid, "hibernate", wait=True)
        assert (outcome.result, outcome.reason) == ("success", "")
        assert len(env.api.calls) == 1
        # Reads that always fail (the controller still believes it Available): given up.
        env.sim.faults.add("http_500", rate=1.0, path=cid + "$")
        outcome = await ctl.request(cid, "hibernate", wait=True)
        assert outcome.result == "failed"
        assert outcome.reason.startswith("gave up after 3 attempts: reading the cluster failed: ")
        assert "HTTP 500" in outcome.reason
        await ctl.close()


async def test_the_target_phase_found_by_an_attempt() -> None:
    async with environment(["dev-a", "dev-b"]) as env:
        env.at(datetime(2027, 3, 1, 18, 59, tzinfo=UTC))
        ctl = env.controller()
        await ctl.tick()
        # Listed Available; hibernated by someone else before the controller acts on it.
        listing = await env.api.list_clusters()
        env.sim.world.set_phase("cluster", env.ids["dev-a"], "Hibernation")
        env.at(datetime(2027, 3, 1, 19, 0, 5, tzinfo=UTC))
        await ctl.tick({"sim": listing})
        await ctl.wait_idle()
        entry = ctl.state["history"][f"sim/{env.ids['dev-a']}"][-1]
        assert (entry["result"], entry["reason"]) == (
            "skipped",
            "the cluster is already Hibernation",
        )
        # Reached on a later attempt (the first went back, the API then caught up): a success.
        cid = env.ids["dev-b"]
        polls = 0

        async def sleep(seconds: float) -> None:
            nonlocal polls
            if seconds == ctl.options.poll_seconds and polls == 0:
                polls += 1
                env.sim.world.set_phase("cluster", cid, "Hibernating")
            elif seconds == ctl.options.poll_seconds and polls == 1:
                polls += 1
                env.sim.world.set_phase("cluster", cid, "Available")
            elif seconds != ctl.options.poll_seconds:
                env.sim.world.set_phase("cluster", cid, "Hibernation")
            env.sim.advance(seconds)
            await asyncio.sleep(0)

        ctl.sleep = sleep
        env.sim.world.set_phase("cluster", cid, "Available")
        outcome = await ctl.request(cid, "hibernate", wait=True)
        assert (outcome.result, outcome.reason) == ("success", "")
        await ctl.close()


async def test_went_back_without_a_reason() -> None:
    async with environment(["dev-a"]) as env:
        env.at(datetime(2027, 3, 1, 12, tzinfo=UTC))
        ctl = env.controller()
        cid = env.ids["dev-a"]
        polls = 0

        async def sleep(seconds: float) -> None:
            nonlocal polls
            if seconds == ctl.options.poll_seconds:
                polls += 1
                env.sim.world.set_phase("cluster", cid, "Hibernating" if polls % 2 else "Available")
            env.sim.advance(seconds)
            await asyncio.sleep(0)

        ctl.sleep = sleep
        await ctl.tick()
        assert ctl.set_override(cid, None, None) is None
        assert ctl.state["overrides"][f"sim/{cid}"]["reason"] == ""
        assert ctl.clear_override(cid)
        outcome = await ctl.request(cid, "hibernate", wait=True)
        assert (outcome.result, outcome.reason) == (
            "failed",
            "gave up after 3 attempts: the cluster went back to Available",
        )
        await ctl.close()


async def test_an_override_change_that_cannot_be_saved_is_not_made(monkeypatch: Any) -> None:
    async with ticked(["dev-a"]) as (env, ctl):
        cid = env.ids["dev-a"]
        now = env.sim.clock.now()
        until = datetime.fromtimestamp(now, UTC) + timedelta(hours=1)
        saves = ctl.store.saves  # type: ignore[attr-defined]
        assert ctl.set_override(cid, "awake", until, "first") is None
        assert ctl.store.saves == saves + 1  # type: ignore[attr-defined]
        first = {
            "kind": "keep",
            "state": "awake",
            "until": now + 3600,
            "reason": "first",
            "created": now,
        }
        assert ctl.state["overrides"] == {f"sim/{cid}": first}

        def refuse(value: Any) -> None:
            raise StateNotSaved("disk full")

        monkeypatch.setattr(ctl.store, "save", refuse)
        # A replacement or a clearing that cannot be saved leaves the override in place...
        with pytest.raises(StateNotSaved):
            ctl.set_override(cid, None, until, "second")
        assert ctl.state["overrides"] == {f"sim/{cid}": first}
        with pytest.raises(StateNotSaved):
            ctl.clear_override(cid)
        assert ctl.state["overrides"] == {f"sim/{cid}": first}
        # ...and a first override that cannot be saved leaves none.
        ctl.state["overrides"].clear()
        with pytest.raises(StateNotSaved):
            ctl.set_override(cid, "hibernated", until, "third")
        assert ctl.state["overrides"] == {}
        await ctl.close()
