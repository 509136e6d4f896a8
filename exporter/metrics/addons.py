"""Add-on metrics: identity = the cluster's labels + ``addon_id``, ``addon`` (template name).

Only add-ons of clusters still present are emitted. Sample exposition::

    cce_addon_info{project_id="p1",cluster_id="0c0e...",cluster="mycluster",
        addon_id="8ca2...",addon="storage-driver",version="1.0.10",type="helm"} 1
    cce_addon_status{...,addon="storage-driver",status="running"} 1
    cce_addon_upgrade_available{...} 0

Statuses follow the SDK's ``AddonInstanceStatus``: ``available`` means *partially ready* there
(some instances run), ``rollbackFailed`` is today's, and the SDK's own ``unknown`` (the template
instance does not exist) is the state set's ``unknown``.
"""

from __future__ import annotations

from exporter.cce.models import ADDON_STATUSES, Addon
from exporter.metrics.clusters import IDENTITY as CLUSTER_IDENTITY
from exporter.metrics.clusters import per_cluster_items
from exporter.metrics.spec import Gauge, Info, StateSet, Table

__all__ = ["TABLE"]


TABLE: Table[Addon] = Table(
    group="addons",
    resource="add-on",
    identity=(*CLUSTER_IDENTITY, "addon_id", "addon"),
    items=per_cluster_items(lambda target: target.addons, "addon_id", "addon"),
    families=(
        Info(
            "cce_addon_info",
            "Static properties of an add-on instance.",
            ("version", "type"),
            lambda a: (a.version, a.spec.addon_template_type),
        ),
        StateSet(
            "cce_addon_status",
            "Current status of the add-on (1 for the current status, 0 for the others).",
            "status",
            ADDON_STATUSES,
            lambda a: a.status.status,
        ),
        Gauge(
            "cce_addon_status_since_timestamp_seconds",
            "When the exporter first saw the add-on's current status (Unix time).",
            lambda a, ctx: ctx.since(f"addon/{a.id}"),
        ),
        Gauge(
            "cce_addon_upgrade_available",
            "1 if an add-on template offers a newer version that fits the cluster, else 0; "
            "checked on a slow interval, absent where the installation does not offer the call.",
            lambda a, ctx: _upgrade(ctx.target.addon_upgrades.get(a.id or "")),
        ),
    ),
)


def _upgrade(available: bool | None) -> int | None:
    return None if available is None else int(available)
