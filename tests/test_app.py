"""The composition root (``exporter.app``) as the command line uses it: settings a part of the
daemon refuses stop it with exit 2 before any API call, for ``run`` and ``once`` alike."""

from __future__ import annotations

import os

import pytest

from exporter.app import SettingsError, build_service
from exporter.cli import main
from exporter.config import load_settings

# An endpoint nothing listens on: a command that reached the API would fail there (exit 1).
ENV = {
    "CCE_EXPORTER_ENDPOINT": "http://127.0.0.1:1",
    "CCE_EXPORTER_PROJECT_ID": "p",
    "CCE_EXPORTER_AK": "ak",
    "CCE_EXPORTER_SK": "sk-secret-value",
    # Three shards, and no pod ordinal to say which one this replica is.
    "CCE_EXPORTER_TOTAL_SHARDS": "3",
    "HOSTNAME": "laptop",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CCE_EXPORTER_") or name == "POD_NAME":
            monkeypatch.delenv(name)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def test_build_service_refuses_inconsistent_shard_settings() -> None:
    settings = load_settings(None, ENV)
    with pytest.raises(SettingsError, match="CCE_EXPORTER_SHARD"):
        build_service(settings)


@pytest.mark.parametrize("command", [["run", "--listen", "127.0.0.1:0"], ["once"]])
def test_the_command_exits_2_before_any_api_call(
    env: None, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "cce-exporter: configuration error:\n" in err
    assert "CCE_EXPORTER_SHARD" in err
    assert "sk-secret-value" not in err
