"""State that cannot poison the daemon.

* A state file with mistyped entries loses those entries (one WARNING each, naming it) and keeps
  the rest; the controller then ticks and plans as usual.
* An action cut short by a shutdown (its ``in_flight`` record left behind) is resolved after the
  restart from the cluster's phase, and its result recorded.
* A hook whose change cannot be saved answers 503 with the reason, and the change is not made.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from exporter.assemble import TargetBuilder
from exporter.collect.service import ExporterService
from exporter.collect.statefile import StateFile
from exporter.config import load_settings
from exporter.hibernation.controller import (
    ControllerTarget,
    HibernationController,
    ServiceStateStore,
)
from exporter.simulator import Simulator
from tests.test_e2e_exporter import until
from tests.test_hibernation_controller import START, environment
from tests.test_hibernation_hooks import TOKEN, auth, serving

NIGHTLY = """
policies:
  - name: nightly
    clusters: {names: ["dev-*"]}
    schedules: [{hibernate: "30 2 * * *"}]
"""


def poisoned(cid: str) -> dict[str, Any]:
    """A hibernation section with one good entry and one mistyped entry of every kind."""
    good_until = START.timestamp() + 86400
    return {
        "handled": {"sim/yesterday": "yesterday", f"sim/{cid}": START.timestamp() - 60},
        "overrides": {
            "sim/as-text": "keep it awake please",
            "sim/never": {"kind": "keep", "state": "awake", "until": "never", "created": 0},
            "sim/inf": {"kind": "keep", "state": "awake", "until": 1e300, "created": 0},
            f"sim/{cid}": {
                "kind": "keep",
                "state": "awake",
                "until": good_until,
                "reason": "demo",
                "created": START.timestamp() - 60,
            },
        },
        "history": {
            f"sim/{cid}": [
                {"at": 1.0, "action": "awake", "result": "success", "reason": "", "source": "x"},
                {"at": "noon", "action": "awake", "result": "success"},
            ],
            "sim/not-a-list": "oops",
        },
        "in_flight": {"sim/bad": {"action": "sleep", "started": 0}},
    }


def test_the_state_file_drops_mistyped_entries_and_keeps_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.json"
    sections = {
        "hibernation": poisoned("c1"),
        "phases": {"default": {"cluster/a": ["Available", 100.0], "cluster/b": ["Available", "x"]}},
        "jobs": {
            "default": {
                "j1": {"cluster_id": "c1", "discovered_at": 5.0},
                "j2": {"cluster_id": 7, "discovered_at": 5.0},
            }
        },
        "leader": {"kept": "as is"},
    }
    path.write_text(json.dumps({"version": 1, "saved_at": 0, "sections": sections}))
    with caplog.at_level(logging.WARNING, logger="exporter.collect.statefile"):
        loaded = StateFile(path).load()
    hib = loaded["hibernation"]
    assert set(hib["handled"]) == {"sim/c1"}
    assert set(hib["overrides"]) == {"sim/c1"}
    assert hib["overrides"]["sim/c1"]["reason"] == "demo"
    assert [e["at"] for e in hib["history"]["sim/c1"]] == [1.0] and "sim/not-a-list" not in hib[
        "history"
    ]
    assert hib["in_flight"] == {}
    assert loaded["phases"] == {"default": {"cluster/a": ["Available", 100.0]}}
    assert set(loaded["jobs"]["default"]) == {"j1"}
    assert loaded["leader"] == {"kept": "as is"}
    # One WARNING per dropped entry, each naming it.
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    named = [
        "hibernation.handled['sim/yesterday']",
        "hibernation.overrides['sim/as-text']",
        "hibernation.overrides['sim/never']",
        "hibernation.overrides['sim/inf']",
        "hibernation.history['sim/c1'][1]",
        "hibernation.history['sim/not-a-list']",
        "hibernation.in_flight['sim/bad']",
        "phases.default['cluster/b']",
        "jobs.default['j2']",
    ]
    assert len(messages) == len(named), messages
    for name in named:
        assert sum(name in m for m in messages) == 1, (name, messages)


async def test_a_poisoned_state_neither_breaks_the_tick_nor_the_plan() -> None:
    async with environment(["dev-a", "dev-b"], NIGHTLY) as env:
        cid = env.ids["dev-a"]
        env.store.value = poisoned(cid)
        ctl = env.controller()
        await ctl.tick()
        plan = ctl.plan(days=2)
        rows = {row["cluster"]: row for row in plan["clusters"]}
        assert rows["dev-a"]["override"]["kind"] == "keep_awake"
        assert rows["dev-b"]["override"] is None
        # The valid override keeps dev-a awake through the night; dev-b is hibernated.
        env.at(START.replace(hour=2, minute=31))
        outcomes = {o.cluster: o.result for o in await ctl.tick()}
        assert outcomes == {"dev-a": "skipped", "dev-b": "started"}
        await ctl.wait_idle()
        await ctl.close()


async def test_an_action_cut_short_by_a_shutdown_is_resolved_after_the_restart() -> None:
    async with environment(["dev-a"], NIGHTLY) as env:
        cid = env.ids["dev-a"]
        parked = asyncio.Event()

        async def stuck(seconds: float) -> None:
            await parked.wait()  # the first poll after the call never comes back

        target = ControllerTarget("sim", env.api, env.sim.credentials.project_id)
        first = HibernationController(
            env.policies, [target], store=env.store, clock=env.sim.clock.now, sleep=stuck
        )
        await first.tick()
        assert (await first.request(cid, "hibernate")).result == "started"
        await until(lambda: env.api.calls, "the hibernate call")
        await first.close()  # the shutdown: SIGTERM while the action is being followed
        assert set(env.store.value["in_flight"]) == {f"sim/{cid}"}
        assert env.store.value["history"] == {}

        env.sim.advance(600)  # the cluster went on hibernating while the exporter was down
        second = env.controller()
        await second.tick()
        await second.wait_idle()
        assert env.store.value["in_flight"] == {}
        last = env.store.value["history"][f"sim/{cid}"][-1]
        assert (last["action"], last["result"], last["source"]) == (
            "hibernate",
            "success",
            "restart",
        )
        assert "interrupted by a shutdown" in last["reason"]
        labels = {"cluster": "dev-a", "action": "hibernate", "result": "success"}
        value = second.registry.get_sample_value(
            "cce_hibernation_actions_total",
            {"project_id": env.sim.credentials.project_id, "cluster_id": cid, **labels},
        )
        assert value == 1.0
        assert len(env.api.calls) == 1  # the call is never repeated
        await second.close()


async def test_an_interrupted_action_that_did_not_happen_is_recorded_failed() -> None:
    async with environment(["dev-a"], NIGHTLY) as env:
        cid = env.ids["dev-a"]
        env.store.value = {
            "in_flight": {
                f"sim/{cid}": {"action": "hibernate", "started": START.timestamp(), "attempt": 1}
            }
        }
        ctl = env.controller()
        await ctl.tick()
        await ctl.wait_idle()
        last = env.store.value["history"][f"sim/{cid}"][-1]
        assert last["result"] == "failed" and "the cluster is Available" in last["reason"]
        assert env.store.value["in_flight"] == {} and env.api.calls == []
        await ctl.close()


@pytest.mark.simulator(clusters=0, nodes_per_cluster=0, seed=5)
async def test_a_hook_whose_change_cannot_be_saved_answers_503(
    simulator: Simulator, tmp_path: Path
) -> None:
    cid = simulator.world.add_cluster(name="dev-a", phase="Available", flavor="cce.s1.small").uid
    env = dict(simulator.settings)
    env["CCE_EXPORTER_STATE_FILE"] = str(tmp_path / "state.json")
    service = ExporterService(load_settings(None, env), build_targets=TargetBuilder())
    await service.setup()
    try:
        assert service.statefile is not None
        # The state directory is gone and cannot be made again (its parent is a plain file).
        blocker = tmp_path / "blocker"
        blocker.write_text("")
        service.statefile.path = blocker / "dir" / "state.json"
        from exporter.hibernation.policy import parse_policy_file

        ctl = HibernationController(
            parse_policy_file(NIGHTLY),
            [
                ControllerTarget(
                    "default", service.targets[0].client, simulator.credentials.project_id
                )
            ],  # type: ignore[arg-type]
            store=ServiceStateStore(service),
        )
        await ctl.tick()
        async with serving(ctl, TOKEN) as http:
            skip = await http.post(f"/hooks/clusters/{cid}/skip", headers=auth())
            assert skip.status_code == 503, skip.text
            assert "could not be saved" in skip.json()["error"]
            assert "state.json" in skip.json()["error"]
            keep = await http.post(
                f"/hooks/clusters/{cid}/awake",
                headers=auth(),
                json={"until": (datetime.now(UTC) + timedelta(days=2)).isoformat()},
            )
            assert keep.status_code == 503, keep.text
            assert ctl.state["overrides"] == {}
            assert ctl.plan()["clusters"][0]["override"] is None
        await ctl.close()
    finally:
        await service.close()
