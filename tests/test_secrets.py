"""Secrets never leak: AK, SK, password and token stay out of logs, metrics, pages and errors.

Each test sets the credentials to recognisable values (or uses the simulator's, which are just as
recognisable), runs the exporter at DEBUG level with every path that could echo them (a good
collection, a wrong password, a rejected signature, an unreachable endpoint, a bad configuration
value, ``check-config``), and searches every output for them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import subprocess
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from exporter.assemble import TargetBuilder
from exporter.collect.service import ExporterService
from exporter.config import ConfigError, load_settings
from exporter.simulator import Simulator
from exporter.web import Server, build_app
from tests.conftest import SimProcess
from tests.test_cli import clean_env, run_cli

AK = "AKCANARY0123456789AB"
SK = "SKCANARY-sk-0123456789abcdefghijklmnopqrstuv"
PASSWORD = "PWCANARY-password-0123456789"
TOKEN = "MIITKCANARY-token-0123456789abcdefghijklmnop"
CANARIES = (AK, SK, PASSWORD, TOKEN)


def assert_absent(secrets: Iterable[str], **outputs: str) -> None:
    for where, text in outputs.items():
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:6]}...) appears in {where}"


def log_text(records: Iterable[logging.LogRecord]) -> str:
    """Everything a handler could print: messages, raw arguments, extra fields, exceptions."""
    formatter = logging.Formatter()
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        parts.append(repr(vars(record)))
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def exporter_outputs(env: Mapping[str, str]) -> AsyncIterator[dict[str, str]]:
    """Set up and collect once (whatever fails), serve, and yield every text the exporter made."""
    outputs: dict[str, str] = {}
    service = ExporterService(load_settings(None, env), build_targets=TargetBuilder())
    try:
        await service.setup()
        await service.collect_all()
    except Exception as exc:  # what the command line would print
        outputs["error"] = f"{exc}\n{exc!r}\n{exc.__cause__!r}\n{exc.__context__!r}"
    server = Server(build_app(service, on_shutdown=[service.close]), "127.0.0.1:0")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as http:
            for path in ("/metrics", "/", "/readyz", "/healthz"):
                response = await http.get(path)
                outputs[path] = response.text
            response = await http.get(
                "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
            )
            outputs["/metrics (openmetrics)"] = response.text
        yield outputs
    finally:
        await server.stop()


def base_env(sim: Simulator, **overrides: str) -> dict[str, str]:
    env = {
        "CCE_EXPORTER_ENDPOINT": sim.base_url,
        "CCE_EXPORTER_IAM_ENDPOINT": sim.base_url,
        "CCE_EXPORTER_ADDON_ENDPOINT": sim.base_url,
        "CCE_EXPORTER_PROJECT_ID": sim.credentials.project_id,
        "CCE_EXPORTER_MAX_RETRIES": "0",
        "CCE_EXPORTER_LOG_LEVEL": "DEBUG",
        "CCE_EXPORTER_LISTEN": "127.0.0.1:0",
    }
    env.update(overrides)
    return env


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The exporter's own logging set-up at DEBUG (what ``--log-level DEBUG`` does), captured.

    ``setup_logging`` holds the HTTP libraries at WARNING whatever the level, since their DEBUG
    traces print request and response headers (a token among them); that is part of what is
    tested here, so those levels are left as it sets them.
    """
    from exporter.logs import _QUIET, setup_logging

    names = ["", *_QUIET]
    levels = {name: logging.getLogger(name).level for name in names}
    stream = io.StringIO()
    setup_logging("DEBUG", "text", stream=stream)
    caplog.handler.setLevel(logging.DEBUG)
    try:
        yield caplog
    finally:
        assert_absent([SK, PASSWORD, TOKEN], stderr=stream.getvalue())
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "_cce_exporter", False):
                root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.simulator(clusters=6, nodes_per_cluster=2)
