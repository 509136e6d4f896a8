"""Tests of exporter.config: sources and precedence, defaults, every error, no secret leaks."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from exporter.config import (
    DEFAULT_INTERVALS,
    PROCESS_ENV,
    RESOURCE_NAMES,
    TARGET_ENV,
    TARGET_FIELDS,
    ConfigError,
    ResourcesConfig,
    Settings,
    TargetConfig,
    load_settings,
    parse_duration,
    parse_listen,
    render_effective_config,
)

ANY = "0.0.0.0"  # noqa: S104 - expected parse results, nothing binds here
ENDPOINT = "https://cce.ap-southeast-1.myhuaweicloud.com"
SECRETS = ("SK-SECRET-123", "PASSWORD-SECRET-456", "TOKEN-SECRET-789", "HOOK-SECRET-000")

BASE_ENV = {
    "CCE_EXPORTER_ENDPOINT": ENDPOINT,
    "CCE_EXPORTER_PROJECT_ID": "0123456789abcdef",
    "CCE_EXPORTER_AK": "AKEXAMPLE",
    "CCE_EXPORTER_SK": "SK-SECRET-123",
}


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(config_file: Path | None = None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file, env=env or {})
    return str(info.value)


# --- sources ----------------------------------------------------------------------------------


def test_env_only_single_target() -> None:
    settings = load_settings(
        env={
            **BASE_ENV,
            "CCE_EXPORTER_LISTEN": "127.0.0.1:9100",
            "CCE_EXPORTER_LOG_LEVEL": "debug",
            "CCE_EXPORTER_DRY_RUN": "true",
            "CCE_EXPORTER_JOB_RETENTION": "2h",
            "CCE_EXPORTER_LABELS": "region=ap-southeast-1, env=prod",
            "CCE_EXPORTER_NODES_INTERVAL": "2m",
            "CCE_EXPORTER_QUOTAS_ENABLED": "false",
            "CCE_EXPORTER_REQUESTS_PER_SECOND": "2.5",
            "UNRELATED": "x",
        }
    )
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 9100)
    assert settings.log_level == "DEBUG"
    assert settings.dry_run is True
    assert settings.job_retention == 7200.0
    [target] = settings.targets
    assert target.name == "default"
    assert target.endpoint == ENDPOINT
    assert target.project_id == "0123456789abcdef"
    assert target.ak == "AKEXAMPLE"
    assert target.sk is not None and target.sk.get_secret_value() == "SK-SECRET-123"
    assert target.labels == {"region": "ap-southeast-1", "env": "prod"}
    assert target.resources.nodes.interval == 120.0
    assert target.resources.quotas.enabled is False
    assert target.resources.enabled() == [
        "clusters",
        "nodes",
        "nodepools",
        "addons",
        "jobs",
        "cluster_upgrades",
        "addon_upgrades",
    ]
    assert target.requests_per_second == 2.5
    assert settings.sources["sk"] == "environment variable CCE_EXPORTER_SK"


def test_defaults() -> None:
    settings = load_settings(env=BASE_ENV)
    assert settings.listen == "0.0.0.0:9877"
    assert settings.log_level == "INFO"
    assert settings.log_format == "text"
    assert settings.state_sets == "all"
    assert settings.job_retention == 86400.0
    assert settings.dry_run is False
    assert (settings.shard, settings.total_shards) == (0, 1)
    assert settings.hook_token is None
    target = settings.targets[0]
    assert target.auth_method == "aksk"
    assert (target.timeout, target.max_retries, target.retry_deadline) == (10.0, 3, 30.0)
    assert target.concurrency == 8
    assert target.requests_per_second is None
    assert target.insecure_skip_verify is False
    assert target.labels == {}
    for name in RESOURCE_NAMES:
        assert target.resources.get(name).enabled is True
        assert target.resources.get(name).interval == DEFAULT_INTERVALS[name]
    assert DEFAULT_INTERVALS == {
        "clusters": 30.0,
        "nodes": 60.0,
        "nodepools": 60.0,
        "addons": 60.0,
        "quotas": 300.0,
        "jobs": 15.0,
        "cluster_upgrades": 3600.0,
        "addon_upgrades": 3600.0,
    }
    assert target.addon_endpoint == "https://{cluster_id}.cce.ap-southeast-1.myhuaweicloud.com"
    assert target.addon_url("c1") == "https://c1.cce.ap-southeast-1.myhuaweicloud.com"
    assert target.iam_endpoint == "https://iam.ap-southeast-1.myhuaweicloud.com"


def test_addon_endpoint_forms() -> None:
    local = load_settings(env={**BASE_ENV, "CCE_EXPORTER_ENDPOINT": "http://127.0.0.1:8080/"})
    # An IP address cannot take a cluster-ID subdomain: the plain endpoint serves add-ons too.
    assert local.targets[0].endpoint == "http://127.0.0.1:8080"
    assert local.targets[0].addon_url("c1") == "http://127.0.0.1:8080"
    assert local.targets[0].iam_endpoint is None
    plain = load_settings(env={**BASE_ENV, "CCE_EXPORTER_ADDON_ENDPOINT": "https://addons.example"})
    assert plain.targets[0].addon_url("c1") == "https://addons.example"
    templ = load_settings(
        env={**BASE_ENV, "CCE_EXPORTER_ADDON_ENDPOINT": "http://127.0.0.1:9/{cluster_id}/"}
    )
    assert templ.targets[0].addon_url("c1") == "http://127.0.0.1:9/c1"


def test_file_only(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        listen: "[::1]:9877"
        log_format: json
        state_sets: current
        job_retention: 3600
        endpoint: https://cce.eu-west-0.myhuaweicloud.com
        project_name: eu-west-0
        auth_method: password
        username: monitor
        password: PASSWORD-SECRET-456
        domain: acme
        labels: {env: staging, zone: 1}
        resources:
          nodes: {enabled: false}
          jobs: {interval: 5s}
        timeout: 1.5
        concurrency: 2
        """,
    )
    settings = load_settings(path, env={})
    assert (settings.listen_host, settings.listen_port) == ("::1", 9877)
    assert settings.log_format == "json"
    assert settings.state_sets == "current"
    assert settings.job_retention == 3600.0
    [target] = settings.targets
    assert target.project_name == "eu-west-0" and target.project_id is None
    assert target.auth_method == "password"
    assert target.password is not None
    assert target.password.get_secret_value() == "PASSWORD-SECRET-456"
    assert target.iam_endpoint == "https://iam.eu-west-0.myhuaweicloud.com"
    assert target.labels == {"env": "staging", "zone": "1"}
    # A partial resource entry keeps that resource's own default interval.
    assert (target.resources.nodes.enabled, target.resources.nodes.interval) == (False, 60.0)
    assert target.resources.jobs.interval == 5.0
    assert (target.timeout, target.concurrency) == (1.5, 2)
    assert settings.config_file == path


