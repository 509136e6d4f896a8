"""The daemon as a real process against hostile clients and signals, and its start-up checks.

Each test starts ``cce-exporter`` (and the simulator) as subprocesses, stops them by PID, and
reads their output with deadlines.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx
import pytest

from bench.attacks import connection_flood, hangup_mid_scrape
from tests.conftest import SimProcess, stop_process
from tests.test_cli import CLI, DEADLINE, api_requests, clean_env, read_until, run_cli

POLICY = """\
policies:
  - name: office-hours
    clusters: {names: ["sim-cluster-00*"]}
    timezone: UTC
    awake: ["Mon-Fri 08:00-20:00"]
"""


@pytest.fixture
def daemons() -> object:
    started: list[subprocess.Popen[bytes]] = []

    def start(
        env: Mapping[str, str], *, nofile: int | None = None, args: tuple[str, ...] = ("run",)
    ) -> subprocess.Popen[bytes]:
        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        process = subprocess.Popen(
            [CLI, *args],
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=limit if nofile is not None else None,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        stop_process(process)


def _ready(process: subprocess.Popen[bytes]) -> tuple[str, str]:
    """Wait for the daemon's listening line and a pass of every resource; (url, stderr)."""
    match, text = read_until(process, r"listening on (http://\S+)", stderr=True, deadline=DEADLINE)
    url = match.group(1)
    end = time.monotonic() + DEADLINE
    with httpx.Client(base_url=url, timeout=5.0) as http:
        while http.get("/readyz").status_code != 200:
            assert time.monotonic() < end, "no exposition in time"
            time.sleep(0.1)
    return url, text


