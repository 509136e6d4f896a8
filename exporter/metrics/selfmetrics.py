"""The exporter's own collection health (group ``exporter``), from ``TargetData.health``.

Identity ``project_id``, ``resource`` (clusters, nodes, nodepools, addons, jobs, quotas), plus the
process-wide ``cce_exporter_build_info``. Sample exposition::

    cce_exporter_build_info{version="0.1.0",python_version="3.11.7"} 1
    cce_exporter_collect_duration_seconds{project_id="p1",resource="nodes"} 0.42
    cce_exporter_collect_success{project_id="p1",resource="nodes"} 1
    cce_exporter_last_success_timestamp_seconds{project_id="p1",resource="nodes"} 1.7e+09

The API request metrics are counters and histograms kept by prometheus_client elsewhere (see
:mod:`exporter.metrics.external`).
"""

from __future__ import annotations

import platform
from collections.abc import Iterator

from exporter import __version__
from exporter.metrics.inputs import ResourceHealth, TargetData
from exporter.metrics.spec import Gauge, Table, escape_label_value, format_labels

__all__ = ["BUILD_TABLE", "TABLE"]


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