async def test_working_credentials_stay_out_of_every_output(
    simulator: Simulator, debug_logs: pytest.LogCaptureFixture
) -> None:
    c = simulator.credentials
    token, _ = simulator.app.tokens.issue(c.project_id)
    cases = {
        "aksk": {
            "CCE_EXPORTER_AUTH_METHOD": "aksk",
            "CCE_EXPORTER_AK": c.ak,
            "CCE_EXPORTER_SK": c.sk,
        },
        "password": {
            "CCE_EXPORTER_AUTH_METHOD": "password",
            "CCE_EXPORTER_USERNAME": c.username,
            "CCE_EXPORTER_PASSWORD": c.password,
            "CCE_EXPORTER_DOMAIN": c.domain,
            "CCE_EXPORTER_PROJECT_ID": "",
            "CCE_EXPORTER_PROJECT_NAME": c.project_name,
        },
        "token": {"CCE_EXPORTER_AUTH_METHOD": "token", "CCE_EXPORTER_TOKEN": token},
    }
    for method, settings in cases.items():
        debug_logs.clear()
        async with exporter_outputs(base_env(simulator, **settings)) as outputs:
            assert "error" not in outputs, outputs["error"]
            assert "cce_cluster_info{" in outputs["/metrics"], method
        # Tokens the simulated IAM issued for the password method are secrets too.
        issued = list(simulator.app.tokens._tokens)
        assert_absent(
            [c.ak, c.sk, c.password, *issued],
            logs=log_text(debug_logs.records),
            **outputs,
        )
        # The configuration's repr: the AK is an identifier there, the rest are secrets.
        settings_repr = repr(load_settings(None, base_env(simulator, **settings)))
        assert_absent([c.sk, c.password, token], repr=settings_repr)
        assert any(r.levelno == logging.DEBUG for r in debug_logs.records)


@pytest.mark.simulator(clusters=2, nodes_per_cluster=1)
async def test_rejected_credentials_stay_out_of_errors_and_logs(
    simulator: Simulator, debug_logs: pytest.LogCaptureFixture
) -> None:
    c = simulator.credentials
    cases = {
        "wrong sk": {
            "CCE_EXPORTER_AUTH_METHOD": "aksk",
            "CCE_EXPORTER_AK": AK,
            "CCE_EXPORTER_SK": SK,
        },
        "wrong password": {
            "CCE_EXPORTER_AUTH_METHOD": "password",
            "CCE_EXPORTER_USERNAME": c.username,
            "CCE_EXPORTER_PASSWORD": PASSWORD,
            "CCE_EXPORTER_DOMAIN": c.domain,
        },
        "wrong password, project by name": {
            "CCE_EXPORTER_AUTH_METHOD": "password",
            "CCE_EXPORTER_USERNAME": c.username,
            "CCE_EXPORTER_PASSWORD": PASSWORD,
            "CCE_EXPORTER_DOMAIN": c.domain,
            "CCE_EXPORTER_PROJECT_ID": "",
            "CCE_EXPORTER_PROJECT_NAME": c.project_name,
        },
        "wrong token": {"CCE_EXPORTER_AUTH_METHOD": "token", "CCE_EXPORTER_TOKEN": TOKEN},
    }
    for case, settings in cases.items():
        debug_logs.clear()
        async with exporter_outputs(base_env(simulator, **settings)) as outputs:
            assert "cce_cluster_info{" not in outputs["/metrics"], case
            failed = outputs.get("error", "") + outputs["/readyz"]
            assert "401" in failed or "never succeeded" in failed, (case, failed)
        text = log_text(debug_logs.records)
        assert "401" in text or "error" in outputs, case
        assert_absent(CANARIES, logs=text, **outputs)