def test_config_file_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, f"endpoint: {ENDPOINT}\nproject_id: p\nak: a\nsk: s\n")
    settings = load_settings(env={"CCE_EXPORTER_CONFIG": str(path)})
    assert settings.targets[0].project_id == "p"


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        listen: 0.0.0.0:1111
        endpoint: {ENDPOINT}
        project_id: from-file
        ak: AK-FILE
        sk: SK-FILE
        labels: {{env: prod, team: infra}}
        resources: {{nodes: {{interval: 10}}}}
        """,
    )
    env = {
        "CCE_EXPORTER_LISTEN": ":2222",
        "CCE_EXPORTER_SK": "SK-SECRET-123",
        "CCE_EXPORTER_LABELS": "env=dev",
        "CCE_EXPORTER_NODES_ENABLED": "0",
        "CCE_EXPORTER_PROJECT_ID": "",  # empty counts as unset (optional Secret keys)
    }
    settings = load_settings(path, env=env)
    assert (settings.listen_host, settings.listen_port) == (ANY, 2222)
    target = settings.targets[0]
    assert target.sk is not None and target.sk.get_secret_value() == "SK-SECRET-123"
    assert target.ak == "AK-FILE"
    assert target.project_id == "from-file"
    # Labels and resources merge key by key.
    assert target.labels == {"env": "dev", "team": "infra"}
    assert (target.resources.nodes.enabled, target.resources.nodes.interval) == (False, 10.0)
    assert settings.sources["listen"] == "environment variable CCE_EXPORTER_LISTEN"
    assert settings.sources["ak"] == "the config file"


MULTI = f"""
    endpoint: {ENDPOINT}
    ak: AK-SHARED
    sk: SK-SHARED
    labels: {{env: prod}}
    resources: {{quotas: {{enabled: false}}}}
    targets:
      - name: ap1
        project_id: p-ap1
        labels: {{region: ap-southeast-1}}
      - name: eu-west
        endpoint: https://cce.eu-west-0.myhuaweicloud.com
        project_name: eu-west-0
        auth_method: token
        token: TOKEN-SECRET-789
        labels: {{region: eu-west-0, env: staging}}
        resources: {{quotas: {{interval: 10m}}}}
      - name: cn
        endpoint: http://127.0.0.1:9999
        iam_endpoint: http://127.0.0.1:9999
        project_id: p-cn
        auth_method: password
        username: u
        password: PASSWORD-SECRET-456
        domain: d
        ak: null
