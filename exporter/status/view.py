"""The status console's view: thresholds, phase groups and the frozen dataclasses the renderer
and the JSON see (the schema ``docs/status.md`` documents), and :func:`to_json`.

The thresholds that make a problem are the alert rules' defaults (``alerts/thresholds.yaml``; a
test keeps them equal): a cluster in a transition for over 2 h, a job initialising or running for
over 1 h, a quota at or above 90 %.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1

#: ``CCEClusterStuckInTransition``: seconds in one of :data:`TRANSITIONING` before it is stuck.
CLUSTER_STUCK_SECONDS = 7200.0
#: ``CCEJobStuck``: seconds a job may be Initializing or Running.
JOB_STUCK_SECONDS = 3600.0
#: ``CCEQuotaNearlyExhausted``: used / limit at or above this is a problem.
QUOTA_RATIO = 0.9
#: ``CCEAddonUnhealthy``.
ADDON_UNHEALTHY = frozenset(
    {"abnormal", "installFailed", "upgradeFailed", "deleteFailed", "unavailable", "rollbackFailed"}
)
#: ``CCENodeAbnormal``, and ``CCENodeRepairFailed``.
NODE_ABNORMAL = frozenset({"Abnormal", "Error", "RepairFailed"})
#: ``CCENodePoolSoldOut`` and ``CCENodePoolError``: pools that cannot scale.
POOL_CANNOT_SCALE = frozenset({"SoldOut", "Error"})
#: ``CCENodePoolScaleBlocked``: pool conditions that, true, stop scale-ups.
POOL_BLOCKING_CONDITIONS = frozenset(
    {"QuotaInsufficient", "ResourceInsufficient", "LockedByOrder", "Error"}
)
#: ``CCEClusterCertificate*``: condition reasons of a cluster (severity, what it means).
CLUSTER_CONDITION_REASONS = {
    "CertificateExpired": ("critical", "certificate has expired"),
    "CertificateExpiringWithin30Days": ("warning", "certificate expires within 30 days"),
    "RotationFailed": ("warning", "certificate rotation failed"),
}
JOB_RUNNING = frozenset({"Initializing", "Running"})

HEALTHY = frozenset({"Available"})
HIBERNATED = frozenset({"Hibernation"})
TRANSITIONING = frozenset(
    {
        "Creating",
        "Upgrading",
        "Resizing",
        "ScalingUp",
        "ScalingDown",
        "RollingBack",
        "Deleting",
        "Hibernating",
        "Awaking",
    }
)
FAILING = frozenset({"Unavailable", "Error", "RollbackFailed"})
GROUPS = ("healthy", "transitioning", "hibernated", "failing", "other")
#: Phases in which a cluster is not yet in the wanted state but on its way or able to get there
#: (other phases are problems of their own, or are left alone by the safety rules).
PENDING_FROM = {
    "hibernated": frozenset({"Available", "Hibernating"}),
    "awake": frozenset({"Hibernation", "Awaking"}),
}

#: The page lists at most this many problems (the count says how many there are).
MAX_PROBLEMS = 500
#: A cluster page lists at most this many nodes.
MAX_NODES = 2000
DAY = 86400.0

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
KIND_ORDER = {
    k: i
    for i, k in enumerate(
        (
            "cluster_failing",
            "cluster_condition",
            "quota_exhausted",
            "hibernation_failed",
            "collection_failed",
            "cluster_stuck",
            "cluster_locked",
            "node_abnormal",
            "nodepool_cannot_scale",
            "addon_unhealthy",
            "job_failed",
            "job_stuck",
            "quota_near_limit",
            "policy_conflict",
            "hibernation_pending",
        )
    )
}


class At(float):
    """An instant in Unix seconds; JSON writes it as RFC 3339 UTC."""

    def iso(self) -> str:
        return (
            datetime.fromtimestamp(self, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        )


def _at(value: float | datetime | None) -> At | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return At(aware.timestamp())
    return At(value)


def phase_group(phase: str | None) -> str:
    """healthy, transitioning, hibernated, failing or other (Empty, unknown phases)."""
    if phase in HEALTHY:
        return "healthy"
    if phase in HIBERNATED:
        return "hibernated"
    if phase in TRANSITIONING:
        return "transitioning"
    if phase in FAILING:
        return "failing"
    return "other"


# --- the model ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cause:
    """Why a collection failed: the API's HTTP status and error code when it answered."""

    error: str  # the error class: ServerError, RequestTimeout, ...
    message: str  # the full text (as logged)
    status_code: int | None = None
    code: str | None = None  # the API's error code, e.g. CCE.01500001
    api_message: str | None = None


@dataclasses.dataclass(frozen=True)
class Problem:
    kind: str
    severity: str  # critical, warning, info
    target: str
    summary: str
    cluster_id: str | None = None
    cluster: str | None = None
    subject: str | None = None  # the node, pool, add-on, job or quota concerned
    since: At | None = None
    cause: Cause | None = None


