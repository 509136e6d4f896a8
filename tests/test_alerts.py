"""The alert rules: promtool check/test, the public alert list, runbook anchors, metric names
against the metric contract, and drift between alerts/thresholds.yaml and the generated files."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from promtool_helpers import check_rules, needs_promtool, promtool

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alerts" / "cce.rules.yaml"
PROMETHEUSRULE = ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml"
ALERT_DOCS = ROOT / "docs" / "alerts.md"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
TESTS_DIR = ROOT / "alerts" / "tests"


#: The alert names are a public interface (routes, silences and inhibitions refer to them).
ALERTS = {
    "CCEClusterCertificateExpiring",
    "CCEClusterCertificateExpired",
    "CCEClusterCertificateRotationFailed",
    "CCEClusterLocked",
    "CCENodePoolScaleBlocked",
    "CCENodeRepairFailed",
    "CCENodeStatusStale",
    "CCEExporterDown",
    "CCEExporterCollectFailing",
    "CCEExporterClusterCollectFailing",
    "CCEExporterDataStale",
    "CCEExporterShardsInconsistent",
    "CCEClusterUnavailable",
    "CCEClusterStuckInTransition",
    "CCEClusterNearNodeLimit",
    "CCENodeAbnormal",
    "CCENodePoolSoldOut",
    "CCENodePoolError",
    "CCEAddonUnhealthy",
    "CCEJobStuck",
    "CCEJobFailed",
    "CCEQuotaNearlyExhausted",
    "CCEQuotaExhausted",
    "CCEHibernationActionFailed",
    "CCEClusterWakeUpFailed",
    "CCEClusterAwakeOutsideSchedule",
}

#: The family names of the metric contract, used when exporter.metrics cannot say itself.
CONTRACT_FAMILIES = frozenset(
    {
        "cce_cluster_info",
        "cce_cluster_status_phase",
        "cce_cluster_status_phase_since_timestamp_seconds",
        "cce_cluster_created_timestamp_seconds",
        "cce_cluster_nodes",
        "cce_cluster_nodes_active",
        "cce_cluster_max_nodes",
        "cce_node_info",
        "cce_node_status_phase",
        "cce_node_status_phase_since_timestamp_seconds",
        "cce_node_created_timestamp_seconds",
        "cce_nodepool_info",
        "cce_nodepool_nodes",
        "cce_nodepool_initial_nodes",
        "cce_nodepool_autoscaling_enabled",
        "cce_nodepool_autoscaling_min_nodes",
        "cce_nodepool_autoscaling_max_nodes",
        "cce_nodepool_status_phase",
        "cce_addon_info",
        "cce_addon_status",
        "cce_job_info",
        "cce_job_status_phase",
        "cce_job_created_timestamp_seconds",
        "cce_job_completion_timestamp_seconds",
        "cce_job_duration_seconds",
        "cce_job_completed_duration_seconds",
        "cce_quota_limit",
        "cce_quota_used",
        "cce_hibernation_policy_info",
        "cce_hibernation_desired_state",
        "cce_hibernation_next_transition_timestamp_seconds",
        "cce_hibernation_override_until_timestamp_seconds",
        "cce_hibernation_actions_total",
        "cce_hibernation_action_duration_seconds",
        "cce_cluster_hibernated_seconds_total",
        "cce_hibernation_estimated_savings_total",
        "cce_exporter_build_info",
        "cce_exporter_collect_duration_seconds",
        "cce_exporter_collect_success",
        "cce_exporter_last_success_timestamp_seconds",
        "cce_exporter_api_requests_total",
        "cce_exporter_api_request_duration_seconds",
        "cce_exporter_api_retries_total",
        "cce_exporter_auth_refreshes_total",
        "cce_exporter_shard_ordinal",
        "cce_exporter_total_shards",
    }
)
#: Series Prometheus itself makes, which rules and dashboards may use too.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})

_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def exported_families() -> frozenset[str]:
    """The exporter's own list of families when importable, else the contract's."""
    try:
        from exporter.metrics.catalog import ALL_FAMILIES
    except ImportError:
        return CONTRACT_FAMILIES
    return frozenset(str(getattr(family, "name", family)) for family in ALL_FAMILIES)


def family_of(name: str, families: frozenset[str]) -> str | None:
    """The family a series name belongs to (histogram suffixes stripped), or None."""
    if name in families or name in PROMETHEUS_SERIES:
        return name
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in families:
            return name.removesuffix(suffix)
    return None


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACES = re.compile(r"\{[^}]*\}")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", re.IGNORECASE
)
_PROMQL_WORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "inf",
        "nan",
    }
)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are neither functions, keywords,
    label names (in braces or grouping clauses) nor strings."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors and subqueries
    text = re.sub(r"\$\w+|\$\{[^}]*\}", "", text)  # Grafana variables such as $__rate_interval
    text = re.sub(r"(?<![\w:])\d[\w.]*", "", text)  # numbers and durations (offset 1h)
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if word.lower() in _PROMQL_WORDS or rest.startswith("("):
            continue  # a keyword or a function call
        names.add(word)
    return names


def test_metric_names_parser() -> None:
    expr = (
        'sum by (le, type) (rate(cce_job_completed_duration_seconds_bucket{phase="Success"}[5m]))'
        " * on(project_id) group_left(cluster) cce_cluster_info"
        ' or up{job=~"a|b"} offset 1h and vector(1)'
    )
    assert metric_names(expr) == {
        "cce_job_completed_duration_seconds_bucket",
        "cce_cluster_info",
        "up",
    }


def load_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_every_public_alert_exists_once_and_is_documented() -> None:
    rules = load_rules()
    names = [rule["alert"] for rule in rules if "alert" in rule]
    assert sorted(names) == sorted(ALERTS)
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert _DURATION.match(str(rule["for"])), rule["alert"]
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description", "runbook_url"}, rule["alert"]
        # The description names the resource through the alert's own labels.
        assert "{{ $labels." in annotations["description"], rule["alert"]
        assert annotations["runbook_url"].endswith("docs/runbooks.md#" + rule["alert"].lower())


def _github_anchor(heading: str) -> str:
    anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return anchor.replace(" ", "-")


def test_every_runbook_anchor_exists() -> None:
    anchors = {
        _github_anchor(line.lstrip("#"))
        for line in RUNBOOKS.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for rule in load_rules():
        anchor = rule["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor in anchors, f"docs/runbooks.md has no section for {rule['alert']}"


def test_rules_use_only_exported_metrics() -> None:
    families = exported_families()
    for rule in load_rules():
        for name in metric_names(rule["expr"]):
            assert family_of(name, families), f"{rule['alert']}: unknown metric {name}"


def test_exporter_catalog_agrees_with_the_contract() -> None:
    """Once the exporter lists its families, every family of the contract must be among them."""
    families = exported_families()
    if families is CONTRACT_FAMILIES:
        pytest.skip("exporter.metrics.catalog.ALL_FAMILIES is not importable")
    assert CONTRACT_FAMILIES - families == set()


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alerts.generate", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_committed_files_match_the_generator() -> None:
    result = _generate("--check")
    assert result.returncode == 0, result.stderr


def test_drift_check_detects_a_changed_threshold(tmp_path: Path) -> None:
    thresholds = yaml.safe_load((ROOT / "alerts" / "thresholds.yaml").read_text())
    thresholds["alerts"]["CCEClusterNearNodeLimit"]["ratio"] = 0.8
    variant = tmp_path / "thresholds.yaml"
    variant.write_text(yaml.safe_dump(thresholds))
    result = _generate("--thresholds", str(variant), "--check")
    assert result.returncode == 1
    assert "cce.rules.yaml is out of date" in result.stderr


def test_prometheusrule_has_the_same_groups() -> None:
    doc = yaml.safe_load(PROMETHEUSRULE.read_text(encoding="utf-8"))
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["kind"] == "PrometheusRule"
    assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "cce-exporter"
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert doc["spec"]["groups"] == rules["groups"]


def test_alert_table_lists_every_alert() -> None:
    text = ALERT_DOCS.read_text(encoding="utf-8")
    for rule in load_rules():
        row = next(line for line in text.splitlines() if f"[{rule['alert']}]" in line)
        assert f"| {rule['labels']['severity']} | {rule['for']} |" in row


def test_variant_with_short_durations(tmp_path: Path) -> None:
    """What the end-to-end test does: render the rules with other `for` durations."""
    thresholds = yaml.safe_load((ROOT / "alerts" / "thresholds.yaml").read_text())
    for alert in thresholds["alerts"].values():
        alert["for"] = "10s"
    variant = tmp_path / "thresholds.yaml"
    variant.write_text(yaml.safe_dump(thresholds))
    out = tmp_path / "rules.yaml"
    result = _generate("--thresholds", str(variant), "--output", str(out))
    assert result.returncode == 0, result.stderr
    rules = [r for g in yaml.safe_load(out.read_text())["groups"] for r in g["rules"]]
    assert {r["for"] for r in rules} == {"10s"}
    assert not (tmp_path / "prometheusrule.yaml").exists()


@needs_promtool
def test_promtool_check_rules() -> None:
    assert f"SUCCESS: {len(ALERTS)} rules found" in check_rules(RULES)


def _promtool_test(tests_dir: Path) -> subprocess.CompletedProcess[str]:
    return promtool("test", "rules", *sorted(str(p) for p in tests_dir.glob("*.yaml")))


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = _promtool_test(TESTS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_every_alert_has_unit_tests_that_fire_it() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS_DIR.glob("*.yaml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
                    for alert in check["exp_alerts"]:
                        assert alert.get("exp_annotations"), check["alertname"]
                        assert alert.get("exp_labels", {}).get("severity"), check["alertname"]
                else:
                    quiet.add(check["alertname"])
    assert fired == ALERTS
    assert quiet == ALERTS


@needs_promtool
def test_unit_tests_catch_a_longer_for(tmp_path: Path) -> None:
    """The unit tests pin the `for` durations: rules rendered with other ones must fail them."""
    thresholds = yaml.safe_load((ROOT / "alerts" / "thresholds.yaml").read_text())
    for alert in thresholds["alerts"].values():
        alert["for"] = "3h"
    variant = tmp_path / "thresholds.yaml"
    variant.write_text(yaml.safe_dump(thresholds))
    rules_dir = tmp_path / "alerts"
    (rules_dir / "tests").mkdir(parents=True)
    result = _generate("--thresholds", str(variant), "--output", str(rules_dir / "cce.rules.yaml"))
    assert result.returncode == 0, result.stderr
    for path in TESTS_DIR.glob("*.yaml"):
        shutil.copy(path, rules_dir / "tests" / path.name)
    result = _promtool_test(rules_dir / "tests")
    assert result.returncode != 0
    for name in ALERTS:
        assert f"alertname: {name}," in result.stdout + result.stderr, name
