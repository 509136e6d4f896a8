"""Every exported family in one place: the tables per render group, and the families that other
modules register as prometheus_client objects ("external": hibernation, API self-metrics).

``ALL_FAMILIES`` is what the docs and a dashboard or alert lint consult to know every family name,
type and label set the exporter can export.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Label names a target's static labels cannot use: written once, in the configuration.
from exporter.config import RESERVED_LABELS
from exporter.metrics import addons, clusters, jobs, kube, nodepools, nodes, quotas, selfmetrics
from exporter.metrics.spec import StateSet, Table

__all__ = [
    "ALL_FAMILIES",
    "EXTERNAL_FAMILIES",
    "GROUPS",
    "GROUP_TABLES",
    "RESERVED_LABELS",
    "FamilyDoc",
]

GROUPS: tuple[str, ...] = (
    "clusters",
    "nodes",
    "nodepools",
    "addons",
    "jobs",
    "quotas",
    "kube",
    "exporter",
)

GROUP_TABLES: dict[str, tuple[Table[Any], ...]] = {
    "clusters": (clusters.TABLE,),
    "nodes": (nodes.TABLE,),
    "nodepools": (nodepools.TABLE,),
    "addons": (addons.TABLE,),
    "jobs": (jobs.TABLE,),
    "quotas": (quotas.TABLE,),
    "kube": (kube.JOB_TABLE, kube.CRONJOB_TABLE, kube.QUOTA_TABLE),
    "exporter": (selfmetrics.BUILD_TABLE, selfmetrics.TABLE, selfmetrics.CLUSTER_TABLE),
}


@dataclass(frozen=True, slots=True)
class FamilyDoc:
    """Documentation of one family: full label set (identity labels first)."""

    name: str
    type: str  # gauge | counter | histogram
    labels: tuple[str, ...]
    help: str
    section: str  # the Markdown section it is listed under
    states: tuple[str, ...] = ()  # state-set values, "unknown" included
    state_label: str | None = None
    external: bool = False  # registered elsewhere as a prometheus_client object


_CLUSTER = clusters.IDENTITY

EXTERNAL_FAMILIES: tuple[FamilyDoc, ...] = (
    FamilyDoc(
        "cce_job_completed_duration_seconds",
        "histogram",
        ("type", "phase"),
        "Duration of CCE jobs seen to finish, one observation per job.",
        "CCE job",
        external=True,
    ),
    # Hibernation (exporter.hibernate); kept here so that every exported family is known.
    FamilyDoc(
        "cce_hibernation_policy_info",
        "gauge",
        (*_CLUSTER, "policy", "timezone", "dry_run"),
        "Which hibernation policy governs which cluster.",
        "hibernation",
        external=True,
    ),
    FamilyDoc(
        "cce_hibernation_desired_state",
        "gauge",
        (*_CLUSTER, "state"),
        "What the hibernation policy wants now (awake, hibernated).",
        "hibernation",
        states=("awake", "hibernated"),
        state_label="state",
        external=True,
    ),
    FamilyDoc(
        "cce_hibernation_next_transition_timestamp_seconds",
        "gauge",
        (*_CLUSTER, "action"),
        "Next scheduled hibernation action (Unix time).",
        "hibernation",
        external=True,
    ),
    FamilyDoc(
        "cce_hibernation_override_until_timestamp_seconds",
        "gauge",
        (*_CLUSTER, "state"),
        "End of a temporary override in force (Unix time).",
        "hibernation",
        external=True,
    ),
    FamilyDoc(
        "cce_hibernation_actions_total",
        "counter",
        (*_CLUSTER, "action", "result"),
        "Hibernation actions taken (result: success, failed, skipped, dry_run).",
        "hibernation",
        external=True,
    ),
    FamilyDoc(
        "cce_hibernation_action_duration_seconds",
        "histogram",
        ("action",),
        "From the API call to the target phase.",
        "hibernation",
        external=True,
    ),
    FamilyDoc(
        "cce_cluster_hibernated_seconds_total",
        "counter",
        _CLUSTER,
        "Time observed in phase Hibernation.",
        "hibernation",
        external=True,
    ),
    FamilyDoc(
        "cce_hibernation_estimated_savings_total",
        "counter",
        (*_CLUSTER, "currency"),
        "Hibernated hours times the configured control-plane price.",
        "hibernation",
        external=True,
    ),
    # API self-metrics (exporter.cce.instrumentation) and sharding.
    FamilyDoc(
        "cce_exporter_api_requests_total",
        "counter",
        ("endpoint", "method", "code"),
        "Every API call, retries included (endpoint is the templated path).",
        "exporter",
        external=True,
    ),
    FamilyDoc(
        "cce_exporter_api_request_duration_seconds",
        "histogram",
        ("endpoint", "method"),
        "Duration of API calls.",
        "exporter",
        external=True,
    ),
    FamilyDoc(
        "cce_exporter_api_retries_total",
        "counter",
        ("endpoint", "reason"),
        "API call retries.",
        "exporter",
        external=True,
    ),
    FamilyDoc(
        "cce_exporter_auth_refreshes_total",
        "counter",
        ("result",),
        "Credential fetches: IAM tokens (password, assume_agency) and the agency's temporary "
        "credentials.",
        "exporter",
        external=True,
    ),
    # Bounds on what comes from outside (exporter.limits).
    FamilyDoc(
        "cce_exporter_truncations_total",
        "counter",
        ("kind",),
        "Values cut to their configured length (label_value, log_field).",
        "exporter",
        external=True,
    ),
    FamilyDoc(
        "cce_exporter_objects_dropped_total",
        "counter",
        ("endpoint",),
        "Objects dropped from an API list because they could not be read; the rest is kept.",
        "exporter",
        external=True,
    ),
    FamilyDoc(
        "cce_exporter_kube_objects_dropped_total",
        "counter",
        ("cluster_id", "kind"),
        "Kubernetes objects left out, counted at each collection, because a cluster had more "
        "than max_objects_per_cluster of a kind.",
        "exporter",
        external=True,
    ),
    FamilyDoc(
        "cce_exporter_shard_ordinal",
        "gauge",
        (),
        "Ordinal of this shard, when sharding is enabled.",
        "exporter",
        external=True,
    ),
    FamilyDoc(
        "cce_exporter_total_shards",
        "gauge",
        (),
        "Number of shards, when sharding is enabled.",
        "exporter",
        external=True,
    ),
)


def _table_docs() -> list[FamilyDoc]:
    out: list[FamilyDoc] = []
    for group in GROUPS:
        for table in GROUP_TABLES[group]:
            section = "exporter" if group == "exporter" else table.resource
            for fam in table.families:
                out.append(
                    FamilyDoc(
                        fam.name,
                        fam.type,
                        (*table.identity, *fam.label_names),
                        fam.help,
                        section,
                        states=fam.states,
                        state_label=fam.label if isinstance(fam, StateSet) else None,
                    )
                )
    return out


ALL_FAMILIES: dict[str, FamilyDoc] = {d.name: d for d in (*_table_docs(), *EXTERNAL_FAMILIES)}
