"""What the hibernation controller acts on: targets (a client per configured account) and the
typed seams to the exporter service that supplies them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from exporter.cce.models import Cluster

__all__ = [
    "ClusterAPI",
    "CollectedTarget",
    "ControllerTarget",
    "TargetSource",
    "targets_from_service",
]


class ClusterAPI(Protocol):
    """What the controller needs of :class:`exporter.cce.client.CCEClient`."""

    async def list_clusters(self) -> list[Cluster]: ...
    async def get_cluster(self, cluster_id: str) -> Cluster: ...
    async def hibernate(self, cluster_id: str) -> str | None: ...
    async def awake(self, cluster_id: str) -> str | None: ...


@dataclass
class ControllerTarget:
    name: str
    client: ClusterAPI
    project_id: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


class _TargetConfig(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...


class _Listing(Protocol):
    @property
    def clusters(self) -> Sequence[Cluster]: ...


class _Collector(Protocol):
    @property
    def project_id(self) -> str: ...
    @property
    def state(self) -> _Listing: ...


class CollectedTarget(Protocol):
    """A target of the exporter service: its configuration, client and last cluster listing."""

    @property
    def config(self) -> _TargetConfig: ...
    @property
    def client(self) -> ClusterAPI: ...
    @property
    def collector(self) -> _Collector: ...


class TargetSource(Protocol):
    """What :func:`targets_from_service` needs of the exporter service."""

    @property
    def targets(self) -> Sequence[CollectedTarget]: ...


def targets_from_service(service: TargetSource) -> list[ControllerTarget]:
    """The controller's targets from a set-up ``ExporterService`` (its clients and labels)."""
    return [
        ControllerTarget(
            name=t.config.name,
            client=t.client,
            project_id=t.collector.project_id,
            labels=dict(t.config.labels),
        )
        for t in service.targets
    ]