def _ignored_signals(pid: int) -> int:
    """The process's set of ignored signals (``SigIgn`` in /proc/PID/status) as a bit mask."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigIgn line")


def _rest_of_stderr(process: subprocess.Popen[bytes]) -> str:
    assert process.stderr is not None
    return process.stderr.read().decode(errors="replace")


@pytest.fixture
def sim7(start_simulator: Callable[..., SimProcess]) -> SimProcess:
    return start_simulator("--seed", "7", "--clusters", "30", "--nodes-per-cluster", "10")


@pytest.fixture
def big_sim(start_simulator: Callable[..., SimProcess]) -> SimProcess:
    # 100 clusters x 20 nodes: /metrics is a few hundred KB, far more than socket buffers.
    return start_simulator("--seed", "5", "--clusters", "100", "--nodes-per-cluster", "20")


def test_scrapers_hanging_up_mid_response_never_kill_the_daemon(
    daemons: Callable[..., subprocess.Popen[bytes]], big_sim: SimProcess
) -> None:
    daemon = daemons(clean_env(**big_sim.settings, CCE_EXPORTER_LISTEN="127.0.0.1:0"))
    url, text = _ready(daemon)
    # SIGPIPE is ignored in the daemon: whether a hang-up meets EPIPE is a matter of timing.
    assert _ignored_signals(daemon.pid) & (1 << (signal.SIGPIPE - 1))
    for reset in (False, True):
        result = asyncio.run(
            hangup_mid_scrape(url, times=10, read_bytes=2048, pid=daemon.pid, reset=reset)
        )
        assert result.survived, result
        assert result.numbers["hangups"] == 10
        assert result.numbers["metrics_bytes"] > 200_000
    assert daemon.poll() is None
    os.kill(daemon.pid, signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    text += _rest_of_stderr(daemon)
    # At INFO nothing is said about the clients that left: DEBUG at most.
    assert "Traceback" not in text
    loud = [
        line
        for line in text.splitlines()
        if re.search(r" (WARNING|ERROR|CRITICAL) +(asyncio|uvicorn|exporter\.web)", line)
    ]
    assert loud == [], text


def test_sighup_is_a_graceful_stop_with_the_state_saved(
    daemons: Callable[..., subprocess.Popen[bytes]], sim7: SimProcess, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    env = clean_env(
        **sim7.settings, CCE_EXPORTER_LISTEN="127.0.0.1:0", CCE_EXPORTER_STATE_FILE=str(state)
    )
    daemon = daemons(env)
    _ready(daemon)
    assert not state.exists()
    os.kill(daemon.pid, signal.SIGHUP)
    assert daemon.wait(timeout=30) == 0
    assert "received SIGHUP, stopping gracefully" in _rest_of_stderr(daemon)
    assert state.exists() and '"phases"' in state.read_text()


def test_a_signal_during_start_up_stops_cleanly(
    daemons: Callable[..., subprocess.Popen[bytes]], sim7: SimProcess
) -> None:
    # An IAM endpoint that never answers: the first API call (the project's ID) hangs.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent.settimeout(DEADLINE)
        settings = dict(sim7.settings, CCE_EXPORTER_LISTEN="127.0.0.1:0")
        del settings["CCE_EXPORTER_PROJECT_ID"]  # resolved from the project name at start-up
        settings["CCE_EXPORTER_PROJECT_NAME"] = "sim-region-1"  # the simulator's project
        settings["CCE_EXPORTER_IAM_ENDPOINT"] = f"http://127.0.0.1:{silent.getsockname()[1]}"
        env = clean_env(**settings)
        daemon = daemons(env)
        conn, _ = silent.accept()  # the exporter's first request is under way
        with conn:
            os.kill(daemon.pid, signal.SIGHUP)
            assert daemon.wait(timeout=30) == 0
    assert "received SIGHUP during start-up, stopping" in _rest_of_stderr(daemon)


@pytest.mark.parametrize("command", ["once", "plan"])
def test_once_and_plan_into_a_closed_pipe_exit_quietly(
    command: str, sim7: SimProcess, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    env = clean_env(**sim7.settings, CCE_EXPORTER_POLICY_FILE=str(policy))
    # `cce-exporter once | head -c 0`: the reader is gone before anything is written.
    read_end, write_end = os.pipe()
    os.close(read_end)
    process = subprocess.Popen([CLI, command], env=env, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    _, stderr = process.communicate(timeout=120)
    text = stderr.decode(errors="replace")
    assert "Traceback" not in text and "BrokenPipe" not in text, text
    assert process.returncode == 0, (process.returncode, text)  # not killed by SIGPIPE (-13)


@pytest.mark.parametrize(
    "max_connections", [None, 5000], ids=["default-limit", "limit-above-open-files"]
)
def test_a_connection_flood_at_a_low_open_file_limit(
    daemons: Callable[..., subprocess.Popen[bytes]],
    sim7: SimProcess,
    max_connections: int | None,
) -> None:
    settings = dict(sim7.settings, CCE_EXPORTER_LISTEN="127.0.0.1:0")
    if max_connections is not None:  # accept() itself then runs out of descriptors: EMFILE
        settings["CCE_EXPORTER_WEB_MAX_CONNECTIONS"] = str(max_connections)
    daemon = daemons(clean_env(**settings), nofile=256)
    url, text = _ready(daemon)
    result = asyncio.run(connection_flood(url, connections=600, probes=5, pid=daemon.pid))
    assert result.survived, result
    assert result.numbers["healthz_answered"] == 5, result  # answered during the flood
    assert daemon.poll() is None
    os.kill(daemon.pid, signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    text += _rest_of_stderr(daemon)
    assert "Traceback" not in text
    # EMFILE is logged once per interval (the run is shorter than one), never per attempt.
    assert text.count("cannot accept connections") <= 1, text[-3000:]


# --- start-up checks ------------------------------------------------------------------------------


BAD_WEB_CONFIGS = {
    "unknown-key": ("tls_server_config: null\nbasic_auth_user: {}\n", "basic_auth_user"),
    "missing-certificate": (
        "tls_server_config: {cert_file: nowhere.crt, key_file: nowhere.key}\n",
        "cert_file",
    ),
    "bad-yaml": ("basic_auth_users: [unclosed\n", "not valid YAML"),
    "truncated-hash": ("basic_auth_users: {prom: '$2y$10$abc'}\n", "basic_auth_users.prom"),
}


@pytest.mark.parametrize("case", sorted(BAD_WEB_CONFIGS))
def test_a_bad_web_config_is_one_line_and_exit_2_before_any_collection(
    case: str, sim7: SimProcess, tmp_path: Path
) -> None:
    content, key = BAD_WEB_CONFIGS[case]
    web = tmp_path / "web.yml"
    web.write_text(content)
    env = clean_env(
        **sim7.settings, CCE_EXPORTER_LISTEN="127.0.0.1:0", CCE_EXPORTER_WEB_CONFIG_FILE=str(web)
    )
    before = api_requests(sim7)
    for command in ("run", "check-config"):
        result = run_cli(command, env=env)
        assert result.returncode == 2, (command, result.stderr)
        errors = [line for line in result.stderr.splitlines() if "INFO" not in line]
        assert len(errors) == 1, (command, result.stderr)
        assert str(web) in errors[0] and key in errors[0], errors
        assert "Traceback" not in result.stderr
    assert api_requests(sim7) == before  # nothing was collected


def test_a_bad_policy_file_is_one_line_and_exit_2_for_run_and_check_config(
    sim7: SimProcess, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "policies:\n  - name: x\n    clusters: {names: [a]}\n    awake: ['Someday']\n"
    )
    env = clean_env(
        **sim7.settings, CCE_EXPORTER_LISTEN="127.0.0.1:0", CCE_EXPORTER_POLICY_FILE=str(policy)
    )
    before = api_requests(sim7)
    for command in ("run", "check-config"):
        result = run_cli(command, env=env)
        assert result.returncode == 2, (command, result.stderr)
        errors = [line for line in result.stderr.splitlines() if "INFO" not in line]
        assert len(errors) == 1, (command, result.stderr)
        assert str(policy) in errors[0] and "awake" in errors[0], errors
    assert api_requests(sim7) == before
    # A good policy passes both.
    policy.write_text(POLICY)
    assert run_cli("check-config", env=env).returncode == 0
