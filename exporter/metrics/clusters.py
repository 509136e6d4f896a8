"""Cluster metrics: one row per family, identity ``project_id``, ``cluster_id``, ``cluster``.

Sample exposition::

    cce_cluster_info{project_id="p1",cluster_id="4d1e...",cluster="mycluster",type="VirtualMachine",
        flavor="cce.s1.small",version="v1.15.11-r1",container_network_mode="overlay_l2"} 1
    cce_cluster_status_phase{project_id="p1",cluster_id="4d1e...",cluster="mycluster",
        phase="Available"} 1
    cce_cluster_status_phase_since_timestamp_seconds{...} 1.7e+09
    cce_cluster_created_timestamp_seconds{...} 1533181738.968214
    cce_cluster_nodes{...} 1
    cce_cluster_nodes_active{...} 1
    cce_cluster_max_nodes{...} 50

``cce_cluster_nodes`` and ``_nodes_active`` come from the ``detail=true`` annotations when the API
sent them, else they are counted from the cluster's last good node list, else omitted.

Today's API (the SDK's ``ClusterStatus``, ``ClusterCondition``, ``ClusterSpec``)::

    cce_cluster_status_condition{...,condition="ClusterCertificate",status="false"} 1
    cce_cluster_status_condition_reason{...,condition="ClusterCertificate",
        reason="CertificateExpiringWithin30Days"} 1
    cce_cluster_locked{...,lock_scene="ARREAR",lock_source="CBC"} 1
    cce_cluster_control_plane_az_info{...,az="az1.dc1"} 1
    cce_cluster_upgrade_available{...} 1
    cce_cluster_upgrade_target_info{...,target_version="v1.28.3-r0"} 1

A condition's status is a state set over ``true``, ``false`` and ``unknown`` (a value the SDK does
not document reads ``unknown``). A reason becomes a label only when it is a machine word (letters,
digits, ``.``, ``_``, ``-``, at most 64 characters, as the SDK's enumerated reasons are); any other
text reads ``other``, so free text never becomes a label value. The control plane's zones are one
series each, from ``spec.masters[].availabilityZone``, else ``extendParam.clusterAZ``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol, TypeVar

from exporter.cce.models import CLUSTER_PHASES, Cluster, Condition
from exporter.metrics.inputs import TargetData
from exporter.metrics.spec import (
    Gauge,
    Info,
    RenderContext,
    Samples,
    StateSet,
    Table,
    Value,
    epoch,
    escape_label_value,
)

__all__ = [
    "CONDITION_STATES",
    "MAX_PER_OBJECT",
    "TABLE",
    "cluster_identity",
    "cluster_objects",
    "condition_reason_samples",
    "condition_samples",
    "machine_word",
    "per_cluster_items",
    "present_clusters",
]

#: The states of a condition's status, as its state set spells them.
CONDITION_STATES: tuple[str, ...] = ("true", "false", "unknown")
#: At most this many condition types, scale groups or target versions per object: a hostile or
#: broken answer must not multiply the series.
MAX_PER_OBJECT = 32
_MACHINE_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

Labelled = Sequence[tuple[Mapping[str, str | None], Value]]


def machine_word(text: str | None) -> str | None:
    """``text`` when it is a machine word (an enumerated reason), ``other`` for any other text,
    None when empty: API free text never becomes a label value."""
    if not text or not text.strip():
        return None
    return text if _MACHINE_WORD.match(text) else "other"


def condition_samples(conditions: Sequence[Condition]) -> Labelled:
    """A state set per condition type (the last of duplicates wins)."""
    by_type: dict[str, str] = {}
    for cond in conditions:
        kind = machine_word(cond.type)
        if kind is None:
            continue
        if kind not in by_type and len(by_type) >= MAX_PER_OBJECT:
            continue
        state = cond.state
        by_type[kind] = state if state in CONDITION_STATES else "unknown"
    return [
        ({"condition": kind, "status": s}, 1 if s == state else 0)
        for kind, state in sorted(by_type.items())
        for s in CONDITION_STATES
    ]


def condition_reason_samples(conditions: Sequence[Condition]) -> Labelled:
    """1 for each condition's current reason, where it gives one."""
    by_type: dict[str, str] = {}
    for cond in conditions:
        kind = machine_word(cond.type)
        reason = machine_word(cond.reason)
        if kind is not None and reason is not None:
            if kind not in by_type and len(by_type) >= MAX_PER_OBJECT:
                continue
            by_type[kind] = reason
    return [({"condition": k, "reason": r}, 1) for k, r in sorted(by_type.items())]


