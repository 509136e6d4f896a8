"""The command line's rough edges: errors that name the right thing, refusals that say why.

Each test runs the real ``cce-exporter`` console script (against a ``simulate`` process where an
API is needed) and checks exit codes and what is printed.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from exporter.cce.models import Cluster
from exporter.hibernation.controller import HibernationController, MemoryStateStore
from exporter.hibernation.policy import parse_policy_file
from tests.conftest import SimProcess, stop_process

CLI = str(Path(sys.executable).with_name("cce-exporter"))
DEADLINE = 60.0


def env_with(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCE_EXPORTER_")}
    env.update(settings)
    return env


#: A complete configuration whose API is never reached (nothing listens on port 1).
OFFLINE = {
    "CCE_EXPORTER_ENDPOINT": "http://127.0.0.1:1",
    "CCE_EXPORTER_AK": "AKAKAKAKAKAK",
    "CCE_EXPORTER_SK": "SKSKSKSKSKSKSKSK",
    "CCE_EXPORTER_PROJECT_ID": "0" * 32,
}


def run(
    *args: str, env: Mapping[str, str], timeout: float = 90.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )


def api_calls(sim: SimProcess, kind: str | None = None) -> int:
    state = httpx.get(sim.base_url + "/_sim/state", timeout=10.0).json()
    requests = state["requests"]
    return int(requests.get(kind, 0) if kind else sum(requests.values()))


def cluster_phase(sim: SimProcess, name: str) -> str:
    from tests.conftest import SignAuth

    auth = SignAuth(sim.settings["CCE_EXPORTER_AK"], sim.settings["CCE_EXPORTER_SK"])
    project = sim.settings["CCE_EXPORTER_PROJECT_ID"]
    with httpx.Client(base_url=sim.base_url, auth=auth, timeout=10.0) as http:
        items = http.get(f"/api/v3/projects/{project}/clusters").json()["items"]
    return str(next(c for c in items if c["metadata"]["name"] == name)["status"]["phase"])


@pytest.fixture
def sim(start_simulator: Callable[..., SimProcess]) -> SimProcess:
    return start_simulator(
        "--seed", "7", "--clusters", "6", "--nodes-per-cluster", "1", "--transition-seconds", "2"
    )


def policy(tmp_path: Path, names: str, *, dry_run: bool = False) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "policies:\n"
        "  - name: office\n"
        f"    clusters: {{names: [{names}]}}\n"
        "    awake: ['Mon-Sun 00:00-24:00']\n"
        f"    dry_run: {str(dry_run).lower()}\n"
        "controller: {poll_seconds: 0.5, retry_backoff_seconds: 0}\n"
    )
    return path


# --- configuration errors --------------------------------------------------------------------


def test_a_bad_boolean_lists_the_accepted_values() -> None:
    result = run("check-config", env=env_with(**OFFLINE, CCE_EXPORTER_INSECURE_SKIP_VERIFY="maybe"))
    assert result.returncode == 2
    assert "CCE_EXPORTER_INSECURE_SKIP_VERIFY" in result.stderr
    assert "accepted values: true/false, yes/no, on/off, 1/0" in result.stderr


def test_a_bad_log_level_flag_is_blamed_on_the_flag() -> None:
    result = run("check-config", "--log-level", "LOUD", env=env_with(**OFFLINE))
    assert result.returncode == 2
    assert "argument --log-level: invalid log level 'LOUD'" in result.stderr
    assert "CCE_EXPORTER_LOG_LEVEL" not in result.stderr
    # The same value in the environment is blamed on the variable.
    result = run("check-config", env=env_with(**OFFLINE, CCE_EXPORTER_LOG_LEVEL="LOUD"))
    assert result.returncode == 2 and "CCE_EXPORTER_LOG_LEVEL" in result.stderr
    # A good flag in any case is taken.
    result = run("check-config", "--log-level", "debug", env=env_with(**OFFLINE))
    assert result.returncode == 0 and "log_level: DEBUG" in result.stdout
    result = run("check-config", "--log-level", "warn", env=env_with(**OFFLINE))
    assert result.returncode == 0 and "log_level: WARNING" in result.stdout


def test_project_id_and_name_together_are_refused() -> None:
    result = run("check-config", env=env_with(**OFFLINE, CCE_EXPORTER_PROJECT_NAME="ap-1"))
    assert result.returncode == 2
    assert (
        "CCE_EXPORTER_PROJECT_ID and CCE_EXPORTER_PROJECT_NAME (project_id / project_name) "
        "are both set: set only one" in result.stderr
    )


def test_policy_errors_come_one_per_line_with_suggestions(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "policies:\n"
        "  - name: office\n"
        "    clusters: {names: [a], exlude: [b]}\n"
        "    timezon: UTC\n"
        "    awake: ['Mon 08:00-09:00']\n"
        "controler: {}\n"
    )
    result = run("plan", env=env_with(**OFFLINE, CCE_EXPORTER_POLICY_FILE=str(path)))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert (
        "  - policy 'office', field clusters.exlude: unknown key 'exlude' (did you mean exclude?)"
        in lines
    )
    assert (
        "  - policy 'office', field timezon: unknown key 'timezon' (did you mean timezone?)"
        in lines
    )
    assert "  - controler: unknown key 'controler' (did you mean controller?)" in lines
    assert "Extra inputs are not permitted" not in result.stderr
    assert ";" not in result.stderr


# --- plan ------------------------------------------------------------------------------------


@pytest.mark.parametrize("days", ["-1", "0", "nan", "inf", "400", "soon"])
def test_plan_refuses_a_period_that_is_not_positive(days: str, tmp_path: Path) -> None:
    env = env_with(**OFFLINE, CCE_EXPORTER_POLICY_FILE=str(policy(tmp_path, "a")))
    result = run("plan", "--days", days, env=env)
    assert result.returncode == 2
    assert "argument --days" in result.stderr
    assert "no transitions" not in result.stdout


def test_plan_table_marks_dry_run_policies(sim: SimProcess, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "policies:\n"
        "  - {name: live, clusters: {names: [sim-cluster-000]}, awake: ['Mon-Fri 08:00-20:00']}\n"
        "  - {name: trial, clusters: {names: [sim-cluster-001]}, awake: ['Mon-Fri 08:00-20:00'],"
        " dry_run: true}\n"
    )
    env = env_with(**sim.settings, CCE_EXPORTER_POLICY_FILE=str(path))
    result = run("plan", "--days", "3", "--from", "2027-03-26T12:00:00Z", env=env)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("sim-")}
    assert "trial (dry run)" in rows["sim-cluster-001"]
    assert "(dry run)" not in rows["sim-cluster-000"]
    data = json.loads(
        run("plan", "--from", "2027-03-26T12:00:00Z", "--output", "json", env=env).stdout
    )
    dry = {t["cluster"]: t["dry_run"] for t in data["transitions"]}
    assert dry == {"sim-cluster-000": False, "sim-cluster-001": True}


class FakeAPI:
    def __init__(self, phase: str) -> None:
        self.cluster = Cluster.model_validate(
            {"metadata": {"uid": "c1", "name": "dev-a"}, "status": {"phase": phase}}
        )

    async def list_clusters(self) -> list[Cluster]:
        return [self.cluster]

    async def get_cluster(self, cluster_id: str) -> Cluster:
        return self.cluster

    async def hibernate(self, cluster_id: str) -> str | None:
        return None

    async def awake(self, cluster_id: str) -> str | None:
        return None


async def test_plan_json_history_is_rfc3339_and_desired_follows_a_keep_override() -> None:
    from datetime import UTC, datetime, timedelta

    from exporter.hibernation.controller import ControllerTarget

    policies = parse_policy_file(
        "policies: [{name: office, clusters: {names: [dev-*]}, awake: ['Mon-Sun 00:00-24:00']}]"
    )
    now = datetime(2027, 3, 26, 12, 0, tzinfo=UTC).timestamp()
    controller = HibernationController(
        policies,
        [ControllerTarget("t", FakeAPI("Available"))],
        store=MemoryStateStore(),
        clock=lambda: now,
    )
    await controller.tick()
    assert controller.plan()["clusters"][0]["desired"] == "awake"
    until = datetime.fromtimestamp(now, UTC) + timedelta(hours=5)
    assert controller.set_override("dev-a", "hibernated", until, "maintenance") is None
    await controller.request("dev-a", "awake", source="test")  # recorded: already Available
    await controller.wait_idle()
    row = controller.plan()["clusters"][0]
    assert row["desired"] == "hibernated" and row["policy_desired"] == "awake"
    assert row["history"], row
    for entry in row["history"]:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", entry["at"]), entry
    assert all(re.fullmatch(r".*T.*Z", n["at"]) for n in row["next"])
    await controller.close()


# --- one-off actions ---------------------------------------------------------------------------


def test_action_help_explains_policies_and_force() -> None:
    for action in ("hibernate", "awake"):
        result = run(action, "--help", env=env_with())
        assert result.returncode == 0
        text = " ".join(result.stdout.split())
        assert "--force" in text and "no policy selects" in text
        assert "--until" in text and "state file" in text


def test_until_without_a_state_file_is_refused(sim: SimProcess, tmp_path: Path) -> None:
    env = env_with(
        **sim.settings, CCE_EXPORTER_POLICY_FILE=str(policy(tmp_path, "sim-cluster-00*"))
    )
    before = api_calls(sim, "hibernate")
    result = run("hibernate", "sim-cluster-000", "--until", "2099-01-01T00:00:00Z", env=env)
    assert result.returncode == 2
    assert "--until needs a state file (CCE_EXPORTER_STATE_FILE)" in result.stderr
    assert "kept hibernated" not in result.stdout
    assert api_calls(sim, "hibernate") == before
    # With a state file the override is kept there.
    state = tmp_path / "state.json"
    name = next(
        n for n in (f"sim-cluster-00{i}" for i in range(6)) if cluster_phase(sim, n) == "Available"
    )
    result = run(
        "hibernate",
        name,
        "--until",
        "2099-01-01T00:00:00Z",
        env={**env, "CCE_EXPORTER_STATE_FILE": str(state)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kept hibernated until 2099-01-01" in result.stdout
    overrides = json.loads(state.read_text())["sections"]["hibernation"]["overrides"]
    assert [o["state"] for o in overrides.values()] == ["hibernated"]


def test_force_acts_on_a_cluster_no_policy_selects(sim: SimProcess, tmp_path: Path) -> None:
    name = next(
        n for n in (f"sim-cluster-00{i}" for i in range(6)) if cluster_phase(sim, n) == "Available"
    )
    # Without a policy file: refused, and --force is named.
    result = run("hibernate", name, env=env_with(**sim.settings))
    assert result.returncode == 2
    assert "no policy file configured" in result.stderr and "--force" in result.stderr
    # A policy that selects other clusters: refused, with the hint.
    env = env_with(**sim.settings, CCE_EXPORTER_POLICY_FILE=str(policy(tmp_path, "nothing-*")))
    result = run("hibernate", name, env=env)
    assert result.returncode == 3
    assert "no policy selects" in result.stdout and "use --force" in result.stdout
    assert cluster_phase(sim, name) == "Available"
    # --force: a confirmation line, then the action, followed to its end.
    before = api_calls(sim, "hibernate")
    result = run("hibernate", name, "--force", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"--force: no policy selects {name}; acting on it once" in result.stdout
    assert f"hibernate {name}: success" in result.stdout
    assert api_calls(sim, "hibernate") == before + 1
    assert cluster_phase(sim, name) == "Hibernation"
    # By ID too, without any policy file, and back awake.
    from tests.conftest import SignAuth

    auth = SignAuth(sim.settings["CCE_EXPORTER_AK"], sim.settings["CCE_EXPORTER_SK"])
    project = sim.settings["CCE_EXPORTER_PROJECT_ID"]
    with httpx.Client(base_url=sim.base_url, auth=auth, timeout=10.0) as http:
        items = http.get(f"/api/v3/projects/{project}/clusters").json()["items"]
    cid = next(c["metadata"]["uid"] for c in items if c["metadata"]["name"] == name)
    result = run("awake", cid, "--force", "--dry-run", env=env_with(**sim.settings))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--force: no policy selects" in result.stdout and "dry_run" in result.stdout
    assert cluster_phase(sim, name) == "Hibernation"


# --- collection and the demo -------------------------------------------------------------------


def test_once_with_a_wrong_sk_reports_no_resource_successful(sim: SimProcess) -> None:
    env = env_with(**{**sim.settings, "CCE_EXPORTER_SK": "x" * 40, "CCE_EXPORTER_MAX_RETRIES": "0"})
    result = run("once", env=env)
    assert result.returncode == 1
    success = dict(
        re.findall(
            r'^cce_exporter_collect_success\{[^}]*resource="(\w+)"\} (\S+)$', result.stdout, re.M
        )
    )
    assert success, result.stdout[-2000:]
    assert success.get("jobs") == "0", success
    assert set(success.values()) == {"0"}, success
    assert "x" * 40 not in result.stdout + result.stderr


def read_until(process: subprocess.Popen[bytes], pattern: str, deadline: float) -> str:
    assert process.stdout is not None
    fd = process.stdout.fileno()
    buffer = b""
    end = time.monotonic() + deadline
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not re.search(pattern, buffer.decode(errors="replace")):
            remaining = end - time.monotonic()
            assert remaining > 0, f"no {pattern!r} in time; got {buffer[-2000:]!r}"
            if selector.select(remaining):
                chunk = os.read(fd, 65536)
                assert chunk, f"exited ({process.poll()}): {buffer!r}"
                buffer += chunk
    return buffer.decode(errors="replace")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_demo_on_a_busy_port_says_so(busy_port: int) -> None:
    demo = subprocess.Popen(
        [
            CLI,
            "demo",
            "--listen",
            f"127.0.0.1:{busy_port}",
            "--clusters",
            "2",
            "--nodes-per-cluster",
            "1",
            "--no-policy",
        ],
        env=env_with(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        banner = read_until(demo, r"Press Ctrl-C", DEADLINE)
        assert f"WARNING: port {busy_port} on 127.0.0.1 is busy" in banner
        status = re.search(r"status page\s+http://127\.0\.0\.1:(\d+)/\s+\(NOT port (\d+)", banner)
        assert status is not None, banner
        assert int(status.group(1)) != busy_port and int(status.group(2)) == busy_port
        os.kill(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=30) == 0
    finally:
        stop_process(demo)


def test_a_more_specific_project_setting_replaces_the_other(tmp_path: Path) -> None:
    from exporter.config import ConfigError, load_settings

    config = tmp_path / "config.yaml"
    config.write_text(
        "endpoint: http://127.0.0.1:1\nak: AKAKAKAK\nsk: SKSKSKSKSK\nproject_id: p-file\n"
    )
    settings = load_settings(config, {"CCE_EXPORTER_PROJECT_NAME": "ap-1"})
    assert (settings.targets[0].project_id, settings.targets[0].project_name) == (None, "ap-1")
    config.write_text(config.read_text() + "project_name: ap-2\n")
    with pytest.raises(ConfigError, match="are both set: set only one"):
        load_settings(config, {})


def test_one_policy_problem_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "policies: [{name: x, clusters: {names: [a]}, awake: ['Mon 08:00-09:00'], dryrun: 1}]"
    )
    result = run("plan", env=env_with(**OFFLINE, CCE_EXPORTER_POLICY_FILE=str(path)))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert str(path) in lines[0] and "unknown key 'dryrun' (did you mean dry_run?)" in lines[0]


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_check_config_and_run_list_policy_problems_one_per_line(
    command: str, tmp_path: Path
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "policies:\n"
        "  - name: office\n"
        "    clusters: {names: [a], exlude: [b]}\n"
        "    timezon: UTC\n"
        "    awake: ['Mon 08:00-09:00']\n"
    )
    env = env_with(**OFFLINE, CCE_EXPORTER_POLICY_FILE=str(path), CCE_EXPORTER_LISTEN="127.0.0.1:0")
    result = run(command, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert any(str(path) in line and "2 problems" in line for line in lines), lines
    assert (
        "  - policy 'office', field timezon: unknown key 'timezon' (did you mean timezone?)"
        in lines
    )
    assert any("did you mean exclude?" in line for line in lines)
    assert "Extra inputs are not permitted" not in result.stderr