async def test_an_unreachable_endpoint_does_not_echo_secrets(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    common = {
        "CCE_EXPORTER_ENDPOINT": url,
        "CCE_EXPORTER_IAM_ENDPOINT": url,
        "CCE_EXPORTER_PROJECT_ID": "0" * 32,
        "CCE_EXPORTER_MAX_RETRIES": "0",
        "CCE_EXPORTER_LISTEN": "127.0.0.1:0",
    }
    for settings in (
        {"CCE_EXPORTER_AUTH_METHOD": "aksk", "CCE_EXPORTER_AK": AK, "CCE_EXPORTER_SK": SK},
        {
            "CCE_EXPORTER_AUTH_METHOD": "password",
            "CCE_EXPORTER_USERNAME": "someone",
            "CCE_EXPORTER_PASSWORD": PASSWORD,
            "CCE_EXPORTER_DOMAIN": "somewhere",
        },
        {"CCE_EXPORTER_AUTH_METHOD": "token", "CCE_EXPORTER_TOKEN": TOKEN},
    ):
        debug_logs.clear()
        async with exporter_outputs({**common, **settings}) as outputs:
            assert "cce_cluster_info{" not in outputs["/metrics"]
        assert_absent(CANARIES, logs=log_text(debug_logs.records), **outputs)


BAD_CONFIGS: list[dict[str, str]] = [
    {"CCE_EXPORTER_AUTH_METHOD": "kerberos"},
    {"CCE_EXPORTER_TIMEOUT": "soon"},
    {"CCE_EXPORTER_AUTH_METHOD": "password"},  # the username and domain are missing
    {"CCE_EXPORTER_AUTH_METHOD": "token", "CCE_EXPORTER_TOKEN_FILE": "/nonexistent/token"},
    {"CCE_EXPORTER_ENDPOINT": SK},  # a secret pasted into the wrong setting is not echoed
    {"CCE_EXPORTER_LABELS": f"env={PASSWORD},bad-name=1"},
]


@pytest.mark.parametrize("override", BAD_CONFIGS)
def test_configuration_errors_do_not_echo_secrets(override: dict[str, str]) -> None:
    env = {
        "CCE_EXPORTER_ENDPOINT": "https://cce.example.com",
        "CCE_EXPORTER_PROJECT_ID": "0" * 32,
        "CCE_EXPORTER_AK": AK,
        "CCE_EXPORTER_SK": SK,
        "CCE_EXPORTER_PASSWORD": PASSWORD,
        "CCE_EXPORTER_TOKEN": TOKEN,
        **override,
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env)
    assert_absent(CANARIES, message=str(caught.value), repr=repr(caught.value))


def test_secrets_of_a_bad_yaml_file_are_not_echoed(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "endpoint: https://cce.example.com\n"
        "project_id: '00000000000000000000000000000000'\n"
        f"sk: {{nested: {SK}}}\n"
        f"password: [{PASSWORD}]\n"
        f"token: {TOKEN}\n"
        "timeout: soon\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})
    assert "timeout" in str(caught.value)
    assert_absent([SK, PASSWORD, TOKEN], message=str(caught.value), repr=repr(caught.value))


def test_check_config_and_once_subprocesses_keep_secrets(
    start_simulator: object, tmp_path: Path
) -> None:
    assert callable(start_simulator)
    sim: SimProcess = start_simulator("--clusters", "3", "--nodes-per-cluster", "2")
    s = sim.settings
    real = [s["CCE_EXPORTER_SK"], s["CCE_EXPORTER_PASSWORD"]]
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    outputs: dict[str, str] = {}

    def record(name: str, result: subprocess.CompletedProcess[str]) -> None:
        outputs[f"{name} stdout"] = result.stdout
        outputs[f"{name} stderr"] = result.stderr

    debug = {"CCE_EXPORTER_LOG_LEVEL": "DEBUG", "CCE_EXPORTER_MAX_RETRIES": "0"}
    record("check-config", run_cli("check-config", env=clean_env(**s, CCE_EXPORTER_TOKEN=TOKEN)))
    assert "********" in outputs["check-config stdout"]
    record(
        "check-config --online", run_cli("check-config", "--online", env=clean_env(**s, **debug))
    )
    record("once (aksk)", run_cli("once", env=clean_env(**s, **debug)))
    assert "cce_cluster_info{" in outputs["once (aksk) stdout"]
    password = {**s, **debug, "CCE_EXPORTER_AUTH_METHOD": "password"}
    record("once (password)", run_cli("once", env=clean_env(**password)))
    assert "cce_cluster_info{" in outputs["once (password) stdout"]
    wrong = {**password, "CCE_EXPORTER_PASSWORD": PASSWORD}
    result = run_cli("once", env=clean_env(**wrong))
    assert result.returncode == 1
    record("once (wrong password)", result)
    result = run_cli("check-config", "--online", env=clean_env(**wrong))
    assert result.returncode == 1
    record("check-config --online (wrong password)", result)
    token = {
        **s,
        **debug,
        "CCE_EXPORTER_AUTH_METHOD": "token",
        "CCE_EXPORTER_TOKEN_FILE": str(token_file),
    }
    result = run_cli("once", env=clean_env(**token))
    assert result.returncode == 1
    record("once (token file)", result)
    assert_absent([*real, *CANARIES[1:]], **outputs)


def test_check_config_does_not_show_the_ak() -> None:
    env = clean_env(
        CCE_EXPORTER_ENDPOINT="https://cce.example.com",
        CCE_EXPORTER_PROJECT_ID="0" * 32,
        CCE_EXPORTER_AK=AK,
        CCE_EXPORTER_SK=SK,
    )
    result = run_cli("check-config", env=env)
    assert result.returncode == 0
    assert_absent(CANARIES, stdout=result.stdout, stderr=result.stderr)
