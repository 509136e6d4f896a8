"""What the collector hands the metric layer: one immutable snapshot per target.

The collector keeps the last good API responses per target and fills a :class:`TargetData` from
them; the renderer turns a sequence of these into exposition bytes without any I/O. Everything here
is frozen so a snapshot can be shared between the collection task and a render without copying.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from exporter.cce.models import Addon, Cluster, Job, NodeLike, NodePool, Quota

__all__ = ["ResourceHealth", "TargetData", "TrackedJob"]


@dataclass(frozen=True, slots=True)
class TrackedJob:
    """A CCE job the collector follows, with the cluster it belongs to."""

    project_id: str
    cluster_id: str  # the cluster the job was discovered from (or job.spec.cluster_uid)
    job: Job


@dataclass(frozen=True, slots=True)
class ResourceHealth:
    """The outcome of the last collection of one resource of one target (the self-metrics)."""

    resource: str  # clusters | nodes | nodepools | addons | jobs | quotas
    success: bool  # last collection succeeded
    duration_seconds: float | None
    last_success: float | None  # unix time of the last success


@dataclass(frozen=True, slots=True)
class TargetData:
    """The last good state of one target (a project in a region), ready to render."""

    project_id: str
    labels: Mapping[str, str]  # extra static labels of the target (region, env)
    clusters: Sequence[Cluster]  # last good list ([] if never collected)
    # cluster_id -> last good node list (NodeSummary from the collector; Node models work too)
    nodes: Mapping[str, Sequence[NodeLike]]
    nodepools: Mapping[str, Sequence[NodePool]]
    addons: Mapping[str, Sequence[Addon]]
    jobs: Sequence[TrackedJob]
    quotas: Sequence[Quota]
    # "cluster/<id>", "node/<id>", "nodepool/<cluster_id>/<id>", "addon/<id>", "job/<id>" -> unix
    # seconds when the current phase was first seen
    phase_since: Mapping[str, float]
    health: Sequence[ResourceHealth]
    # resource -> cluster_id -> the last collection of that resource for that cluster succeeded
    cluster_success: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)
    # cluster_id -> the versions ``upgradeinfo`` offers (absent: not known, or not offered)
    upgrades: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # addon_id -> whether a newer template version fits its cluster (absent: not known)
    addon_upgrades: Mapping[str, bool] = field(default_factory=dict)
