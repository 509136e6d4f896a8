"""The ``cce-exporter`` console script, run as real subprocesses against ``cce-exporter simulate``.

Every process a test starts is stopped by its PID (``stop_process``); output is read with deadlines,
never by sleeping.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from exporter import __version__
from tests.conftest import SimProcess, stop_process

CLI = str(Path(sys.executable).with_name("cce-exporter"))
DEADLINE = 30.0


def clean_env(**settings: str) -> dict[str, str]:
    """The test process's environment without any CCE_EXPORTER_* variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCE_EXPORTER_")}
    env.update(settings)
    return env


def run_cli(
    *args: str, env: Mapping[str, str], timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )


def control(sim: SimProcess, method: str, path: str, body: object = None) -> object:
    response = httpx.request(method, sim.base_url + path, json=body, timeout=10.0)
    assert response.status_code < 300, response.text
    return response.json()


def api_requests(sim: SimProcess) -> int:
    state = control(sim, "GET", "/_sim/state")
    assert isinstance(state, dict)
    return sum(state["requests"].values())


def read_until(
    process: subprocess.Popen[bytes], pattern: str, *, stderr: bool = False, deadline: float
) -> tuple[re.Match[str], str]:
    """Read stdout (or stderr) until ``pattern`` matches; the match and the text read."""
    stream = process.stderr if stderr else process.stdout
    assert stream is not None
    fd = stream.fileno()
    buffer = b""
    regex = re.compile(pattern, re.MULTILINE)
    end = time.monotonic() + deadline
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            match = regex.search(buffer.decode(errors="replace"))
            if match is not None:
                return match, buffer.decode(errors="replace")
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {pattern!r} in time; got {buffer[-2000:]!r}")
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"exited ({process.poll()}) before {pattern!r}: {buffer!r}")
            buffer += chunk


