"""What one target's collection keeps: its last good data, each resource's health, and the
client and counter seams the collector works through.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from exporter.cce.memo import Memo
from exporter.cce.models import Addon, AddonTemplate, Cluster, Job, NodePool, NodeSummary, Quota
from exporter.config import RESOURCE_NAMES

#: The resources a target collects, in collection order (defined once, by the configuration).
RESOURCES: tuple[str, ...] = RESOURCE_NAMES
#: Resources checked at most once per their own (slow) interval, even when a full collection
#: (``collect_all``) asks sooner: a cycle's request count does not grow by them.
SLOW_RESOURCES: tuple[str, ...] = ("cluster_upgrades", "addon_upgrades")
#: How long a slow resource's first run waits for the first cluster listing.
FIRST_LISTING_WAIT_SECONDS = 300.0
#: Clusters whose upgrade information is not asked: no control plane to answer, or going away.
UPGRADE_SKIP_PHASES: frozenset[str] = frozenset(
    {"Hibernation", "Hibernating", "Awaking", "Creating", "Deleting"}
)

#: Per-cluster resources are not listed for clusters in these phases: the API cannot answer for a
#: control plane that is asleep or not there yet, and the last good data is more useful.
SKIP_PHASES: dict[str, frozenset[str]] = {
    "addons": frozenset({"Hibernation", "Hibernating", "Awaking", "Creating"}),
}


class Client(Protocol):
    """What the collector needs of ``exporter.cce.client.CCEClient``."""

    async def list_clusters(self) -> list[Cluster]: ...
    async def get_cluster(
        self, cluster_id: str, *, detail: bool = True, error_status: bool = True
    ) -> Cluster: ...
    async def list_node_summaries(
        self, cluster_id: str, memo: Memo[list[NodeSummary]] | None = None
    ) -> list[NodeSummary]: ...
    async def list_nodepools(
        self, cluster_id: str, show_default: bool = True, memo: Memo[list[NodePool]] | None = None
    ) -> list[NodePool]: ...
    async def list_addons(
        self, cluster_id: str, memo: Memo[list[Addon]] | None = None
    ) -> list[Addon]: ...
    async def get_quotas(self) -> list[Quota]: ...
    async def get_job(self, job_id: str, memo: Memo[Job] | None = None) -> Job: ...
    async def get_upgrade_targets(self, cluster_id: str) -> list[str]: ...
    async def list_addon_templates(self, cluster_id: str) -> list[AddonTemplate]: ...


class CollectorStats(Protocol):
    """Counters the collector bumps (kept as prometheus_client objects by the scheduler)."""

    def error(self, project_id: str, resource: str, error: str) -> None: ...
    def job_dropped(self, project_id: str, reason: str) -> None: ...
    def job_finished(self, job: Job) -> None: ...


@dataclass
class TargetState:
    """The target's last good data. A cluster listing replaces it; the other collections update
    their parts in place, so the renderer is given copies (``TargetCollector.snapshot``)."""

    clusters: tuple[Cluster, ...] = ()
    clusters_listed: bool = False
    nodes: dict[str, Sequence[NodeSummary]] = field(default_factory=dict)
    nodepools: dict[str, Sequence[NodePool]] = field(default_factory=dict)
    addons: dict[str, Sequence[Addon]] = field(default_factory=dict)
    quotas: tuple[Quota, ...] = ()
    # cluster_id -> versions upgradeinfo offers; add-on template name -> template
    upgrades: dict[str, tuple[str, ...]] = field(default_factory=dict)
    templates: dict[str, AddonTemplate] = field(default_factory=dict)
    # addon_id -> whether a newer template version fits (from addons and templates)
    addon_upgrades: dict[str, bool] = field(default_factory=dict)
