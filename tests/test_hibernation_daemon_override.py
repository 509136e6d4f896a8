"""``hibernate CLUSTER --until T`` while a daemon runs with the same state file: the daemon takes
the override in (its metric, its plan) and keeps it through its own saves.

Real processes: ``cce-exporter simulate``, ``cce-exporter run`` and the command, each stopped by
its PID; every wait polls with a deadline.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SimProcess, stop_process
from tests.test_cli import CLI, clean_env, read_until, run_cli

DEADLINE = 60.0
UNTIL = "2099-01-01T00:00:00Z"
UNTIL_TS = 4070908800.0
TOKEN = "hook-token-for-the-test"


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        stop_process(process)


def overrides(state: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(state.read_text())["sections"]["hibernation"]["overrides"]
    return found


def poll(what: str, check: Callable[[], Any]) -> Any:
    end = time.monotonic() + DEADLINE
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < end, f"not in time: {what}"
        time.sleep(0.2)


def override_sample(metrics: str, name: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith("cce_hibernation_override_until_timestamp_seconds{") and (
            f'cluster="{name}"' in line and 'state="hibernated"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_running_daemon_takes_in_the_commands_override_and_keeps_it(
    start_simulator: Callable[..., SimProcess],
    daemons: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    sim = start_simulator(
        "--seed", "7", "--clusters", "3", "--nodes-per-cluster", "1", "--transition-seconds", "1"
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "policies:\n"
        "  - name: office\n"
        "    clusters: {names: ['sim-cluster-*']}\n"
        "    awake: ['Mon-Sun 00:00-24:00']\n"
        "controller: {poll_seconds: 0.5, retry_backoff_seconds: 0}\n"
    )
    state = tmp_path / "state.json"
    env = clean_env(
        **sim.settings,
        CCE_EXPORTER_LISTEN="127.0.0.1:0",
        CCE_EXPORTER_STATE_FILE=str(state),
        CCE_EXPORTER_POLICY_FILE=str(policy),
        CCE_EXPORTER_HOOK_TOKEN=TOKEN,
    )
    daemon = subprocess.Popen(
        [CLI, "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    daemons.append(daemon)
    match, _ = read_until(daemon, r"listening on (http://\S+)", stderr=True, deadline=DEADLINE)
    http = httpx.Client(
        base_url=match.group(1), timeout=10.0, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with http:
        plan = poll(
            "the daemon governs the clusters",
            lambda: [
                row
                for row in http.get("/hooks/plan").json()["clusters"]
                if row["phase"] == "Available"
            ],
        )
        name, other = plan[0]["cluster"], plan[-1]["cluster"]
        assert name != other
        assert override_sample(http.get("/metrics").text, name) is None

        result = run_cli("hibernate", name, "--until", UNTIL, env=env, timeout=DEADLINE)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"kept hibernated until {UNTIL[:10]}" in result.stdout

        # The daemon takes it in: its metric and its plan show the override.
        poll(
            "the override in the daemon's metrics",
            lambda: override_sample(http.get("/metrics").text, name) == UNTIL_TS,
        )
        row = next(r for r in http.get("/hooks/plan").json()["clusters"] if r["cluster"] == name)
        assert row["override"]["kind"] == "keep_hibernated"
        assert row["override"]["until"] == UNTIL
        assert row["desired"] == "hibernated"

        # A change of the daemon's own is saved with the command's override, not over it.
        answer = http.post(f"/hooks/clusters/{other}/skip", json={"reason": "test"})
        assert answer.status_code == 200, answer.text
        by_kind = {o["kind"]: o for o in overrides(state).values()}
        assert set(by_kind) == {"keep", "skip"}
        assert by_kind["keep"]["until"] == UNTIL_TS
    # The daemon's last save, on SIGTERM, keeps it too.
    assert stop_process(daemon, timeout=30) == 0
    assert sorted(o["kind"] for o in overrides(state).values()) == ["keep", "skip"]