"""


def test_several_targets_inherit_and_override(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MULTI), env={"CCE_EXPORTER_TIMEOUT": "4"})
    ap1, eu, cn = settings.targets
    assert [t.name for t in settings.targets] == ["ap1", "eu-west", "cn"]
    assert (ap1.endpoint, ap1.project_id, ap1.ak) == (ENDPOINT, "p-ap1", "AK-SHARED")
    assert ap1.labels == {"env": "prod", "region": "ap-southeast-1"}
    assert ap1.resources.quotas.enabled is False
    assert eu.endpoint == "https://cce.eu-west-0.myhuaweicloud.com"
    assert eu.auth_method == "token"
    assert eu.token is not None and eu.token.get_secret_value() == "TOKEN-SECRET-789"
    assert eu.labels == {"env": "staging", "region": "eu-west-0"}
    assert (eu.resources.quotas.enabled, eu.resources.quotas.interval) == (False, 600.0)
    assert cn.auth_method == "password" and cn.iam_endpoint == "http://127.0.0.1:9999"
    assert cn.ak is None  # null removes the inherited value
    assert all(t.timeout == 4.0 for t in settings.targets)
    assert settings.sources["targets[1].endpoint"] == "the config file"
    assert settings.sources["targets[0].timeout"] == "environment variable CCE_EXPORTER_TIMEOUT"


def test_flat_env_is_a_default_and_entry_values_win(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, MULTI),
        env={"CCE_EXPORTER_SK": "SK-ENV", "CCE_EXPORTER_PROJECT_ID": "p-env"},
    )
    ap1, eu, _ = settings.targets
    assert ap1.sk is not None and ap1.sk.get_secret_value() == "SK-ENV"
    assert ap1.project_id == "p-ap1"  # written in the entry: the entry wins
    # The entry names its project: the inherited ID is replaced, not combined with it.
    assert eu.project_id is None and eu.project_name == "eu-west-0"
    cn = settings.targets[2]
    assert cn.project_id == "p-cn"


def test_per_target_env_overrides_entry(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, MULTI),
        env={
            "CCE_EXPORTER_TARGETS__AP1__SK": "SK-AP1",
            "CCE_EXPORTER_TARGETS__AP1__PROJECT_ID": "p-override",
            "CCE_EXPORTER_TARGETS__EU_WEST__LABELS": "tier=gold",
            "CCE_EXPORTER_TARGETS__EU_WEST__JOBS_INTERVAL": "1m",
        },
    )
    ap1, eu, cn = settings.targets
    assert ap1.sk is not None and ap1.sk.get_secret_value() == "SK-AP1"
    assert ap1.project_id == "p-override"
    assert eu.labels == {"env": "staging", "region": "eu-west-0", "tier": "gold"}
    assert eu.resources.jobs.interval == 60.0
    assert cn.resources.jobs.interval == 15.0
    assert settings.sources["targets[0].sk"] == "environment variable CCE_EXPORTER_TARGETS__AP1__SK"


def test_per_target_env_for_the_single_target() -> None:
    settings = load_settings(
        env={**BASE_ENV, "CCE_EXPORTER_TARGETS__DEFAULT__AK": "AK2", "CCE_EXPORTER_SK": "x"}
    )
    assert settings.targets[0].ak == "AK2"


def test_relative_paths_in_file_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "ca.pem").write_text("x")
    (tmp_path / "conf" / "token").write_text("t")
    path = write(
        tmp_path / "conf",
        f"""
        endpoint: {ENDPOINT}
        project_id: p
        auth_method: token
        token_file: token
        ca_file: ca.pem
        state_file: state.json
        """,
    )
    target = load_settings(path, env={}).targets[0]
    assert target.ca_file == tmp_path / "conf" / "ca.pem"
    assert target.token_file == tmp_path / "conf" / "token"


def test_unknown_env_variables_are_notices_not_errors() -> None:
    settings = load_settings(env={**BASE_ENV, "CCE_EXPORTER_ENDPONT": "x"})
    assert settings.notices == [
        "ignoring unknown variable CCE_EXPORTER_ENDPONT (did you mean CCE_EXPORTER_ENDPOINT?)"
    ]
    assert "# notice: ignoring unknown variable CCE_EXPORTER_ENDPONT" in (
        render_effective_config(settings)
    )


# --- errors -----------------------------------------------------------------------------------

DOMAIN = {"CCE_EXPORTER_DOMAIN": "d"}
PASSWORD = {"CCE_EXPORTER_PASSWORD": "PASSWORD-SECRET-456"}
HOOK = {"CCE_EXPORTER_HOOK_TOKEN": "HOOK-SECRET-000"}

BAD_ENV: list[tuple[dict[str, str | None], str]] = [
    ({"CCE_EXPORTER_ENDPOINT": None}, "CCE_EXPORTER_ENDPOINT (endpoint) is required"),
    ({"CCE_EXPORTER_ENDPOINT": "cce.example.com"}, "CCE_EXPORTER_ENDPOINT (endpoint, set in"),
    ({"CCE_EXPORTER_ENDPOINT": "cce.example.com"}, "has no scheme"),
    ({"CCE_EXPORTER_ENDPOINT": "ftp://cce.example.com"}, "must use http:// or https://"),
    ({"CCE_EXPORTER_ENDPOINT": "https://bad host"}, "is not a valid URL"),
    ({"CCE_EXPORTER_ENDPOINT": "https://h:99999"}, "is not a valid URL"),
    ({"CCE_EXPORTER_ENDPOINT": "https://u:p@h.example"}, "must not contain user or password"),
    ({"CCE_EXPORTER_IAM_ENDPOINT": "iam.example"}, "CCE_EXPORTER_IAM_ENDPOINT (iam_endpoint"),
    ({"CCE_EXPORTER_ADDON_ENDPOINT": "https://{id}.x"}, "CCE_EXPORTER_ADDON_ENDPOINT"),
    ({"CCE_EXPORTER_ADDON_ENDPOINT": "https://{id}.x"}, "the only placeholder is {cluster_id}"),
    ({"CCE_EXPORTER_AUTH_METHOD": "oauth"}, "CCE_EXPORTER_AUTH_METHOD (auth_method"),
    ({"CCE_EXPORTER_AK": None}, "CCE_EXPORTER_AK (ak) is required when auth_method is aksk"),
    (
        {"CCE_EXPORTER_SK": None},
        "CCE_EXPORTER_SK (sk) is required when auth_method is aksk: set CCE_EXPORTER_SK or sk "
        "in the config file",
    ),
    (
        {"CCE_EXPORTER_AUTH_METHOD": "password", "CCE_EXPORTER_USERNAME": "u", **DOMAIN},
        "CCE_EXPORTER_PASSWORD (password) is required when auth_method is password",
    ),
    (
        {"CCE_EXPORTER_AUTH_METHOD": "password", "CCE_EXPORTER_USERNAME": "u", **PASSWORD},
        "CCE_EXPORTER_DOMAIN (domain) is required when auth_method is password",
    ),
    (
        {
            "CCE_EXPORTER_AUTH_METHOD": "password",
            "CCE_EXPORTER_ENDPOINT": "http://127.0.0.1:1",
            "CCE_EXPORTER_USERNAME": "u",
            "CCE_EXPORTER_PASSWORD": "PASSWORD-SECRET-456",
            "CCE_EXPORTER_DOMAIN": "d",
        },
        "CCE_EXPORTER_IAM_ENDPOINT (iam_endpoint) is required when auth_method is password",
    ),
    (
        {"CCE_EXPORTER_AUTH_METHOD": "token"},
        "CCE_EXPORTER_TOKEN or CCE_EXPORTER_TOKEN_FILE (token / token_file) is required",
    ),
    (
        {
            "CCE_EXPORTER_AUTH_METHOD": "token",
            "CCE_EXPORTER_TOKEN": "TOKEN-SECRET-789",
            "CCE_EXPORTER_TOKEN_FILE": "/etc/hostname",
        },
        "CCE_EXPORTER_TOKEN and CCE_EXPORTER_TOKEN_FILE (token / token_file) are both set",
    ),
    (
        {"CCE_EXPORTER_PROJECT_ID": None},
        "CCE_EXPORTER_PROJECT_ID or CCE_EXPORTER_PROJECT_NAME (project_id / project_name) is "
        "required",
    ),
    ({"CCE_EXPORTER_NODES_INTERVAL": "0"}, "CCE_EXPORTER_NODES_INTERVAL (resources.nodes.interval"),
    ({"CCE_EXPORTER_NODES_INTERVAL": "-5s"}, "is not a duration"),
    ({"CCE_EXPORTER_JOBS_INTERVAL": "-1"}, "must be greater than zero"),
    ({"CCE_EXPORTER_JOB_RETENTION": "forever"}, "CCE_EXPORTER_JOB_RETENTION (job_retention"),
    ({"CCE_EXPORTER_TIMEOUT": "10 parsecs"}, "CCE_EXPORTER_TIMEOUT (timeout"),
    ({"CCE_EXPORTER_RETRY_DEADLINE": "0s"}, "CCE_EXPORTER_RETRY_DEADLINE (retry_deadline"),
    ({"CCE_EXPORTER_MAX_RETRIES": "-1"}, "CCE_EXPORTER_MAX_RETRIES (max_retries"),
    ({"CCE_EXPORTER_CONCURRENCY": "0"}, "CCE_EXPORTER_CONCURRENCY (concurrency"),
    ({"CCE_EXPORTER_REQUESTS_PER_SECOND": "0"}, "CCE_EXPORTER_REQUESTS_PER_SECOND"),
    ({"CCE_EXPORTER_LISTEN": "9877"}, "CCE_EXPORTER_LISTEN (listen"),
    ({"CCE_EXPORTER_LISTEN": "::1:9877"}, "IPv6 addresses need brackets"),
    ({"CCE_EXPORTER_LISTEN": "0.0.0.0:70000"}, "invalid port"),
    ({"CCE_EXPORTER_LOG_LEVEL": "loud"}, "CCE_EXPORTER_LOG_LEVEL (log_level"),
    ({"CCE_EXPORTER_LOG_FORMAT": "xml"}, "CCE_EXPORTER_LOG_FORMAT (log_format"),
    ({"CCE_EXPORTER_STATE_SETS": "some"}, "CCE_EXPORTER_STATE_SETS (state_sets"),
    ({"CCE_EXPORTER_DRY_RUN": "perhaps"}, "CCE_EXPORTER_DRY_RUN (dry_run"),
    ({"CCE_EXPORTER_LABELS": "bad-name=x"}, "invalid label name(s) bad-name"),
    ({"CCE_EXPORTER_LABELS": "cluster=x"}, "label name(s) cluster are set by the exporter"),
    ({"CCE_EXPORTER_LABELS": "__meta=x"}, "invalid label name(s) __meta"),
    ({"CCE_EXPORTER_LABELS": "region"}, "CCE_EXPORTER_LABELS: expected name=value pairs"),
    ({"CCE_EXPORTER_CA_FILE": "/nonexistent/ca.pem"}, "CCE_EXPORTER_CA_FILE (ca_file"),
    ({"CCE_EXPORTER_CA_FILE": "/nonexistent/ca.pem"}, "does not exist: /nonexistent/ca.pem"),
    ({"CCE_EXPORTER_POLICY_FILE": "/nonexistent/p.yaml"}, "CCE_EXPORTER_POLICY_FILE (policy_file"),
    ({"CCE_EXPORTER_STATE_FILE": "/nonexistent/dir/state.json"}, "CCE_EXPORTER_STATE_FILE"),
    (
        {"CCE_EXPORTER_SHARD": "2", "CCE_EXPORTER_TOTAL_SHARDS": "2"},
        "CCE_EXPORTER_SHARD (shard) must be less than CCE_EXPORTER_TOTAL_SHARDS (total_shards)",
    ),
    ({"CCE_EXPORTER_TOTAL_SHARDS": "0"}, "CCE_EXPORTER_TOTAL_SHARDS (total_shards"),
    (
        {
            "CCE_EXPORTER_HOOK_TOKEN": "HOOK-SECRET-000",
            "CCE_EXPORTER_HOOK_TOKEN_FILE": "/etc/hosts",
        },
        "CCE_EXPORTER_HOOK_TOKEN and CCE_EXPORTER_HOOK_TOKEN_FILE",
    ),
    ({"CCE_EXPORTER_TARGETS__NOPE__SK": "x"}, "CCE_EXPORTER_TARGETS__NOPE__*: no target"),
    ({"CCE_EXPORTER_CONFIG": "/nonexistent/config.yaml"}, "config file /nonexistent/config.yaml"),
]


@pytest.mark.parametrize(("change", "expected"), BAD_ENV, ids=lambda v: str(v)[:60])
def test_each_bad_setting_is_named(change: dict[str, str | None], expected: str) -> None:
    env = {k: v for k, v in {**BASE_ENV, **change}.items() if v is not None}
    message = problems_of(env=env)
    assert expected in message
    # One problem only: each bad setting gives its own line, not a cascade.
    assert message.count("\n  - ") == 1, message


def test_all_problems_are_reported_together() -> None:
    message = problems_of(
        env={
            "CCE_EXPORTER_ENDPOINT": "cce.example.com",
            "CCE_EXPORTER_LISTEN": "x",
            "CCE_EXPORTER_LOG_LEVEL": "loud",
            "CCE_EXPORTER_SHARD": "3",
            "CCE_EXPORTER_TOTAL_SHARDS": "2",
        }
    )
    for name in (
        "CCE_EXPORTER_ENDPOINT",
        "CCE_EXPORTER_LISTEN",
        "CCE_EXPORTER_LOG_LEVEL",
        "CCE_EXPORTER_SHARD",
        "CCE_EXPORTER_AK",
        "CCE_EXPORTER_SK",
        "CCE_EXPORTER_PROJECT_ID",
    ):
        assert f"  - {name}" in message, name
    assert message.startswith("invalid configuration (7 problems):\n")


BAD_FILES: list[tuple[str, str]] = [
    (
        "endpont: https://x.example\n",
        "endpont: unknown key 'endpont' in the config file (did you mean endpoint?)",
    ),
    (
        "targets:\n  - name: a\n    projectid: p\n",
        "targets[0].projectid: unknown key 'projectid' in the config file (did you mean "
        "project_id?)",
    ),
    (
        "targets:\n  - name: a\n    listen: ':1'\n",
        "targets[0].listen: unknown key 'listen' in the config file: listen is a process "
        "setting, move it to the top level",
    ),
    (
        "resources: {node: {interval: 5}}\n",
        "resources.node: unknown key 'node' in the config file (did you mean nodes?)",
    ),
    ("resources: {nodes: {intervall: 5}}\n", "resources.nodes.intervall: unknown key"),
    ("targets:\n  - name: a\n  - name: a\n", "the name 'a' is used by more than one target"),
    ("targets:\n  - project_id: p\n", "targets[0].name is required"),
    ("targets: []\n", "targets: must be a non-empty list"),
    ("targets: [3]\n", "targets[0]: must be a mapping"),
    ("name: solo\ntargets:\n  - name: a\n", "cannot be used with a targets: list"),
    (
        "targets:\n  - name: a\n    sk: null\n",
        "CCE_EXPORTER_SK (targets[0].sk) is required when auth_method is aksk: set "
        "CCE_EXPORTER_SK or targets[].sk in the config file",
    ),
    (
        "targets:\n  - name: a\n    resources: {jobs: {interval: 1x}}\n",
        "CCE_EXPORTER_JOBS_INTERVAL (targets[0].resources.jobs.interval, set in the config file)"
        ": is not a duration",
    ),
    (
        "targets:\n  - name: a\n    labels: {node: n1}\n",
        "CCE_EXPORTER_LABELS (targets[0].labels, set in the config file): label name(s) node",
    ),
    (
        "targets:\n  - name: a\n    labels: {billing_mode: x, job: y}\n",
        "CCE_EXPORTER_LABELS (targets[0].labels, set in the config file): label name(s) "
        "billing_mode, job are set by the exporter itself",
    ),
    ("timeout: [1]\n", "CCE_EXPORTER_TIMEOUT (timeout, set in the config file)"),
    ("endpoint: [\n", "invalid YAML at line 2, column 1"),
    ("a: 1\n  b: 2\n", "invalid YAML at line 2, column 4"),
    ("ak: x\nak: y\n", "invalid YAML at line 2, column 1: duplicate key 'ak'"),
    ("- 1\n", "the top level must be a mapping"),
    ("labels: [a]\n", "CCE_EXPORTER_LABELS (labels, set in the config file): must be a mapping"),
    (
        "resources: {nodes: 5}\n",
        "CCE_EXPORTER_NODES_ENABLED / _INTERVAL (resources.nodes, set in the config file): must "
        "be a mapping",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES, ids=lambda v: str(v)[:40])
def test_bad_config_file(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    env = {**BASE_ENV, "CCE_EXPORTER_PROJECT_ID": "p"}
    message = problems_of(path, env=env)
    assert expected in message
    assert message.count("\n  - ") == 1, message


def test_per_target_env_names_must_be_unambiguous(tmp_path: Path) -> None:
    path = write(tmp_path, "targets:\n  - name: eu-west\n  - name: eu_west\n")
    env = {**BASE_ENV, "CCE_EXPORTER_TARGETS__EU_WEST__SK": "x"}
    assert "targets eu-west, eu_west share this variable name" in problems_of(path, env=env)
    # Without a per-target variable the two names can coexist.
    assert len(load_settings(path, env=BASE_ENV).targets) == 2


def test_auth_method_is_case_insensitive() -> None:
    settings = load_settings(env={**BASE_ENV, "CCE_EXPORTER_AUTH_METHOD": "AKSK"})
    assert settings.targets[0].auth_method == "aksk"


def test_missing_config_file_says_where_the_path_came_from(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert f"config file {missing} (from --config) does not exist" in problems_of(missing)
    from_env = problems_of(env={"CCE_EXPORTER_CONFIG": str(missing)})
    assert "(from CCE_EXPORTER_CONFIG)" in from_env


def test_duplicate_yaml_key_is_named(tmp_path: Path) -> None:
    message = problems_of(write(tmp_path, "ak: x\nak: y\n"))
    assert "duplicate key 'ak'" in message


# --- secrets ----------------------------------------------------------------------------------

SECRET_ENV = {
    "CCE_EXPORTER_SK": "SK-SECRET-123",
    "CCE_EXPORTER_PASSWORD": "PASSWORD-SECRET-456",
    "CCE_EXPORTER_TOKEN": "TOKEN-SECRET-789",
    "CCE_EXPORTER_HOOK_TOKEN": "HOOK-SECRET-000",
}


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_secrets_never_in_render_or_repr() -> None:
    settings = load_settings(env={**BASE_ENV, **SECRET_ENV})
    target = settings.targets[0]
    assert isinstance(target.password, SecretStr)
    assert target.token is not None and target.token.get_secret_value() == "TOKEN-SECRET-789"
    rendered = render_effective_config(settings)
    assert_no_secret(rendered)
    assert_no_secret(repr(settings))
    assert_no_secret(str(settings))
    assert_no_secret(repr(settings.model_dump()))
    assert rendered.count("'********'") == 5  # ak, sk, password, token, hook_token
    assert "#   sk: environment variable CCE_EXPORTER_SK" in rendered


def test_render_round_trips(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MULTI), env={})
    rendered = write(tmp_path, render_effective_config(settings), "effective.yaml")
    again = load_settings(rendered, env={})
    masked = {"targets": {"__all__": {"ak", "sk", "password", "token"}}}
    assert again.model_dump(exclude=masked) == settings.model_dump(exclude=masked)


SECRET_ERRORS: list[dict[str, Any]] = [
    # Secrets in fields of the wrong type, beside every kind of error, and in bad values.
    {"env": {"CCE_EXPORTER_ENDPOINT": "SK-SECRET-123"}},
    {"env": {"CCE_EXPORTER_AUTH_METHOD": "PASSWORD-SECRET-456"}},
    {"env": {"CCE_EXPORTER_LISTEN": "TOKEN-SECRET-789"}},
    {"env": {"CCE_EXPORTER_LABELS": "HOOK-SECRET-000=1"}},
    {"env": {"CCE_EXPORTER_LABELS": "HOOK-SECRET-000"}},
    {"env": {"CCE_EXPORTER_NODES_INTERVAL": "SK-SECRET-123"}},
    {"env": {"CCE_EXPORTER_CA_FILE": "TOKEN-SECRET-789"}},
    {"env": {"CCE_EXPORTER_MAX_RETRIES": "PASSWORD-SECRET-456"}},
    {"env": {"CCE_EXPORTER_SK_TYPO": "SK-SECRET-123", "CCE_EXPORTER_AK": ""}},
    {"env": {"CCE_EXPORTER_TARGETS__X__SK": "SK-SECRET-123"}},
    {"file": "sk: [SK-SECRET-123]\n", "env": {"CCE_EXPORTER_SK": None}},
    {
        "file": "password: {a: PASSWORD-SECRET-456}\nauth_method: password\n",
        "env": {"CCE_EXPORTER_PASSWORD": None},
    },
    {"file": "token: TOKEN-SECRET-789\ntoken_file: /etc/hosts\nauth_method: token\n"},
    {"file": "hook_token: {x: HOOK-SECRET-000}\n", "env": {"CCE_EXPORTER_HOOK_TOKEN": None}},
    {"file": "sk: SK-SECRET-123\n  oops: [\n"},
    {"file": "sk: 'SK-SECRET-123\n"},
    {"file": "sk: SK-SECRET-123\nsk: SK-SECRET-123\n"},
    {"file": "SK-SECRET-123: 1\n"},
    {"file": "targets:\n  - name: a\n    sk: [SK-SECRET-123]\n    timeout: TOKEN-SECRET-789\n"},
]


@pytest.mark.parametrize("case", SECRET_ERRORS, ids=lambda c: str(c)[:50])
def test_secrets_never_in_error_messages(tmp_path: Path, case: dict[str, Any]) -> None:
    env = {k: v for k, v in {**BASE_ENV, **SECRET_ENV, **case.get("env", {})}.items() if v}
    path = write(tmp_path, case["file"]) if "file" in case else None
    with pytest.raises(ConfigError) as info:
        load_settings(path, env=env)
    assert_no_secret(str(info.value))
    assert_no_secret(repr(info.value))
    assert info.value.problems
    # A traceback prints chained exceptions; pydantic's would echo the input values.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


def test_direct_construction_errors_do_not_echo_secrets() -> None:
    with pytest.raises(ValidationError) as info:
        TargetConfig.model_validate({"endpoint": "nope", "sk": ["SK-SECRET-123"], "project_id": 1})
    assert_no_secret(repr(info.value.errors(include_input=False)))
    assert {e["loc"] for e in info.value.errors()} == {("endpoint",), ("sk",)}


# --- models used directly ---------------------------------------------------------------------


def test_models_check_themselves_when_built_directly() -> None:
    target = TargetConfig(endpoint=ENDPOINT, project_id="p", ak="a", sk=SecretStr("s"))
    assert target.addon_url("c") == "https://c.cce.ap-southeast-1.myhuaweicloud.com"
    with pytest.raises(ValueError, match="CCE_EXPORTER_SK"):
        TargetConfig(endpoint=ENDPOINT, project_id="p", ak="a")
    with pytest.raises(ValueError, match="more than one target"):
        Settings(targets=[target, target])
    assert ResourcesConfig().get("quotas").interval == 300.0
    with pytest.raises(KeyError):
        ResourcesConfig().get("pods")


# --- parsers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (45, 45.0),
        (1.5, 1.5),
        ("45", 45.0),
        (" 30s ", 30.0),
        ("5m", 300.0),
        ("24h", 86400.0),
        ("1h30m", 5400.0),
        ("1d", 86400.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("2m30s", 150.0),
        ("-3", -3.0),
    ],
)
def test_parse_duration(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "5x", "h", "1h 30m", "nan", "inf", "-5s", True, "5 m"])
def test_parse_duration_refuses(value: str | bool) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0:9877", (ANY, 9877)),
        (":9877", (ANY, 9877)),
        ("[::1]:0", ("::1", 0)),
        ("[::]:9877", ("::", 9877)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["9877", "host:", "host:x", "[::1]9877", "[zz]:1", "a b:1"])
def test_parse_listen_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(value)


# --- documentation ----------------------------------------------------------------------------


def test_docs_list_every_setting() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    rows = set(re.findall(r"`(CCE_EXPORTER_[A-Z_<>]+)`", docs))
    for suffix in (*PROCESS_ENV, *TARGET_ENV):
        if suffix.endswith(("_ENABLED", "_INTERVAL")) and suffix.rsplit("_", 1)[0].lower() in (
            RESOURCE_NAMES
        ):
            continue  # documented once as CCE_EXPORTER_<RESOURCE>_INTERVAL / _ENABLED
        assert f"CCE_EXPORTER_{suffix}" in rows, suffix
    for field in TARGET_FIELDS:
        assert f"`{field}`" in docs, field
    assert "CCE_EXPORTER_<RESOURCE>_INTERVAL" in rows
    assert "CCE_EXPORTER_<RESOURCE>_ENABLED" in rows
