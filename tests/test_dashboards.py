"""Lint of the Grafana dashboards: structure, data source variable, template variables, metric
names against the metric contract, coverage of every family, PromQL syntax (promtool) and drift
from dashboards/generate.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from promtool_helpers import check_rules, needs_promtool, run_rule_tests
from test_alerts import (
    CONTRACT_FAMILIES,
    exported_families,
    family_of,
    metric_names,
)

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "dashboards"
NOT_SHOWN = DASHBOARD_DIR / "NOT_SHOWN.md"
DS = {"type": "prometheus", "uid": "${datasource}"}
UIDS = {
    "cce-overview.json": "cce-overview",
    "cce-cluster.json": "cce-cluster",
    "cce-hibernation.json": "cce-hibernation",
    "cce-exporter.json": "cce-exporter",
    "cce-workloads.json": "cce-workloads",
}
NO_QUERY_PANELS = {"row", "text"}

Dashboard = dict[str, Any]


def load(name: str) -> Dashboard:
    data: Dashboard = json.loads((DASHBOARD_DIR / name).read_text(encoding="utf-8"))
    return data


def all_panels(dashboard: Dashboard) -> Iterator[dict[str, Any]]:
    for item in dashboard["panels"]:
        yield item
        yield from item.get("panels", [])  # panels inside collapsed rows


def queries(dashboard: Dashboard) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable (the series selector of
    a ``label_values(selector, label)`` query)."""
    for item in all_panels(dashboard):
        for t in item.get("targets", []):
            yield item["title"], t["expr"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"] if isinstance(var["query"], str) else var["query"]["query"]
            selector = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            assert selector, f"variable {var['name']}: not label_values(selector, label)"
            yield f"variable {var['name']}", selector.group(1)


def test_the_expected_dashboards_exist() -> None:
    assert {p.name for p in DASHBOARD_DIR.glob("*.json")} == set(UIDS)


@pytest.mark.parametrize("name", sorted(UIDS))
def test_dashboard_structure(name: str) -> None:
    d = load(name)
    assert d["uid"] == UIDS[name]
    assert d["title"].startswith("CCE / ")
    assert d["schemaVersion"] >= 38
    assert "cce" in d["tags"]
    assert any(link["type"] == "dashboards" and "cce" in link["tags"] for link in d["links"])
    ids = [p["id"] for p in all_panels(d)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in all_panels(d):
        assert p.get("title"), f"panel {p['id']} has no title"
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24, p["title"]
        if p["type"] in NO_QUERY_PANELS:
            continue
        assert p["datasource"] == DS, p["title"]
        assert p["targets"], f"{p['title']}: no query"
        for t in p["targets"]:
            assert t["expr"].strip(), p["title"]
            assert t.get("datasource", DS) == DS, p["title"]
        assert p["fieldConfig"]["defaults"].get("unit"), f"{p['title']}: no unit"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_no_hard_coded_datasource_uid(name: str) -> None:
    text = (DASHBOARD_DIR / name).read_text(encoding="utf-8")
    uids = set(re.findall(r'"uid": "([^"]*)"', text))
    assert uids <= {UIDS[name], "${datasource}", "-- Grafana --"}


@pytest.mark.parametrize("name", sorted(UIDS))
def test_template_variables(name: str) -> None:
    d = load(name)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource"
    assert ds["query"] == "prometheus"
    wanted = ["project", "instance"] if name == "cce-exporter.json" else ["project", "cluster"]
    for var_name in wanted:
        var = variables[var_name]
        assert var["type"] == "query"
        assert var["datasource"] == DS
        assert var["query"].startswith("label_values("), var_name
        assert var["multi"] is True
        assert var["includeAll"] is True
    # Every variable a query uses is defined.
    builtin = {"__rate_interval", "__range", "__interval"}
    for where, expr in queries(d):
        for used in re.findall(r"\$\{?(\w+)", expr):
            assert used in variables or used in builtin, f"{where}: ${used} undefined"


@pytest.mark.parametrize("name", sorted(UIDS))
def test_queries_use_only_exported_metrics(name: str) -> None:
    families = exported_families()
    for where, expr in queries(load(name)):
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for metric in names:
            assert family_of(metric, families), f"{name} {where}: unknown metric {metric}"


def _not_shown() -> dict[str, str]:
    rows = re.findall(r"^\|\s*`([^`]+)`\s*\|\s*(.+?)\s*\|\s*$", NOT_SHOWN.read_text(), re.M)
    return dict(rows)


def test_every_contract_family_is_shown_or_excused() -> None:
    shown: set[str] = set()
    for name in UIDS:
        for _, expr in queries(load(name)):
            shown |= {family_of(m, CONTRACT_FAMILIES) or m for m in metric_names(expr)}
    excused = _not_shown()
    for family, reason in excused.items():
        assert family in CONTRACT_FAMILIES, f"NOT_SHOWN.md lists unknown {family}"
        assert family not in shown, f"NOT_SHOWN.md lists {family}, which a dashboard shows"
        assert reason, family
    assert CONTRACT_FAMILIES - shown - set(excused) == set()


def _substitute(expr: str) -> str:
    """Grafana variables replaced by values Prometheus accepts, for a syntax check."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


@needs_promtool
def test_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every panel query parses: promtool checks them as recording rules."""
    rules: list[dict[str, str]] = []
    for name in sorted(UIDS):
        for _, expr in queries(load(name)):
            rules.append({"record": f"dashboard:query:{len(rules)}", "expr": _substitute(expr)})
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in check_rules(path)


def test_committed_dashboards_match_the_generator(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dashboards.generate", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # And the check does fail on a drifted file.
    for name in UIDS:
        (tmp_path / name).write_text((DASHBOARD_DIR / name).read_text().replace("CCE /", "X /"))
    result = subprocess.run(
        [sys.executable, "-m", "dashboards.generate", "--check", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "cce-overview.json is out of date" in result.stderr


def test_provisioning_example() -> None:
    config = yaml.safe_load((DASHBOARD_DIR / "provisioning" / "dashboards.yaml").read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]


def _panel_expr(name: str, title: str, ref: str = "A") -> str:
    (found,) = [p for p in all_panels(load(name)) if p["title"] == title and p["type"] != "row"]
    return str(next(t["expr"] for t in found["targets"] if t["refId"] == ref))


@needs_promtool
def test_state_set_queries_give_the_expected_values(tmp_path: Path) -> None:
    """The encoded state timelines and the jobs-by-cluster-name join, evaluated by promtool."""
    c1 = 'project_id="p1", cluster_id="c1", cluster="prod", instance="e:1"'
    c2 = 'project_id="p1", cluster_id="c2", cluster="dev", instance="e:1"'
    job = 'project_id="p1", cluster_id="c2", job_id="j1"'
    series = [
        (f'cce_cluster_status_phase{{{c1}, phase="Available"}}', "1x5"),
        (f'cce_cluster_status_phase{{{c1}, phase="Hibernation"}}', "0x5"),
        # c2 in the "current value only" mode: no 0 series at all.
        (f'cce_cluster_status_phase{{{c2}, phase="Hibernation"}}', "1x5"),
        (f'cce_cluster_info{{{c1}, version="v1.28"}}', "1x5"),
        (f'cce_cluster_info{{{c2}, version="v1.28"}}', "1x5"),
        (
            f'cce_job_status_phase{{{job}, phase="Running"}}',
            "1x5",
        ),
        (
            f'cce_job_status_phase{{{job}, phase="Failed"}}',
            "0x5",
        ),
    ]
    cases = [
        (
            _panel_expr("cce-cluster.json", "Phase history"),
            [('{project_id="p1", cluster="prod"}', 0), ('{project_id="p1", cluster="dev"}', 11)],
        ),
        (
            _panel_expr("cce-overview.json", "Hibernation state"),
            [('{project_id="p1", cluster="prod"}', 0), ('{project_id="p1", cluster="dev"}', 2)],
        ),
        (
            _panel_expr("cce-cluster.json", "CCE jobs", "B"),
            [
                (
                    '{project_id="p1", cluster_id="c2", cluster="dev", job_id="j1", '
                    'phase="Running"}',
                    1,
                )
            ],
        ),
    ]
    test = {
        "rule_files": [],
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "promql_expr_test": [
                    {
                        "expr": _substitute(expr),
                        "eval_time": "2m",
                        "exp_samples": [{"labels": lab, "value": val} for lab, val in samples],
                    }
                    for expr, samples in cases
                ],
            }
        ],
    }
    path = tmp_path / "queries_test.yaml"
    path.write_text(yaml.safe_dump(test))
    run_rule_tests(path)


def _with_variables(expr: str, **values: str) -> str:
    """Grafana's substitution of the template variables: ``.*`` for All, else the value."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


@needs_promtool
def test_firing_alerts_follow_project_and_cluster(tmp_path: Path) -> None:
    """The Overview's firing-alert stat and table, evaluated by promtool with the variables at
    All and at one project and cluster: alerts of other clusters and projects go, alerts without
    a cluster (or a project) stay, job alerts follow their cluster_id."""
    panels = {
        p["type"]: p["targets"][0]["expr"]
        for p in all_panels(load("cce-overview.json"))
        if p["title"] == "Firing CCE alerts"
    }
    table, stat_expr = panels["table"], panels["stat"]
    alerts = {
        "prod": 'alertname="CCEClusterUnavailable", project_id="p1", cluster_id="c1", '
        'cluster="prod", phase="Error", severity="critical"',
        "job": 'alertname="CCEJobFailed", project_id="p1", cluster_id="c2", job_id="j1", '
        'phase="Failed", severity="warning"',
        "quota": 'alertname="CCEQuotaExhausted", project_id="p1", resource="cluster", '
        'severity="critical"',
        "down": 'alertname="CCEExporterDown", job="cce-exporter", instance="e:1", '
        'severity="critical"',
        "other-prod": 'alertname="CCEClusterUnavailable", project_id="p2", cluster_id="c3", '
        'cluster="prod", phase="Error", severity="critical"',
    }
    series = [(f'ALERTS{{{labels}, alertstate="firing"}}', "1x5") for labels in alerts.values()]
    series += [
        # Pending alerts and other alerts are never shown.
        (f'ALERTS{{{alerts["prod"]}, alertstate="pending"}}', "1x5"),
        ('ALERTS{alertname="NodeDown", alertstate="firing", severity="critical"}', "1x5"),
        ('cce_cluster_info{project_id="p1", cluster_id="c1", cluster="prod"}', "1x5"),
        ('cce_cluster_info{project_id="p1", cluster_id="c2", cluster="dev"}', "1x5"),
        ('cce_cluster_info{project_id="p2", cluster_id="c3", cluster="prod"}', "1x5"),
    ]
    cases = {
        (".*", ".*"): ["prod", "job", "quota", "down", "other-prod"],
        ("p1", ".*"): ["prod", "job", "quota", "down"],
        ("p1", "prod"): ["prod", "quota", "down"],
        (".*", "dev"): ["job", "quota", "down"],
        ("(p1|p2)", "(dev|prod)"): ["prod", "job", "quota", "down", "other-prod"],
    }
    expr_tests = []
    for (project, cluster), shown in cases.items():
        expr_tests.append(
            {
                "expr": _with_variables(table, project=project, cluster=cluster),
                "eval_time": "2m",
                "exp_samples": [
                    {"labels": f'ALERTS{{{alerts[name]}, alertstate="firing"}}', "value": 1}
                    for name in shown
                ],
            }
        )
        expr_tests.append(
            {
                "expr": _with_variables(stat_expr, project=project, cluster=cluster),
                "eval_time": "2m",
                "exp_samples": [{"labels": "{}", "value": len(shown)}],
            }
        )
    test = {
        "rule_files": [],
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "promql_expr_test": expr_tests,
            }
        ],
    }
    path = tmp_path / "alerts_panel_test.yaml"
    path.write_text(yaml.safe_dump(test))
    run_rule_tests(path)