IDENTITY = ("project_id", "cluster_id", "cluster")


def present_clusters(target: TargetData) -> list[tuple[str, Cluster]]:
    """The target's clusters with an ID, by ID, first of duplicates kept, with identity labels."""
    seen: set[str] = set()
    out: list[tuple[str, Cluster]] = []
    project = f'project_id="{escape_label_value(target.project_id)}"'
    for cluster in sorted(target.clusters, key=lambda c: c.id or ""):
        cid = cluster.id
        if not cid or cid in seen:
            continue
        seen.add(cid)
        out.append((cluster_identity(project, cluster), cluster))
    return out


class _Identified(Protocol):
    @property
    def id(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...


Identified = TypeVar("Identified", bound=_Identified)


def cluster_objects(
    cluster_ident: str, objects: Iterable[Identified] | None, id_label: str, name_label: str
) -> Iterator[tuple[str, Identified]]:
    """One cluster's objects with an ID, by ID, first of duplicates kept, with identity labels.

    The identity is ``cluster_ident`` then ``id_label`` (and ``name_label``, left out when the
    object has no name).
    """
    if not objects:
        return
    esc = escape_label_value
    head, named = f'{cluster_ident},{id_label}="', f'",{name_label}="'
    seen: set[str] = set()
    for obj in sorted(objects, key=lambda o: o.id or ""):
        oid = obj.id
        if not oid or oid in seen:
            continue
        seen.add(oid)
        name = obj.name
        if name:
            yield f'{head}{esc(oid)}{named}{esc(name)}"', obj
        else:
            yield f'{head}{esc(oid)}"', obj


def per_cluster_items(
    objects: Callable[[TargetData], Mapping[str, Sequence[Identified]]],
    id_label: str,
    name_label: str,
) -> Callable[[TargetData], Iterator[tuple[str, Identified]]]:
    """A table's items: every present cluster's ``objects(target)[cluster_id]``, as
    :func:`cluster_objects` labels them."""

    def items(target: TargetData) -> Iterator[tuple[str, Identified]]:
        by_cluster = objects(target)
        for cluster_ident, cluster in present_clusters(target):
            yield from cluster_objects(
                cluster_ident, by_cluster.get(cluster.id or ""), id_label, name_label
            )

    return items


def cluster_identity(project: str, cluster: Cluster) -> str:
    """``project_id=..,cluster_id=..,cluster=..`` (``cluster`` left out when the name is)."""
    ident = f'{project},cluster_id="{escape_label_value(cluster.id or "")}"'
    if cluster.name:
        ident += f',cluster="{escape_label_value(cluster.name)}"'
    return ident


def _items(target: TargetData) -> Iterator[tuple[str, Cluster]]:
    yield from present_clusters(target)


def _nodes(c: Cluster, ctx: RenderContext) -> int | None:
    if c.total_nodes is not None:
        return c.total_nodes
    nodes = ctx.target.nodes.get(c.id or "")
    return None if nodes is None else len(nodes)


def _nodes_active(c: Cluster, ctx: RenderContext) -> int | None:
    if c.active_nodes is not None:
        return c.active_nodes
    nodes = ctx.target.nodes.get(c.id or "")
    return None if nodes is None else sum(1 for n in nodes if n.phase == "Active")


def _locked(c: Cluster, ctx: RenderContext) -> Labelled:
    status = c.status
    if status.is_locked is None:
        return []
    return [
        (
            {
                "lock_scene": machine_word(status.lock_scene),
                "lock_source": machine_word(status.lock_source),
            },
            1 if status.is_locked else 0,
        )
    ]


def _control_plane_azs(c: Cluster, ctx: RenderContext) -> Labelled:
    zones = c.spec.control_plane_azs
    if not zones:
        return []
    return [({"az": zone}, 1) for zone in zones.split(",")]


def _upgrade_available(c: Cluster, ctx: RenderContext) -> int | None:
    targets = ctx.target.upgrades.get(c.id or "")
    return None if targets is None else (1 if targets else 0)


def _upgrade_targets(c: Cluster, ctx: RenderContext) -> Labelled:
    targets = ctx.target.upgrades.get(c.id or "") or ()
    words = sorted({machine_word(t) or "other" for t in targets})[:MAX_PER_OBJECT]
    return [({"target_version": w}, 1) for w in words]


def _billing_mode(c: Cluster) -> str | None:
    mode = c.spec.billing_mode
    return None if mode is None else str(mode)


TABLE: Table[Cluster] = Table(
    group="clusters",
    resource="cluster",
    identity=IDENTITY,
    items=_items,
    families=(
        Info(
            "cce_cluster_info",
            "Static properties of a CCE cluster (category: CCE or Turbo; billing_mode: 0 "
            "pay-per-use, 1 yearly/monthly).",
            ("type", "flavor", "version", "container_network_mode", "category", "billing_mode"),
            lambda c: (
                c.spec.type,
                c.spec.flavor,
                c.spec.version,
                c.spec.container_network.mode,
                c.spec.category,
                _billing_mode(c),
            ),
        ),
        StateSet(
            "cce_cluster_status_phase",
            "Current phase of the cluster (1 for the current phase, 0 for the others).",
            "phase",
            CLUSTER_PHASES,
            lambda c: c.phase,
        ),
        Gauge(
            "cce_cluster_status_phase_since_timestamp_seconds",
            "When the exporter first saw the cluster's current phase (Unix time).",
            lambda c, ctx: ctx.since(f"cluster/{c.id}"),
        ),
        Gauge(
            "cce_cluster_created_timestamp_seconds",
            "Creation time of the cluster (Unix time).",
            lambda c, ctx: epoch(c.metadata.creation_timestamp),
        ),
        Gauge(
            "cce_cluster_nodes",
            "Nodes in the cluster (totalNodesNumber, or counted from the node list).",
            _nodes,
        ),
        Gauge(
            "cce_cluster_nodes_active",
            "Nodes of the cluster in phase Active (activeNodesNumber, or counted).",
            _nodes_active,
        ),
        Gauge(
            "cce_cluster_max_nodes",
            "Node limit of the cluster's flavor.",
            lambda c, ctx: c.max_nodes,
        ),
        Samples(
            "cce_cluster_status_condition",
            "Status of each condition in the cluster's status.conditions (1 for the current "
            "status of true, false, unknown).",
            "gauge",
            ("condition", "status"),
            lambda c, ctx: condition_samples(c.status.conditions),
        ),
        Samples(
            "cce_cluster_status_condition_reason",
            "Current reason of each cluster condition (certificate expiry and rotation live "
            "here); other for free text.",
            "gauge",
            ("condition", "reason"),
            lambda c, ctx: condition_reason_samples(c.status.conditions),
        ),
        Samples(
            "cce_cluster_locked",
            "1 if billing has locked the cluster (status.isLocked), else 0; where reported.",
            "gauge",
            ("lock_scene", "lock_source"),
            _locked,
        ),
        Samples(
            "cce_cluster_control_plane_az_info",
            "Availability zones of the cluster's control plane, one series each "
            "(masters[].availabilityZone, else extendParam.clusterAZ such as multi_az).",
            "gauge",
            ("az",),
            _control_plane_azs,
        ),
        Gauge(
            "cce_cluster_upgrade_available",
            "1 if upgradeinfo offers the cluster a newer version, else 0; checked on a slow "
            "interval, absent where the installation does not offer the call.",
            _upgrade_available,
        ),
        Samples(
            "cce_cluster_upgrade_target_info",
            "The versions upgradeinfo offers the cluster, one series each.",
            "gauge",
            ("target_version",),
            _upgrade_targets,
        ),
    ),
)
