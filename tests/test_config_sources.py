"""Tests of the configuration's sources on pydantic-settings: one load's sources stay in that load,
variables pydantic-settings would read on its own are refused, and the order of the sources."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import SecretStr

from exporter.config import (
    ConfigError,
    Settings,
    TargetConfig,
    default_addon_endpoint,
    listen_address,
    load_settings,
    parse_listen,
)

ANY = "0.0.0.0"  # noqa: S104 - expected parse results, nothing binds here
ENDPOINT = "https://cce.ap-southeast-1.myhuaweicloud.com"
BASE_ENV = {
    "CCE_EXPORTER_ENDPOINT": ENDPOINT,
    "CCE_EXPORTER_PROJECT_ID": "0123456789abcdef",
    "CCE_EXPORTER_AK": "AKEXAMPLE",
    "CCE_EXPORTER_SK": "SK-SECRET-123",
}


def a_target() -> TargetConfig:
    return TargetConfig(endpoint=ENDPOINT, project_id="p", ak="a", sk=SecretStr("s"))


def test_settings_built_directly_read_only_their_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCE_EXPORTER_LISTEN", "127.0.0.1:1234")
    monkeypatch.setenv("CCE_EXPORTER_LOG_LEVEL", "debug")
    settings = Settings(targets=[a_target()])
    assert (settings.listen, settings.log_level) == ("0.0.0.0:9877", "INFO")
    assert settings.sources == {} and settings.notices == []


def test_load_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**BASE_ENV, "CCE_EXPORTER_LISTEN": "127.0.0.1:1234"}.items():
        monkeypatch.setenv(name, value)
    assert load_settings().listen_port == 1234


def test_a_failed_load_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCE_EXPORTER_LOG_LEVEL", "debug")
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml", env=BASE_ENV)
    with pytest.raises(ConfigError, match="CCE_EXPORTER_LISTEN"):
        load_settings(env={**BASE_ENV, "CCE_EXPORTER_LISTEN": "nowhere"})
    # A later direct construction does not see the sources of the failed loads.
    assert Settings(targets=[a_target()]).log_level == "INFO"


def test_loads_at_the_same_time_keep_their_own_sources() -> None:
    def load(port: int) -> int:
        env = {**BASE_ENV, "CCE_EXPORTER_LISTEN": f"127.0.0.1:{port}"}
        return load_settings(env=env).listen_port

    ports = list(range(9000, 9064))
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(load, ports)) == ports


@pytest.mark.parametrize(
    "name",
    # pydantic-settings alone would decode the first as JSON for the list of targets and match
    # the second case-insensitively; here both are unknown variables, as the docs say.
    ["CCE_EXPORTER_TARGETS", "CCE_EXPORTER_listen", "CCE_EXPORTER_Targets__default__ak"],
)
def test_variables_outside_the_documented_names_are_notices(name: str) -> None:
    settings = load_settings(env={**BASE_ENV, name: "{not json"})
    assert settings.listen == "0.0.0.0:9877"
    assert settings.targets[0].ak == "AKEXAMPLE"
    assert [n for n in settings.notices if name in n], settings.notices


def problems_of(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    return str(info.value)


def test_per_target_variable_problems_only_for_a_known_target() -> None:
    message = problems_of({**BASE_ENV, "CCE_EXPORTER_TARGETS__NOPE__LABELS": "x"})
    assert "CCE_EXPORTER_TARGETS__NOPE__*: no target is named so" in message
    assert message.count("\n  - ") == 1, message
    message = problems_of({**BASE_ENV, "CCE_EXPORTER_TARGETS__DEFAULT__LABELS": "x"})
    assert "CCE_EXPORTER_TARGETS__DEFAULT__LABELS: expected name=value pairs" in message


def test_sources_are_listed_in_the_order_of_the_variables(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("labels: {team: infra, env: prod}\nlisten: ':1'\n", encoding="utf-8")
    env = {
        **BASE_ENV,
        "CCE_EXPORTER_QUOTAS_ENABLED": "false",
        "CCE_EXPORTER_NODES_INTERVAL": "2m",
        "CCE_EXPORTER_LABELS": "zone=b,app=x",
    }
    assert list(load_settings(path, env=env).sources) == [
        "listen",
        "labels.team",
        "labels.env",
        "ak",
        "endpoint",
        "labels.zone",
        "labels.app",
        "resources.nodes.interval",
        "project_id",
        "resources.quotas.enabled",
        "sk",
    ]


def test_default_addon_endpoint_is_the_per_cluster_host() -> None:
    assert default_addon_endpoint("https://cce.x.example:8443") == (
        "https://{cluster_id}.cce.x.example:8443"
    )
    # The configuration's own default keeps an IP address or localhost as it is.
    local = load_settings(env={**BASE_ENV, "CCE_EXPORTER_ENDPOINT": "http://127.0.0.1:9"})
    assert local.targets[0].addon_endpoint == "http://127.0.0.1:9"
    assert local.targets[0].explicit_addon_endpoint is None


@pytest.mark.parametrize(
    ("value", "address", "parsed"),
    [
        (":9877", ("", 9877), (ANY, 9877)),
        ("0.0.0.0:1", (ANY, 1), (ANY, 1)),
        ("[::]:2", ("::", 2), ("::", 2)),
        ("localhost:3", ("localhost", 3), ("localhost", 3)),
    ],
)
def test_listen_address_keeps_every_interface_apart(
    value: str, address: tuple[str, int], parsed: tuple[str, int]
) -> None:
    # ":PORT" leaves the address families to the server; the settings show it as 0.0.0.0.
    assert listen_address(value) == address
    assert parse_listen(value) == parsed


@pytest.mark.parametrize("value", ["9877", "::1:9877", "[zz]:1", "a b:1", "h:70000"])
def test_listen_address_refuses_what_parse_listen_refuses(value: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT"):
        listen_address(value)
