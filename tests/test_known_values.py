"""Dashboards and alert rules name only phases and statuses the models know.

A phase spelled in a query (``phase="RepairFailed"``, ``status=~"abnormal|rollbackFailed"``) that
the models do not list can never match: the exporter reports it as ``unknown``. This keeps the
rules, the dashboards' colour maps and the models' state sets in step.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from test_alerts import load_rules
from test_dashboards import UIDS, load, queries

from dashboards import generate
from exporter.cce import models
from exporter.metrics.clusters import CONDITION_STATES
from exporter.metrics.nodepools import NODE_STATES

UNKNOWN = "unknown"
KNOWN: dict[tuple[str, str], frozenset[str]] = {
    ("cce_cluster_status_phase", "phase"): frozenset(models.CLUSTER_PHASES),
    ("cce_node_status_phase", "phase"): frozenset(models.NODE_PHASES),
    ("cce_nodepool_status_phase", "phase"): frozenset(models.NODEPOOL_PHASES),
    ("cce_addon_status", "status"): frozenset(models.ADDON_STATUSES),
    ("cce_job_status_phase", "phase"): frozenset(models.JOB_PHASES),
    ("cce_cluster_status_condition", "status"): frozenset(CONDITION_STATES),
    ("cce_nodepool_status_condition", "status"): frozenset(CONDITION_STATES),
    ("cce_nodepool_status_condition", "condition"): frozenset(models.NODEPOOL_CONDITION_TYPES),
    ("cce_nodepool_status_nodes", "state"): frozenset(state for state, _ in NODE_STATES),
}

_SELECTOR = re.compile(r"(cce_\w+)\{([^}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|=|!=|!~)\s*"([^"]*)"')
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def spelled_values(expr: str) -> Iterator[tuple[str, str, str]]:
    """(family, label, value) for every literal value a matcher names in ``expr``."""
    for family, body in _SELECTOR.findall(expr):
        for label, _op, value in _MATCHER.findall(body):
            for part in value.split("|"):
                if _PLAIN.match(part):  # regex pieces and $variables are not literal values
                    yield family, label, part


def all_expressions() -> Iterator[tuple[str, str]]:
    for rule in load_rules():
        yield f"alert {rule.get('alert', rule.get('record'))}", rule["expr"]
    for name in UIDS:
        for title, expr in queries(load(name)):
            yield f"dashboard {name}: {title}", expr


def test_every_spelled_phase_is_known() -> None:
    checked = 0
    for where, expr in all_expressions():
        for family, label, value in spelled_values(expr):
            known = KNOWN.get((family, label))
            if known is None:
                continue
            checked += 1
            assert value in known or value == UNKNOWN, f"{where}: {family}{{{label}={value!r}}}"
    assert checked > 20


@pytest.mark.parametrize(
    ("colours", "known"),
    [
        (generate.CLUSTER_PHASES, models.CLUSTER_PHASES),
        (generate.NODE_PHASES, models.NODE_PHASES),
        (generate.NODEPOOL_PHASES, models.NODEPOOL_PHASES),
        (generate.ADDON_STATUSES, models.ADDON_STATUSES),
        (generate.JOB_PHASES, models.JOB_PHASES),
    ],
)
def test_dashboard_colours_cover_exactly_the_known_values(
    colours: dict[str, str], known: tuple[str, ...]
) -> None:
    assert set(colours) == {*known, UNKNOWN}


def test_an_unknown_phase_in_a_rule_would_be_caught() -> None:
    found = list(spelled_values('cce_node_status_phase{phase=~"Active|Melting|.*x"} == 1'))
    assert ("cce_node_status_phase", "phase", "Melting") in found
    assert "Melting" not in KNOWN[("cce_node_status_phase", "phase")]
