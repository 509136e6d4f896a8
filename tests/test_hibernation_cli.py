"""``cce-exporter plan`` and ``hibernate``/``awake`` against the simulator."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from exporter.cce.auth import AkSkAuth
from exporter.cce.client import CCEClient
from exporter.hibernation.cli import (
    add_action_arguments,
    add_plan_arguments,
    run_action,
    run_plan,
)
from exporter.hibernation.controller import ControllerTarget, MemoryStateStore
from exporter.simulator import SimulatorConfig
from exporter.simulator.server import Simulator, serve

POLICY = """
policies:
  - name: berlin
    clusters: {names: ["dev-*"], exclude: ["dev-critical"]}
    timezone: Europe/Berlin
    awake: ["Mon-Fri 08:00-20:00"]
  - name: newyork
    clusters: {names: ["ny-*"]}
    timezone: America/New_York
    schedules: [{hibernate: "0 18 * * 1-5", awake: "30 2 * * 0"}]
controller: {poll_seconds: 1}
"""


class Settings:
    def __init__(self, policy_file: Path) -> None:
        self.policy_file = policy_file
        self.dry_run = False
        self.state_file = None
        self.targets: list[Any] = []


def parse(add: Any, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def factory(sim: Simulator) -> Any:
    def build(_: Any) -> list[ControllerTarget]:
        c = sim.credentials
        client = CCEClient(
            sim.base_url, AkSkAuth(c.ak, c.sk, project_id=c.project_id), c.project_id
        )
        return [ControllerTarget("sim", client, c.project_id)]

    return build


def run_with_sim(fn: Any, transition_seconds: float = 60.0) -> Any:
    """Serve a simulator in a thread's event loop while ``fn(sim)`` runs the CLI (which owns
    its own event loop, as on the command line)."""
    import asyncio
    import threading

    ready = threading.Event()
    stop: dict[str, Any] = {}
    box: dict[str, Any] = {}

    def serve_thread() -> None:
        async def main() -> None:
            config = SimulatorConfig(
                clusters=0, nodes_per_cluster=0, seed=4, transition_seconds=transition_seconds
            )
            sim = Simulator(config)
            async with serve(sim):
                box["sim"] = sim
                stop["event"] = asyncio.Event()
                stop["loop"] = asyncio.get_running_loop()
                ready.set()
                await stop["event"].wait()

        asyncio.run(main())

    thread = threading.Thread(target=serve_thread)
    thread.start()
    try:
        assert ready.wait(30), "the simulator did not start"
        return fn(box["sim"])
    finally:
        if "loop" in stop:
            stop["loop"].call_soon_threadsafe(stop["event"].set)
        thread.join(30)


def test_plan_json_against_hand_computed_instants(policy_file: Path) -> None:
    def body(sim: Simulator) -> tuple[int, str, str]:
        for name in ("dev-a", "dev-critical", "ny-a", "prod"):
            sim.world.add_cluster(name=name, phase="Available")
        out, err = io.StringIO(), io.StringIO()
        args = parse(
            add_plan_arguments,
            ["--from", "2027-03-26T12:00:00Z", "--days", "3", "--output", "json"],
        )
        code = run_plan(args, Settings(policy_file), targets=factory(sim), out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    code, out, err = run_with_sim(body)
    assert code == 0, err
    rows = [
        (r["cluster"], r["policy"], r["action"], r["at"]) for r in json.loads(out)["transitions"]
    ]
    assert rows == [
        ("dev-a", "berlin", "hibernate", "2027-03-26T19:00:00Z"),  # Fri 20:00 CET
        ("ny-a", "newyork", "hibernate", "2027-03-26T22:00:00Z"),  # Fri 18:00 EDT
        ("ny-a", "newyork", "awake", "2027-03-28T06:30:00Z"),  # Sun 02:30 EDT
        ("dev-a", "berlin", "awake", "2027-03-29T06:00:00Z"),  # Mon 08:00 CEST (after DST)
    ]
    assert all(
        set(r) == {"cluster_id", "cluster", "policy", "action", "at", "dry_run"}
        for r in json.loads(out)["transitions"]
    )


def test_plan_table_and_policy_errors(policy_file: Path, tmp_path: Path) -> None:
    def body(sim: Simulator) -> str:
        sim.world.add_cluster(name="dev-a", phase="Available")
        out = io.StringIO()
        args = parse(add_plan_arguments, ["--from", "2027-03-26T12:00:00Z", "--days", "1"])
        assert run_plan(args, Settings(policy_file), targets=factory(sim), out=out) == 0
        return out.getvalue()

    table = run_with_sim(body)
    assert (
        "dev-a" in table and "Fri 2027-03-26 20:00 CET" in table and "2027-03-26T19:00:00Z" in table
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies: [{name: x, clusters: {names: [a]}, awake: ['Someday']}]")
    err = io.StringIO()
    args = parse(add_plan_arguments, [])
    assert run_plan(args, Settings(bad), targets=lambda _: [], err=err) == 2
    assert "policy 'x', field awake" in err.getvalue()


def test_hibernate_command_waits_and_reports(policy_file: Path) -> None:
    store = MemoryStateStore()

    def body(sim: Simulator) -> list[tuple[int, str]]:
        sim.world.add_cluster(name="dev-a", phase="Available")
        sim.world.add_cluster(name="prod", phase="Available")
        results = []
        for argv, action in (
            (["dev-a", "--dry-run"], "hibernate"),
            (["dev-a", "--until", "2099-01-01T00:00:00Z"], "hibernate"),
            (["prod"], "hibernate"),
            (["nothing-here"], "awake"),
        ):
            out, err = io.StringIO(), io.StringIO()
            args = parse(add_action_arguments, argv)
            code = run_action(
                args,
                Settings(policy_file),
                action,
                targets=factory(sim),
                store=store,
                out=out,
                err=err,
            )
            results.append((code, out.getvalue() + err.getvalue()))
        return results

    # The simulator runs on real time here: a short transition keeps the wait short.
    dry, done, refused, missing = run_with_sim(body, transition_seconds=2.5)
    assert dry[0] == 0 and "dry_run" in dry[1]
    assert done[0] == 0, done[1]
    assert "Hibernating" in done[1] and "hibernate dev-a: success" in done[1]
    assert "kept hibernated until 2099-01-01" in done[1]
    overrides = list(store.value["overrides"].values())
    assert overrides[0]["state"] == "hibernated"
    assert refused[0] == 3 and "no policy selects" in refused[1]
    assert missing[0] == 3 and "no cluster named" in missing[1]