@pytest.fixture
def processes() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, env: Mapping[str, str], stderr: bool = True) -> subprocess.Popen[bytes]:
        # A pipe nobody reads can fill up and block the process: discard what is not read.
        process = subprocess.Popen(
            [CLI, *args],
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if stderr else subprocess.DEVNULL,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        stop_process(process)


@pytest.fixture
def sim7(start_simulator: Callable[..., SimProcess]) -> SimProcess:
    return start_simulator("--seed", "7", "--clusters", "30", "--nodes-per-cluster", "10")


def test_version() -> None:
    result = run_cli("--version", env=clean_env())
    assert result.returncode == 0
    assert result.stdout.strip() == f"cce-exporter {__version__}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_once_prints_an_exposition_promtool_accepts(sim7: SimProcess) -> None:
    result = run_cli("once", env=clean_env(**sim7.settings))
    assert result.returncode == 0, result.stderr
    assert "cce_cluster_info{" in result.stdout
    assert "cce_job_info{" in result.stdout  # jobs are part of the one full collection
    check = subprocess.run(
        ["promtool", "check", "metrics"],
        input=result.stdout,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")

    om = run_cli("once", "--format", "openmetrics", env=clean_env(**sim7.settings))
    assert om.returncode == 0 and om.stdout.endswith("# EOF\n")


def test_once_exits_1_when_the_cluster_listing_fails(sim7: SimProcess) -> None:
    control(sim7, "POST", "/_sim/faults", {"kind": "http_500", "rate": 1.0, "path": "/clusters$"})
    result = run_cli("once", env=clean_env(**sim7.settings, CCE_EXPORTER_MAX_RETRIES="0"))
    assert result.returncode == 1
    assert "collecting clusters failed" in result.stderr
    assert "HTTP 500" in result.stderr
    # A failure elsewhere does not make it fail.
    control(sim7, "DELETE", "/_sim/faults")
    control(sim7, "POST", "/_sim/faults", {"kind": "http_500", "rate": 1.0, "path": "/quotas"})
    result = run_cli("once", env=clean_env(**sim7.settings, CCE_EXPORTER_MAX_RETRIES="0"))
    assert result.returncode == 0, result.stderr
    assert 'cce_exporter_collect_success{project_id="' in result.stdout
    assert re.search(r'collect_success\{[^}]*resource="quotas"\} 0', result.stdout)


def test_check_config_masks_secrets_and_checks_online(sim7: SimProcess) -> None:
    settings = sim7.settings
    result = run_cli("check-config", env=clean_env(**settings))
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert settings["CCE_EXPORTER_SK"] not in out
    assert settings["CCE_EXPORTER_PASSWORD"] not in out
    assert "********" in out
    assert settings["CCE_EXPORTER_ENDPOINT"] in out
    assert api_requests(sim7) == 0  # offline: no request

    online = run_cli("check-config", "--online", env=clean_env(**settings))
    assert online.returncode == 0, online.stderr
    assert re.search(r"target default: OK, project [0-9a-f]{32}, 30 cluster\(s\)", online.stdout)

    wrong = clean_env(**{**settings, "CCE_EXPORTER_SK": "x" * 40, "CCE_EXPORTER_MAX_RETRIES": "0"})
    failed = run_cli("check-config", "--online", env=wrong)
    assert failed.returncode == 1
    assert "target default: FAILED" in failed.stdout
    assert "x" * 40 not in failed.stdout + failed.stderr


BAD_SETTINGS = [
    ({"CCE_EXPORTER_AUTH_METHOD": "kerberos"}, "CCE_EXPORTER_AUTH_METHOD"),
    ({"CCE_EXPORTER_ENDPOINT": "cce.example.com"}, "CCE_EXPORTER_ENDPOINT"),
    ({"CCE_EXPORTER_TIMEOUT": "soon"}, "CCE_EXPORTER_TIMEOUT"),
    ({"CCE_EXPORTER_NODES_INTERVAL": "0"}, "CCE_EXPORTER_NODES_INTERVAL"),
    ({"CCE_EXPORTER_LISTEN": "nowhere"}, "CCE_EXPORTER_LISTEN"),
    ({"CCE_EXPORTER_LOG_LEVEL": "LOUD"}, "CCE_EXPORTER_LOG_LEVEL"),
    ({"CCE_EXPORTER_LABELS": "project_id=mine"}, "CCE_EXPORTER_LABELS"),
    ({"CCE_EXPORTER_STATE_FILE": "/nonexistent-dir/state.json"}, "CCE_EXPORTER_STATE_FILE"),
    ({"CCE_EXPORTER_SK": ""}, "CCE_EXPORTER_SK"),
    ({"CCE_EXPORTER_MAX_RETRIES": "-1"}, "CCE_EXPORTER_MAX_RETRIES"),
]


@pytest.mark.parametrize(("override", "setting"), BAD_SETTINGS, ids=[s for _, s in BAD_SETTINGS])
def test_each_wrong_setting_is_named_before_anything_is_done(
    start_simulator: Callable[..., SimProcess], override: dict[str, str], setting: str
) -> None:
    sim = start_simulator("--clusters", "1", "--nodes-per-cluster", "1")
    for command in ("once", "check-config"):
        result = run_cli(command, env=clean_env(**{**sim.settings, **override}))
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "configuration error" in result.stderr
        assert setting in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
    assert api_requests(sim) == 0


def test_a_bad_config_file_is_named(tmp_path: Path, sim7: SimProcess) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("targets:\n  - name: a\n    endpont: http://127.0.0.1:1\n")
    result = run_cli("once", "--config", str(config), env=clean_env())
    assert result.returncode == 2
    assert "endpont" in result.stderr and "endpoint" in result.stderr  # the typo and a suggestion
    missing = run_cli("once", "--config", str(tmp_path / "nope.yaml"), env=clean_env())
    assert missing.returncode == 2
    assert "nope.yaml" in missing.stderr


def test_demo_serves_the_cluster_listing_and_stops_on_sigint(
    processes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """The demo prints its URLs, serves the clusters' exposition and the page, and stops on ^C.

    The first exposition may predate the cluster listing (readiness follows the first render), so
    the test polls until the clusters are in it, within a generous deadline; it asserts what is
    served, never how fast.
    """
    demo = processes("demo", "--listen", "127.0.0.1:0", env=clean_env(), stderr=False)
    match, _ = read_until(demo, r"metrics\s+(http://127\.0\.0\.1:\d+)/metrics", deadline=DEADLINE)
    base = match.group(1)
    end = time.monotonic() + DEADLINE
    with httpx.Client(base_url=base, timeout=5.0) as http:
        while True:
            metrics = http.get("/metrics")
            if metrics.status_code == 200 and "cce_cluster_info{" in metrics.text:
                break
            assert time.monotonic() < end, "the demo served no cluster listing"
            time.sleep(0.2)  # polling interval, not a wait for an outcome
        page = http.get("/")
        assert page.status_code == 200 and "cce-exporter" in page.text
    os.kill(demo.pid, signal.SIGINT)
    assert demo.wait(timeout=20) == 0


def test_demo_policy_hibernates_the_first_clusters_and_shows_it(
    processes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """The demo's policy window ended before start-up: the catch-up hibernates its clusters."""
    demo = processes("demo", "--listen", "127.0.0.1:0", env=clean_env(), stderr=False)
    match, banner = read_until(demo, r"simulator\s+(http://127\.0\.0\.1:\d+) ", deadline=DEADLINE)
    simulator = match.group(1)
    base = re.search(r"metrics\s+(http://127\.0\.0\.1:\d+)/metrics", banner)
    assert base is not None
    desired = re.compile(
        r'^cce_hibernation_desired_state\{[^}]*cluster="([^"]+)"[^}]*state="hibernated"\} 1',
        re.MULTILINE,
    )
    end = time.monotonic() + DEADLINE
    with httpx.Client(timeout=5.0) as http:
        # The policy's action reaches the API...
        while http.get(f"{simulator}/_sim/state").json()["requests"].get("hibernate", 0) < 1:
            assert time.monotonic() < end, "the demo policy called no hibernate"
        # ...and the metrics show the policy's view and a cluster going to sleep.
        while True:
            text = http.get(f"{base.group(1)}/metrics").text
            governed = set(desired.findall(text))
            sleeping = {
                name
                for name in governed
                if re.search(
                    rf'^cce_cluster_status_phase\{{[^}}]*cluster="{name}"[^}}]*'
                    rf'phase="Hibernating"\}} 1$',
                    text,
                    re.MULTILINE,
                )
            }
            if sleeping:
                break
            assert time.monotonic() < end, "no governed cluster is shown Hibernating"
        # Only the clusters the policy selects are governed.
        assert governed <= {f"sim-cluster-00{i}" for i in range(10)}
        page = http.get(f"{base.group(1)}/").text
        assert "Hibernating" in page and sorted(sleeping)[0] in page
    os.kill(demo.pid, signal.SIGINT)
    assert demo.wait(timeout=20) == 0


def test_run_stops_cleanly_on_sigterm_and_writes_the_state_file(
    processes: Callable[..., subprocess.Popen[bytes]], sim7: SimProcess, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    env = clean_env(
        **sim7.settings, CCE_EXPORTER_LISTEN="127.0.0.1:0", CCE_EXPORTER_STATE_FILE=str(state)
    )
    daemon = processes("run", env=env)
    match, _ = read_until(daemon, r"listening on (http://\S+)", stderr=True, deadline=DEADLINE)
    with httpx.Client(base_url=match.group(1), timeout=5.0) as http:
        end = time.monotonic() + DEADLINE
        while http.get("/readyz").status_code != 200:
            assert time.monotonic() < end, "not ready in time"
        assert "cce_node_info{" in http.get("/metrics").text
    assert not state.exists()
    os.kill(daemon.pid, signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    sections = json.loads(state.read_text())["sections"]
    assert len(sections["phases"]["default"]) > 30  # clusters, nodes, pools and add-ons
    assert sections["jobs"]["default"]


def test_json_logs_are_one_object_per_line_naming_target_and_cluster(sim7: SimProcess) -> None:
    clusters = httpx.get(sim7.base_url + "/_sim/state", timeout=10).json()
    assert clusters["world"]["clusters"] == 30
    # One cluster's node listing fails: its log line must say which target and cluster.
    target_cluster = next(iter(_cluster_ids(sim7)))
    control(
        sim7,
        "POST",
        "/_sim/faults",
        {"kind": "http_500", "rate": 1.0, "path": f"/clusters/{target_cluster}/nodes$"},
    )
    env = clean_env(**sim7.settings, CCE_EXPORTER_MAX_RETRIES="0")
    result = run_cli("once", "--log-format", "json", "--log-level", "DEBUG", env=env)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) and {"time", "level", "message"} <= set(r) for r in records)
    failed = [r for r in records if r["message"].startswith("collecting nodes failed")]
    assert len(failed) == 1
    assert failed[0]["target"] == "default"
    assert failed[0]["cluster_id"] == target_cluster
    assert failed[0]["cluster"].startswith("sim-cluster-")
    assert failed[0]["resource"] == "nodes"
    assert failed[0]["level"] == "warning"
    followed = [r for r in records if r["message"].startswith("following CCE job")]
    assert followed and all(r["target"] == "default" and r["cluster_id"] for r in followed)


def _cluster_ids(sim: SimProcess) -> list[str]:
    from tests.conftest import SignAuth

    auth = SignAuth(sim.settings["CCE_EXPORTER_AK"], sim.settings["CCE_EXPORTER_SK"])
    project = sim.settings["CCE_EXPORTER_PROJECT_ID"]
    with httpx.Client(base_url=sim.base_url, auth=auth, timeout=10.0) as http:
        items = http.get(f"/api/v3/projects/{project}/clusters").json()["items"]
    return [c["metadata"]["uid"] for c in items if c["status"]["phase"] == "Available"]
