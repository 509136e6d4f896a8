"""A running controller takes in the overrides another process wrote to its state file.

The other process here is what ``hibernate|awake --until`` runs: a controller of its own over
``StateFileStore`` (the command's store). The daemon's side is the real ``ExporterService`` and
its timer, in real time (its waits shortened).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from exporter.assemble import TargetBuilder
from exporter.collect.service import ExporterService
from exporter.config import load_settings
from exporter.hibernation.cli import StateFileStore
from exporter.hibernation.controller import (
    ControllerTarget,
    HibernationController,
    MemoryStateStore,
    ServiceStateStore,
)
from exporter.hibernation.policy import parse_policy_file
from exporter.hibernation.timer import STATE_POLL
from exporter.simulator import Simulator
from tests.test_e2e_exporter import until

ALWAYS_AWAKE = """
policies:
  - name: office
    clusters: {names: ["dev-*"]}
    awake: ["Mon-Sun 00:00-24:00"]
"""


def on_disk(path: Path) -> dict[str, Any]:
    overrides: dict[str, Any] = json.loads(path.read_text())["sections"]["hibernation"]["overrides"]
    return overrides


@pytest.mark.simulator(clusters=0, nodes_per_cluster=0, seed=5)
async def test_the_timer_takes_in_an_override_written_by_another_process(
    simulator: Simulator, tmp_path: Path
) -> None:
    ids = {
        n: simulator.world.add_cluster(name=n, phase="Available", flavor="cce.s1.small").uid
        for n in ("dev-a", "dev-b")
    }
    path = tmp_path / "state.json"
    env = dict(simulator.settings, CCE_EXPORTER_STATE_FILE=str(path))
    service = ExporterService(load_settings(None, env), build_targets=TargetBuilder())
    await service.setup()
    policies = parse_policy_file(ALWAYS_AWAKE)
    client = service.targets[0].client
    target = ControllerTarget("default", client, simulator.credentials.project_id)

    async def short(seconds: float) -> None:
        # The timer's waits between two looks at the file (STATE_POLL, two seconds) shortened;
        # any longer wait (the timer's own, up to the next tick) kept, so the override must
        # come in through the looks between the waits.
        await asyncio.sleep(0.05 if seconds <= STATE_POLL else seconds)

    daemon = HibernationController(
        policies, [target], store=ServiceStateStore(service), sleep=short
    )
    command = HibernationController(policies, [target], store=StateFileStore(path))
    until_a = datetime.now(UTC) + timedelta(days=2)
    until_b = datetime.now(UTC) + timedelta(days=3)
    try:
        await daemon.tick()
        daemon.start_timer()
        # The daemon's own override of dev-b, then the command's of dev-a, in that order.
        assert daemon.set_override("dev-b", "awake", until_b, "daemon") is None
        await command.refresh()
        assert command.set_override("dev-a", "hibernated", until_a, "command") is None
        assert set(on_disk(path)) == {f"default/{ids['dev-a']}", f"default/{ids['dev-b']}"}
        # A save by the service before the daemon took it in keeps it.
        assert service.save_state()
        assert f"default/{ids['dev-a']}" in on_disk(path)

        key_a = f"default/{ids['dev-a']}"
        await until(lambda: key_a in daemon.state["overrides"], "the daemon took it in")
        assert daemon.state["overrides"][key_a]["until"] == until_a.timestamp()
        sample = daemon.registry.get_sample_value(
            "cce_hibernation_override_until_timestamp_seconds",
            {
                "project_id": simulator.credentials.project_id,
                "cluster_id": ids["dev-a"],
                "cluster": "dev-a",
                "state": "hibernated",
            },
        )
        assert sample == until_a.timestamp()
        row = next(r for r in daemon.plan()["clusters"] if r["cluster"] == "dev-a")
        assert row["override"]["kind"] == "keep_hibernated"

        # The command clears it again (what DELETE /hooks/... does, from the other process):
        # the daemon follows, and its next save does not bring it back.
        command = HibernationController(policies, [target], store=StateFileStore(path))
        await command.refresh()
        assert command.clear_override("dev-a")
        await until(lambda: key_a not in daemon.state["overrides"], "the daemon took it in")
        assert daemon.set_override("dev-b", "hibernated", until_b, "daemon again") is None
        assert set(on_disk(path)) == {f"default/{ids['dev-b']}"}
        assert on_disk(path)[f"default/{ids['dev-b']}"]["state"] == "hibernated"
    finally:
        await daemon.close()
        await command.close()
        await service.close()
    assert set(on_disk(path)) == {f"default/{ids['dev-b']}"}


class BrokenReload(MemoryStateStore):
    """A store whose look at the other process's changes fails."""

    def reload(self) -> Any:
        raise RuntimeError("the state file vanished mid-read")


async def test_a_failing_look_at_the_state_file_stops_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = BrokenReload({"overrides": {}, "handled": {}, "in_flight": {}, "history": {}})
    ctl = HibernationController(parse_policy_file(ALWAYS_AWAKE), [], store=store)
    assert ctl.reload_state() is False
    assert await ctl.tick() == []
    assert "reading the state another process wrote failed" in caplog.text
    await ctl.close()
