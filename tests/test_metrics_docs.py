"""The generated metric docs and the family catalog agree with the code and with METRICS.md."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.metrics import ALL_FAMILIES
from exporter.metrics.docs import render_markdown

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "metrics.md"
CONTRACT_MD = ROOT / "tests" / "fixtures" / "METRICS.md"

C = ("project_id", "cluster_id", "cluster")
#: Every family METRICS.md names, with its type and full label set (kept here so that this test
#: cannot pass silently when METRICS.md is absent).
EXPECTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "cce_cluster_info": (
        "gauge",
        (*C, "type", "flavor", "version", "container_network_mode", "category", "billing_mode"),
    ),
    "cce_cluster_status_phase": ("gauge", (*C, "phase")),
    "cce_cluster_status_phase_since_timestamp_seconds": ("gauge", C),
    "cce_cluster_created_timestamp_seconds": ("gauge", C),
    "cce_cluster_nodes": ("gauge", C),
    "cce_cluster_nodes_active": ("gauge", C),
    "cce_cluster_max_nodes": ("gauge", C),
    "cce_cluster_status_condition": ("gauge", (*C, "condition", "status")),
    "cce_cluster_status_condition_reason": ("gauge", (*C, "condition", "reason")),
    "cce_cluster_locked": ("gauge", (*C, "lock_scene", "lock_source")),
    "cce_cluster_control_plane_az_info": ("gauge", (*C, "az")),
    "cce_cluster_upgrade_available": ("gauge", C),
    "cce_cluster_upgrade_target_info": ("gauge", (*C, "target_version")),
    "cce_node_info": (
        "gauge",
        (*C, "node_id", "node", "flavor", "az", "os", "nodepool_id", "private_ip"),
    ),
    "cce_node_status_phase": ("gauge", (*C, "node_id", "node", "phase")),
    "cce_node_status_phase_since_timestamp_seconds": ("gauge", (*C, "node_id", "node")),
    "cce_node_created_timestamp_seconds": ("gauge", (*C, "node_id", "node")),
    "cce_node_status_last_probe_timestamp_seconds": ("gauge", (*C, "node_id", "node")),
    "cce_node_configuration_up_to_date": ("gauge", (*C, "node_id", "node")),
    "cce_nodepool_info": ("gauge", (*C, "nodepool_id", "nodepool", "flavor", "az", "os")),
    "cce_nodepool_nodes": ("gauge", (*C, "nodepool_id", "nodepool")),
    "cce_nodepool_initial_nodes": ("gauge", (*C, "nodepool_id", "nodepool")),
    "cce_nodepool_autoscaling_enabled": ("gauge", (*C, "nodepool_id", "nodepool")),
    "cce_nodepool_autoscaling_min_nodes": ("gauge", (*C, "nodepool_id", "nodepool")),
    "cce_nodepool_autoscaling_max_nodes": ("gauge", (*C, "nodepool_id", "nodepool")),
    "cce_nodepool_status_phase": ("gauge", (*C, "nodepool_id", "nodepool", "phase")),
    "cce_nodepool_status_condition": (
        "gauge",
        (*C, "nodepool_id", "nodepool", "condition", "status"),
    ),
    "cce_nodepool_status_condition_reason": (
        "gauge",
        (*C, "nodepool_id", "nodepool", "condition", "reason"),
    ),
    "cce_nodepool_status_nodes": ("gauge", (*C, "nodepool_id", "nodepool", "state")),
    "cce_nodepool_status_configuration_synced_nodes": ("gauge", (*C, "nodepool_id", "nodepool")),
    "cce_nodepool_scalegroup_nodes": (
        "gauge",
        (*C, "nodepool_id", "nodepool", "scalegroup", "state"),
    ),
    "cce_addon_info": ("gauge", (*C, "addon_id", "addon", "version", "type")),
    "cce_addon_status": ("gauge", (*C, "addon_id", "addon", "status")),
    "cce_addon_upgrade_available": ("gauge", (*C, "addon_id", "addon")),
    "cce_job_info": (
        "gauge",
        ("project_id", "cluster_id", "job_id", "type", "resource_id", "resource"),
    ),
    "cce_job_status_phase": ("gauge", ("project_id", "cluster_id", "job_id", "phase")),
    "cce_job_created_timestamp_seconds": ("gauge", ("project_id", "cluster_id", "job_id")),
    "cce_job_completion_timestamp_seconds": ("gauge", ("project_id", "cluster_id", "job_id")),
    "cce_job_duration_seconds": ("gauge", ("project_id", "cluster_id", "job_id")),
    "cce_job_completed_duration_seconds": ("histogram", ("type", "phase")),
    "cce_quota_limit": ("gauge", ("project_id", "resource", "unit", "region", "az")),
    "cce_quota_used": ("gauge", ("project_id", "resource", "unit", "region", "az")),
    "cce_hibernation_policy_info": ("gauge", (*C, "policy", "timezone", "dry_run")),
    "cce_hibernation_desired_state": ("gauge", (*C, "state")),
    "cce_hibernation_next_transition_timestamp_seconds": ("gauge", (*C, "action")),
    "cce_hibernation_override_until_timestamp_seconds": ("gauge", (*C, "state")),
    "cce_hibernation_actions_total": ("counter", (*C, "action", "result")),
    "cce_hibernation_action_duration_seconds": ("histogram", ("action",)),
    "cce_cluster_hibernated_seconds_total": ("counter", C),
    "cce_hibernation_estimated_savings_total": ("counter", (*C, "currency")),
    "cce_exporter_build_info": ("gauge", ("version", "python_version")),
    "cce_exporter_collect_duration_seconds": ("gauge", ("project_id", "resource")),
    "cce_exporter_collect_success": ("gauge", ("project_id", "resource")),
    "cce_exporter_last_success_timestamp_seconds": ("gauge", ("project_id", "resource")),
    "cce_exporter_cluster_collect_success": ("gauge", (*C, "resource")),
    "cce_exporter_api_requests_total": ("counter", ("endpoint", "method", "code")),
    "cce_exporter_api_request_duration_seconds": ("histogram", ("endpoint", "method")),
    "cce_exporter_api_retries_total": ("counter", ("endpoint", "reason")),
    "cce_exporter_auth_refreshes_total": ("counter", ("result",)),
    "cce_exporter_shard_ordinal": ("gauge", ()),
    "cce_exporter_total_shards": ("gauge", ()),
}

STATE_SETS = {
    "cce_cluster_status_phase": "Available, Unavailable, ScalingUp, ScalingDown, Creating, "
    "Deleting, Upgrading, Resizing, RollingBack, RollbackFailed, Hibernating, Hibernation, "
    "Awaking, Empty, Error, unknown",
    "cce_node_status_phase": "Build, Installing, Installed, ShutDown, Upgrading, Active, "
    "Abnormal, Deleting, Error, Repairing, RepairFailed, unknown",
    "cce_nodepool_status_phase": "Normal, Synchronizing, Synchronized, SoldOut, Deleting, Error, "
    "unknown",
    "cce_addon_status": "running, abnormal, installing, installFailed, upgrading, upgradeFailed, "
    "deleting, deleteSuccess, deleteFailed, available, unavailable, rollbacking, rollbackFailed, "
    "unknown",
    "cce_job_status_phase": "Initializing, Running, Failed, Success, unknown",
}


def test_committed_docs_match_the_tables() -> None:
    assert DOCS.read_text() == render_markdown(), (
        "docs/metrics.md drifted: run `python -m exporter.metrics.docs > docs/metrics.md`"
    )


def test_docs_module_runs_as_a_script() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "exporter.metrics.docs"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert proc.stdout == render_markdown()


def test_docs_list_every_family_and_state_value() -> None:
    doc = render_markdown()
    for name in EXPECTED:
        assert f"| `{name}` |" in doc, name
    for name, values in STATE_SETS.items():
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{name}` | `"))
        assert re.findall(r"`([^`]+)`", row.split("|")[3]) == values.split(", "), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_catalog_has_contract_family(name: str) -> None:
    mtype, labels = EXPECTED[name]
    doc = ALL_FAMILIES[name]
    assert doc.type == mtype
    assert doc.labels == labels


def test_state_set_values_in_catalog() -> None:
    for name, values in STATE_SETS.items():
        assert ALL_FAMILIES[name].states == tuple(values.split(", "))


def _parse_contract(text: str) -> dict[str, str]:
    """name -> type from every table row of METRICS.md that names a family."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`cce_"):
            continue
        kind = cells[1].split()[0] if cells[1] else ""
        if kind not in ("gauge", "counter", "histogram"):
            continue  # the state-set table
        names = re.findall(r"`([^`]+)`", cells[0])
        for n in names:
            out[n if n.startswith("cce_") else names[0][: -len(n)] + n] = kind
    return out


def test_expected_list_matches_metrics_md() -> None:
    documented = _parse_contract(CONTRACT_MD.read_text())
    assert documented == {n: t for n, (t, _) in EXPECTED.items()}
