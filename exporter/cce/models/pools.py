"""Node pools (``GET .../nodepools``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from exporter.cce.models.fields import (
    Bool,
    CaseInsensitive,
    Condition,
    Int,
    Lenient,
    Resource,
    Str,
    _nested,
    _objects,
)
from exporter.cce.models.nodes import NodeTemplate


class Autoscaling(CaseInsensitive):
    enable: Bool = None
    min_node_count: Int = Field(None, alias="minNodeCount")
    max_node_count: Int = Field(None, alias="maxNodeCount")
    scale_down_cooldown_time: Int = Field(None, alias="scaleDownCooldownTime")
    priority: Int = None


class NodePoolSpec(CaseInsensitive):
    type: Str = None
    initial_node_count: Int = Field(None, alias="initialNodeCount")
    node_template: Annotated[NodeTemplate, _nested(NodeTemplate)] = Field(
        default_factory=NodeTemplate, alias="nodeTemplate"
    )
    autoscaling: Annotated[Autoscaling, _nested(Autoscaling)] = Field(default_factory=Autoscaling)


class NodeCount(Lenient):
    """A scale group's node count split by billing (SDK ``ScaleGroupStatusExistingNodeCount``)."""

    total: Int = None


class ScaleGroupStatus(CaseInsensitive):
    """One scale group of a pool (SDK ``ScaleGroupStatus``); the default group is ``default``."""

    name: Str = None
    uid: Str = None
    phase: Str = None
    desired_node_count: Int = Field(None, alias="desiredNodeCount")
    existing_node_count: Annotated[NodeCount, _nested(NodeCount)] = Field(
        default_factory=NodeCount, alias="existingNodeCount"
    )
    upcoming_node_count: Annotated[NodeCount, _nested(NodeCount)] = Field(
        default_factory=NodeCount, alias="upcomingNodeCount"
    )
    conditions: Annotated[list[Condition], _objects()] = Field(default_factory=list)


class NodePoolStatus(CaseInsensitive):
    """SDK ``NodePoolStatus``: ``phase`` is deprecated there in favour of the node counts and
    ``conditions`` (``Scalable`` replaces ``SoldOut``); both are read."""

    current_node: Int = Field(None, alias="currentNode")
    creating_node: Int = Field(None, alias="creatingNode")
    deleting_node: Int = Field(None, alias="deletingNode")
    active_node: Int = Field(None, alias="activeNode")
    repairing_node: Int = Field(None, alias="repairingNode")
    repair_failed_node: Int = Field(None, alias="repairFailedNode")
    configuration_synced_node_count: Int = Field(None, alias="configurationSyncedNodeCount")
    phase: Str = None
    # The Stack reference spells it jobID, the SDK jobId: keys are matched case-insensitively.
    job_id: Str = Field(None, alias="jobID")
    conditions: Annotated[list[Condition], _objects()] = Field(default_factory=list)
    scale_group_statuses: Annotated[list[ScaleGroupStatus], _objects()] = Field(
        default_factory=list, alias="scaleGroupStatuses"
    )


class NodePool(Resource):
    spec: Annotated[NodePoolSpec, _nested(NodePoolSpec)] = Field(default_factory=NodePoolSpec)
    status: Annotated[NodePoolStatus, _nested(NodePoolStatus)] = Field(
        default_factory=NodePoolStatus
    )

    @property
    def id(self) -> str | None:
        return self.metadata.uid or self.metadata.name

    @property
    def name(self) -> str | None:
        return self.metadata.name or self.metadata.uid

    @property
    def phase(self) -> str:
        """The phase, with the API's empty or absent phase reported as ``Normal``."""
        raw = self.status.phase
        return "Normal" if raw is None or not raw.strip() else raw


class NodePoolList(Lenient):
    kind: Str = None
    items: Annotated[list[NodePool], _objects()] = Field(default_factory=list)
