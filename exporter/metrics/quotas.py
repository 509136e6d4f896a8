"""Quota metrics: identity ``project_id``; labels ``resource``, ``unit``, ``region``, ``az``.

``region`` and ``az`` are present where the API gives them; a quota's own ``region`` takes the
place of a target's static ``region`` label. Sample exposition::

    cce_quota_limit{project_id="p1",resource="cluster",unit="count"} 20
    cce_quota_used{project_id="p1",resource="cluster",unit="count"} 13
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from exporter.cce.models import Quota
from exporter.metrics.inputs import TargetData
from exporter.metrics.spec import RenderContext, Samples, Table, Value, escape_label_value

__all__ = ["TABLE"]

LABELS = ("resource", "unit", "region", "az")


def _labels(q: Quota) -> dict[str, str | None]:
    return {
        "resource": q.quota_key,
        "unit": q.unit,
        "region": q.region_id,
        "az": q.availability_zone_id,
    }


def _items(target: TargetData) -> Iterator[tuple[str, Quota]]:
    project = f'project_id="{escape_label_value(target.project_id)}"'
    seen: set[tuple[str | None, ...]] = set()
    for quota in sorted(
        target.quotas,
        key=lambda q: tuple(v or "" for v in _labels(q).values()),
    ):
        key = tuple(_labels(quota).values())
        if not quota.quota_key or key in seen:
            continue
        seen.add(key)
        yield project, quota


def _limit(q: Quota, ctx: RenderContext) -> list[tuple[Mapping[str, str | None], Value]]:
    return [] if q.quota_limit is None else [(_labels(q), q.quota_limit)]


def _used(q: Quota, ctx: RenderContext) -> list[tuple[Mapping[str, str | None], Value]]:
    return [] if q.used is None else [(_labels(q), q.used)]


TABLE: Table[Quota] = Table(
    group="quotas",
    resource="quota",
    identity=("project_id",),
    items=_items,
    families=(
        Samples("cce_quota_limit", "Quota limit (quotaLimit).", "gauge", LABELS, _limit),
        Samples("cce_quota_used", "Quota in use (used).", "gauge", LABELS, _used),
    ),
)
