"""What the controller knows of the clusters: the last listing of each target, which policy
governs which cluster, and the conflicts (a cluster two policies select)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from exporter.cce.models import Cluster
from exporter.hibernation.policy import Conflict, Match, PolicyFile, match_policies

#: The controller's logger: its parts log as the controller always has.
log = logging.getLogger("exporter.hibernation.controller")

__all__ = ["ClusterView", "Ident"]

Ident = tuple[str, str]


class ClusterView:
    """The clusters by ``(target, cluster_id)``, matched against ``policy_file``."""

    def __init__(self, policy_file: PolicyFile) -> None:
        self.policy_file = policy_file
        self.listed: set[str] = set()  # targets whose clusters were seen at least once
        self.clusters: dict[Ident, Cluster] = {}
        self.matches: dict[Ident, Match] = {}
        self.conflicts: list[Conflict] = []
        self._reported: set[Ident] = set()

    def update(self, listings: Mapping[str, Sequence[Cluster]]) -> None:
        """Replace the clusters of each target listed, then match every cluster again (a new
        conflict is logged once, at ERROR)."""
        for name, items in listings.items():
            self.listed.add(name)
            for k in [k for k in self.clusters if k[0] == name]:
                del self.clusters[k]
            for cluster in items:
                if cluster.id:
                    self.clusters[(name, cluster.id)] = cluster
        self.matches, self.conflicts = match_policies(
            self.policy_file,
            ((t, cid, c.name or "") for (t, cid), c in self.clusters.items()),
        )
        for conflict in self.conflicts:
            ident = (conflict.target, conflict.cluster_id)
            if ident not in self._reported:
                self._reported.add(ident)
                log.error("hibernation policy conflict: %s", conflict.message())

    def by_target(self) -> dict[str, list[Cluster]]:
        """The clusters last seen, per target listed at least once."""
        known: dict[str, list[Cluster]] = {name: [] for name in self.listed}
        for (name, _), cluster in self.clusters.items():
            if name in known:
                known[name].append(cluster)
        return known

    def find(self, cluster_id_or_name: str) -> tuple[str, Cluster] | None:
        """The known cluster with this ID (or, failing that, this name)."""
        for (target, cid), cluster in self.clusters.items():
            if cid == cluster_id_or_name:
                return target, cluster
        for (target, _), cluster in self.clusters.items():
            if cluster.name == cluster_id_or_name:
                return target, cluster
        return None

    def governed(self, cluster_id: str) -> tuple[Ident, Match] | str:
        """The cluster and the policy that governs it, or why none does."""
        found = self.find(cluster_id)
        if found is None:
            return f"cluster {cluster_id!r} is not known"
        ident = (found[0], found[1].id or "")
        for conflict in self.conflicts:
            if (conflict.target, conflict.cluster_id) == ident:
                return conflict.message()
        match = self.matches.get(ident)
        if match is None:
            return f"no policy selects cluster {found[1].name!r}; it is never acted on"
        return ident, match
