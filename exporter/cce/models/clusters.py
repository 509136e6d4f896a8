"""Clusters (``GET .../clusters``, ``GET .../clusters/{id}``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from exporter.cce.models.fields import (
    Bool,
    CaseInsensitive,
    Condition,
    ExtendParam,
    Int,
    Lenient,
    Resource,
    Str,
    _nested,
    _objects,
    parse_number,
)
from exporter.cce.models.known import flavor_max_nodes


class ContainerNetwork(Lenient):
    mode: Str = None
    cidr: Str = None


class HostNetwork(Lenient):
    vpc: Str = None
    subnet: Str = None


class MasterSpec(CaseInsensitive):
    """A control-plane node's placement (SDK ``MasterSpec``)."""

    availability_zone: Str = Field(None, alias="availabilityZone")


class ClusterSpec(CaseInsensitive):
    type: Str = None
    category: Str = None
    flavor: Str = None
    version: Str = None
    description: Str = None
    az: Str = None
    host_network: Annotated[HostNetwork, _nested(HostNetwork)] = Field(
        default_factory=HostNetwork, alias="hostNetwork"
    )
    container_network: Annotated[ContainerNetwork, _nested(ContainerNetwork)] = Field(
        default_factory=ContainerNetwork, alias="containerNetwork"
    )
    billing_mode: Int = Field(None, alias="billingMode")
    extend_param: ExtendParam = Field(None, alias="extendParam")
    masters: Annotated[list[MasterSpec], _objects()] = Field(default_factory=list)
    deletion_protection: Bool = Field(None, alias="deletionProtection")

    @property
    def control_plane_azs(self) -> str | None:
        """The control plane's zones, sorted and comma-separated: ``masters[].availabilityZone``,
        else ``extendParam.clusterAZ`` (``multi_az`` included as sent)."""
        zones = sorted({m.availability_zone for m in self.masters if m.availability_zone})
        if zones:
            return ",".join(zones)
        param = self.extend_param
        if isinstance(param, dict):
            value = param.get("clusterAZ")
            if isinstance(value, str) and value.strip():
                return value.strip()
        return None


class ClusterEndpoint(Lenient):
    url: Str = None
    type: Str = None


class ClusterStatus(CaseInsensitive):
    phase: Str = None
    job_id: Str = Field(None, alias="jobID")
    reason: Str = None
    message: Str = None
    endpoints: Annotated[list[ClusterEndpoint], _objects()] = Field(default_factory=list)
    is_locked: Bool = Field(None, alias="isLocked")
    lock_scene: Str = Field(None, alias="lockScene")
    lock_source: Str = Field(None, alias="lockSource")
    conditions: Annotated[list[Condition], _objects()] = Field(default_factory=list)


class Cluster(Resource):
    api_version: Str = Field(None, alias="apiVersion")
    spec: Annotated[ClusterSpec, _nested(ClusterSpec)] = Field(default_factory=ClusterSpec)
    status: Annotated[ClusterStatus, _nested(ClusterStatus)] = Field(default_factory=ClusterStatus)

    @property
    def phase(self) -> str | None:
        return self.status.phase

    def _annotation_number(self, key: str) -> int | None:
        for k, v in self.metadata.annotations.items():
            if k.lower() == key.lower():
                return parse_number(v)
        return None

    @property
    def total_nodes(self) -> int | None:
        """``totalNodesNumber`` from the ``detail=true`` annotations, when the API sent it."""
        return self._annotation_number("totalNodesNumber")

    @property
    def active_nodes(self) -> int | None:
        """``activeNodesNumber`` from the ``detail=true`` annotations, when the API sent it."""
        return self._annotation_number("activeNodesNumber")

    @property
    def max_nodes(self) -> int | None:
        return flavor_max_nodes(self.spec.flavor)


class ClusterList(Lenient):
    kind: Str = None
    items: Annotated[list[Cluster], _objects()] = Field(default_factory=list)
