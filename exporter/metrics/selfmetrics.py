"""The exporter's own collection health (group ``exporter``), from ``TargetData.health``.

Identity ``project_id``, ``resource`` (clusters, nodes, nodepools, addons, jobs, quotas), plus the
process-wide ``cce_exporter_build_info``. Sample exposition::

    cce_exporter_build_info{version="0.1.0",python_version="3.11.7"} 1
    cce_exporter_collect_duration_seconds{project_id="p1",resource="nodes"} 0.42
    cce_exporter_collect_success{project_id="p1",resource="nodes"} 1
    cce_exporter_last_success_timestamp_seconds{project_id="p1",resource="nodes"} 1.7e+09
    cce_exporter_cluster_collect_success{project_id="p1",cluster_id="c1",cluster="a",
        resource="nodes"} 0

The API request metrics are counters and histograms kept by prometheus_client elsewhere (see
:mod:`exporter.metrics.external`).
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from dataclasses import dataclass

from exporter import __version__
from exporter.metrics.clusters import IDENTITY as CLUSTER_IDENTITY
from exporter.metrics.clusters import present_clusters
from exporter.metrics.inputs import ResourceHealth, TargetData
from exporter.metrics.spec import Gauge, Table, escape_label_value, format_labels

__all__ = ["BUILD_TABLE", "CLUSTER_TABLE", "TABLE"]


def _items(target: TargetData) -> Iterator[tuple[str, ResourceHealth]]:
    project = f'project_id="{escape_label_value(target.project_id)}"'
    seen: set[str] = set()
    for health in sorted(target.health, key=lambda h: h.resource):
        if health.resource in seen:
            continue
        seen.add(health.resource)
        yield f'{project},resource="{escape_label_value(health.resource)}"', health


TABLE: Table[ResourceHealth] = Table(
    group="exporter",
    resource="collection",
    identity=("project_id", "resource"),
    items=_items,
    families=(
        Gauge(
            "cce_exporter_collect_duration_seconds",
            "Duration of the last collection of the resource.",
            lambda h, ctx: h.duration_seconds,
        ),
        Gauge(
            "cce_exporter_collect_success",
            "1 if the last collection of the resource succeeded, else 0.",
            lambda h, ctx: 1 if h.success else 0,
        ),
        Gauge(
            "cce_exporter_last_success_timestamp_seconds",
            "When the resource was last collected successfully (Unix time).",
            lambda h, ctx: h.last_success,
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class ClusterOutcome:
    """The last outcome of one resource's collection for one cluster."""

    resource: str
    success: bool


def _cluster_items(target: TargetData) -> Iterator[tuple[str, ClusterOutcome]]:
    if not target.cluster_success:
        return
    for cluster_ident, cluster in present_clusters(target):
        cid = cluster.id or ""
        for resource in sorted(target.cluster_success):
            outcome = target.cluster_success[resource].get(cid)
            if outcome is not None:
                yield (
                    f'{cluster_ident},resource="{escape_label_value(resource)}"',
                    ClusterOutcome(resource, outcome),
                )


#: Per cluster: a failing cluster is shown here, not as a failure of the whole resource.
CLUSTER_TABLE: Table[ClusterOutcome] = Table(
    group="exporter",
    resource="collection per cluster",
    identity=(*CLUSTER_IDENTITY, "resource"),
    items=_cluster_items,
    families=(
        Gauge(
            "cce_exporter_cluster_collect_success",
            "1 if the last collection of the resource for the cluster succeeded, else 0 (nodes, "
            "nodepools, addons, jobs, cluster_upgrades).",
            lambda o, ctx: 1 if o.success else 0,
        ),
    ),
)


def _no_targets(target: TargetData) -> Iterator[tuple[str, None]]:
    return iter(())


def _build() -> Iterator[tuple[str, None]]:
    yield (
        format_labels([("version", __version__), ("python_version", platform.python_version())]),
        None,
    )


BUILD_TABLE: Table[None] = Table(
    group="exporter",
    resource="exporter",
    identity=("version", "python_version"),
    items=_no_targets,
    global_items=_build,
    families=(
        Gauge("cce_exporter_build_info", "Version of the exporter and of Python.", lambda _, c: 1),
    ),
)
