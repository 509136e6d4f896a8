"""Phases, statuses, condition types and reasons named by the dashboards and the alert rules are
the ones the exporter knows: the models' lists (exporter/cce/models/known.py), the metric
catalog's state sets and the metric contract's state-set table (tests/fixtures/METRICS.md).

Three places name such values: label matchers in queries (dashboards and alerts), the value
mappings that turn a state timeline's phase code back into a name, and the colours of phase
columns and per-phase series. A value that no model knows would never match a series; a known
phase missing from a mapping would show as a bare number or an uncoloured cell.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_alerts import load_rules
from test_dashboards import UIDS, all_panels, load, queries

from dashboards import phases
from exporter.cce import models
from exporter.metrics.catalog import ALL_FAMILIES
from exporter.metrics.clusters import CONDITION_STATES
from exporter.metrics.kube import JOB_CONDITIONS
from exporter.metrics.nodepools import NODE_STATES

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "tests" / "fixtures" / "METRICS.md"

Known = dict[tuple[str, str], tuple[str, ...]]


def contract_state_sets() -> Known:
    """The contract's state-set table: (family, label) -> known values."""
    rows = re.findall(
        r"^\|\s*`(\w+)`\s*\|\s*`(\w+)`\s*\|\s*([^|]+?)\s*\|\s*$", CONTRACT.read_text(), re.M
    )
    out: Known = {}
    for family, label, values in rows:
        words = [re.sub(r"\s*\(.*\)$", "", v.strip()) for v in values.split(",")]
        out[family, label] = tuple(words)
    return out


#: The state sets proper (one 0/1 series per value), whose per-value series the dashboards colour.
STATE_SETS: Known = {
    (name, doc.state_label): doc.states
    for name, doc in ALL_FAMILIES.items()
    if doc.states and doc.state_label
}


def known_values() -> Known:
    """What the exporter knows, per (family, label) that names a phase, status, state, condition
    type or reason."""
    known: Known = dict(STATE_SETS)
    known["cce_hibernation_override_until_timestamp_seconds", "state"] = known[
        "cce_hibernation_desired_state", "state"
    ]
    for kind, types in (
        ("cluster", models.CLUSTER_CONDITION_TYPES),
        ("nodepool", models.NODEPOOL_CONDITION_TYPES),
    ):
        known[f"cce_{kind}_status_condition", "condition"] = types
        known[f"cce_{kind}_status_condition", "status"] = CONDITION_STATES
        known[f"cce_{kind}_status_condition_reason", "condition"] = types
    known["cce_cluster_status_condition_reason", "reason"] = models.CLUSTER_CONDITION_REASONS
    known["cce_kube_job_status_condition", "condition"] = JOB_CONDITIONS
    known["cce_kube_job_status_condition", "status"] = CONDITION_STATES
    known["cce_nodepool_status_nodes", "state"] = tuple(state for state, _ in NODE_STATES)
    return known


KNOWN = known_values()
CONTRACT_SETS = contract_state_sets()