@dataclasses.dataclass(frozen=True)
class Counts:
    clusters: Mapping[str, int]  # by phase group
    clusters_total: int
    nodes_total: int
    nodes_not_active: int
    firing_conditions: int  # problems of severity critical or warning
    quotas_near_limit: int
    jobs_stuck_or_failed: int
    hibernation_actions_24h: int


@dataclasses.dataclass(frozen=True)
class ClusterRow:
    target: str
    id: str
    name: str
    phase: str
    group: str
    phase_since: At | None
    flavor: str | None
    version: str | None
    nodes_total: int | None
    nodes_active: int | None
    nodepools: int
    nodepools_cannot_scale: int
    addons: int
    addons_unhealthy: int
    jobs_running: int
    problems: int


@dataclasses.dataclass(frozen=True)
class CollectionError:
    cluster_id: str | None
    cluster: str | None
    cause: Cause


@dataclasses.dataclass(frozen=True)
class Collection:
    target: str
    resource: str
    interval: float
    last_attempt: At | None
    last_success: At | None
    duration: float | None
    success: bool | None  # None before the first attempt
    error: str | None
    errors: Sequence[CollectionError] = ()  # the cause, per cluster when per-cluster


@dataclasses.dataclass(frozen=True)
class ActionRecord:
    at: At | None
    action: str
    result: str
    reason: str
    source: str


@dataclasses.dataclass(frozen=True)
class OverrideView:
    kind: str  # keep_awake, keep_hibernated, skip_next
    until: At | None
    reason: str


@dataclasses.dataclass(frozen=True)
class NextTransition:
    action: str
    at: At
    local: str  # in the policy's time zone, e.g. "Mon 2026-11-30 19:00 CET"
    skipped: bool


@dataclasses.dataclass(frozen=True)
class HibernationRow:
    target: str
    cluster_id: str
    cluster: str
    policy: str
    timezone: str
    dry_run: bool
    excluded: bool
    phase: str
    desired: str | None  # awake, hibernated (a keep override wins over the policy)
    policy_desired: str | None
    actual: str  # awake, hibernated, or the phase
    pending: bool  # desired and actual differ and nothing keeps it so
    next: NextTransition | None
    override: OverrideView | None
    last_action: ActionRecord | None


@dataclasses.dataclass(frozen=True)
class TargetInfo:
    name: str
    project_id: str
    labels: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class QuotaRow:
    target: str
    key: str
    used: int | None
    limit: int | None
    ratio: float | None
    unit: str | None
    region: str | None
    zone: str | None


@dataclasses.dataclass(frozen=True)
class StatusModel:
    schema_version: int
    generated_at: At
    data_updated_at: At | None  # the newest collection attempt
    version: str
    started_at: At
    ready: bool
    not_ready_reasons: Sequence[str]
    refresh_seconds: int
    counts: Counts
    problems: Sequence[Problem]
    problems_total: int
    hibernation_enabled: bool
    hibernation: Sequence[HibernationRow]
    clusters: Sequence[ClusterRow]
    quotas: Sequence[QuotaRow]
    collections: Sequence[Collection]
    targets: Sequence[TargetInfo]


@dataclasses.dataclass(frozen=True)
class NodeRow:
    id: str
    name: str
    phase: str
    flavor: str | None
    az: str | None
    nodepool_id: str | None
    private_ip: str | None
    phase_since: At | None


@dataclasses.dataclass(frozen=True)
class PoolRow:
    id: str
    name: str
    phase: str
    nodes: int | None
    flavor: str | None
    autoscaling: str
    blocked_by: Sequence[str] = ()  # true conditions that stop scale-ups


@dataclasses.dataclass(frozen=True)
class AddonRow:
    id: str
    name: str
    version: str | None
    status: str
    reason: str | None
    message: str | None


@dataclasses.dataclass(frozen=True)
class JobRow:
    id: str
    type: str | None
    phase: str
    resource: str | None
    created: At | None
    duration: float | None
    reason: str | None


@dataclasses.dataclass(frozen=True)
class ClusterDetail:
    generated_at: At
    refresh_seconds: int
    target: TargetInfo
    cluster: ClusterRow
    reason: str | None
    message: str | None
    problems: Sequence[Problem]
    nodes: Sequence[NodeRow]
    nodes_total: int
    nodepools: Sequence[PoolRow]
    addons: Sequence[AddonRow]
    jobs: Sequence[JobRow]
    quotas: Sequence[QuotaRow]
    hibernation: HibernationRow | None
    collection_errors: Sequence[Collection]


# --- JSON --------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, At):
        return value.iso()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def to_json(model: StatusModel | ClusterDetail) -> dict[str, Any]:
    """The model as JSON-able data; instants become RFC 3339 UTC strings."""
    out: dict[str, Any] = _plain(model)
    return out