_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\s*\{([^{}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def _family(metric: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if metric not in ALL_FAMILIES and metric.endswith(suffix):
            return metric[: -len(suffix)]
    return metric


def matched_values(expr: str) -> Iterator[tuple[str, str, str, str]]:
    """(family, label, operator, value) of every label matcher whose label names a known value;
    a regex matcher gives one value per alternative. Grafana variables are left out."""
    for metric, body in _SELECTOR.findall(expr):
        family = _family(metric)
        for label, op, value in _MATCHER.findall(body):
            if (family, label) not in KNOWN or "$" in value:
                continue
            for alternative in value.split("|") if op in ("=~", "!~") else [value]:
                yield family, label, op, alternative


def unknown_values(expr: str) -> list[str]:
    """The matcher values of ``expr`` that match no known value (a regex alternative must match
    at least one), each as ``family{label="value"}``; also checked against the contract."""
    bad = []
    for family, label, op, value in matched_values(expr):
        sets = [KNOWN[family, label]]
        if (family, label) in CONTRACT_SETS:
            sets.append(CONTRACT_SETS[family, label])
        regex = op in ("=~", "!~")
        for values in sets:
            if not any(re.fullmatch(value, v) if regex else value == v for v in values):
                bad.append(f'{family}{{{label}{op}"{value}"}}')
                break
    return bad


def test_the_checker_finds_unknown_values() -> None:
    assert unknown_values('cce_cluster_status_phase{phase="Available"} == 1') == []
    assert unknown_values('cce_cluster_status_phase{cluster=~"$cluster", phase="Hibernated"}') == [
        'cce_cluster_status_phase{phase="Hibernated"}'
    ]
    assert unknown_values('cce_addon_status{status=~"running|Broken"}') == [
        'cce_addon_status{status=~"Broken"}'
    ]
    assert unknown_values('cce_cluster_status_condition_reason{reason=~"Certificate.*"}') == []
    assert unknown_values('cce_nodepool_status_condition{condition="Sold"}') == [
        'cce_nodepool_status_condition{condition="Sold"}'
    ]
    assert unknown_values('cce_node_status_phase{phase=~"Active|Melting"}') == [
        'cce_node_status_phase{phase=~"Melting"}'
    ]
    # Known to the models but not to the contract's state-set table: reported too.
    saved = CONTRACT_SETS["cce_job_status_phase", "phase"]
    CONTRACT_SETS["cce_job_status_phase", "phase"] = ("Running",)
    try:
        assert unknown_values('cce_job_status_phase{phase="Failed"}') == [
            'cce_job_status_phase{phase="Failed"}'
        ]
    finally:
        CONTRACT_SETS["cce_job_status_phase", "phase"] = saved


def test_the_contract_state_sets_are_the_models() -> None:
    for (family, label), values in CONTRACT_SETS.items():
        assert KNOWN[family, label] == values, family


def _dashboard_exprs() -> Iterator[tuple[str, str]]:
    for name in sorted(UIDS):
        for where, expr in queries(load(name)):
            yield f"{name} {where}", expr


def _alert_exprs() -> Iterator[tuple[str, str]]:
    for rule in load_rules():
        yield rule.get("alert") or rule["record"], rule["expr"]


@pytest.mark.parametrize("source", ["dashboards", "alerts"])
def test_queries_name_only_known_values(source: str) -> None:
    exprs = list(_dashboard_exprs() if source == "dashboards" else _alert_exprs())
    checked = {(f, label) for _, expr in exprs for f, label, _, _ in matched_values(expr)}
    # The check is not vacuous: the phases the rules and panels filter on are among those read.
    assert ("cce_cluster_status_phase", "phase") in checked
    assert ("cce_cluster_status_condition_reason", "reason") in checked
    if source == "alerts":
        for family in ("node", "nodepool", "job"):
            assert (f"cce_{family}_status_phase", "phase") in checked
        assert ("cce_addon_status", "status") in checked
    bad = [f"{where}: {value}" for where, expr in exprs for value in unknown_values(expr)]
    assert bad == []


_BRANCH = re.compile(r'\(\((\w+)\{[^}]*\b(\w+)="([^"]+)"\} == 1\) \* (\d+)\)')


def _mapping_texts(panel: dict[str, Any]) -> dict[str, str]:
    (mapping,) = panel["fieldConfig"]["defaults"]["mappings"]
    return {key: option["text"] for key, option in mapping["options"].items()}


def _phase_timelines() -> Iterator[tuple[str, dict[str, Any], str]]:
    for name in sorted(UIDS):
        for panel in all_panels(load(name)):
            for t in panel.get("targets", []):
                if panel["type"] == "state-timeline" and _BRANCH.search(t["expr"]):
                    yield f"{name} {panel['title']}", panel, t["expr"]


def test_phase_timelines_name_every_known_phase_by_its_code() -> None:
    """phase_code() gives each phase its index; the panel's mapping must turn that index back
    into the same phase, for every phase the models know (and unknown), in order."""
    timelines = list(_phase_timelines())
    assert len(timelines) >= 2
    for where, panel, expr in timelines:
        branches = _BRANCH.findall(expr)
        families = {(family, label) for family, label, _, _ in branches}
        assert len(families) == 1, where
        ((family, label),) = families
        phases = tuple(phase for _, _, phase, _ in branches)
        assert phases == KNOWN[family, label], where
        codes = {code: phase for _, _, phase, code in branches}
        assert _mapping_texts(panel) == codes, where


def _state_labels(panel: dict[str, Any], among: Known = KNOWN) -> dict[str, set[str]]:
    """label -> the known values of that label in the families the panel queries."""
    out: dict[str, set[str]] = {}
    for t in panel.get("targets", []):
        for metric, _ in _SELECTOR.findall(t["expr"]):
            for (family, label), values in among.items():
                if family == _family(metric):
                    out.setdefault(label, set()).update(values)
    return out


def _named_overrides(panel: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    for override in panel["fieldConfig"]["overrides"]:
        if override["matcher"]["id"] == "byName":
            for prop in override["properties"]:
                yield override["matcher"]["options"], prop["id"], prop["value"]


def test_phase_columns_and_series_colour_every_known_value() -> None:
    """A table column named after a phase/status/reason label maps exactly the known values of
    the families the table queries; per-phase series (legend ``{{phase}}``) have a colour for
    exactly the known phases."""
    seen = 0
    for name in sorted(UIDS):
        for panel in all_panels(load(name)):
            if "fieldConfig" not in panel:
                continue
            labels = _state_labels(panel)
            where = f"{name} {panel['title']}"
            for column, prop, value in _named_overrides(panel):
                if prop == "mappings" and column in labels:
                    (mapping,) = value
                    options = mapping["options"]
                    assert set(options) == labels[column], f"{where}: {column}"
                    assert all(o["text"] == v for v, o in options.items()), f"{where}: {column}"
                    seen += 1
            legends = {t.get("legendFormat") for t in panel.get("targets", [])}
            for label, values in _state_labels(panel, STATE_SETS).items():
                if legends == {f"{{{{{label}}}}}"}:
                    coloured = {c for c, prop, _ in _named_overrides(panel) if prop == "color"}
                    assert coloured == values, f"{where}: {label}"
                    seen += 1
    assert seen >= 8


def test_the_generator_colours_only_known_values() -> None:
    """The colour table is not a second list of phases: every name in it is a value the exporter
    knows."""
    every = {v for values in KNOWN.values() for v in values}
    stale = {name for names in phases.COLOURS.values() for name in names} - every
    assert stale == set()
