"""Nodes (``GET .../nodes``): the :class:`Node` model, and the :class:`NodeSummary` the collector
keeps of each node, read from a node list in one pass (:func:`parse_node_page`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from pydantic import ConfigDict, Field, GetCoreSchemaHandler, model_validator
from pydantic_core import CoreSchema
from pydantic_core import core_schema as cs

from exporter.cce.models.fields import (
    Bool,
    CaseInsensitive,
    ExtendParam,
    Int,
    Lenient,
    Resource,
    Str,
    Timestamp,
    _nested,
    _objects,
    _to_str,
)
from exporter.cce.models.parse import parse_response


class Volume(CaseInsensitive):
    volumetype: Str = None
    size: Int = None

    _other_keys = frozenset({"extendParam", "hw:passthrough", "metadata", "cluster_id"})

    @model_validator(mode="before")
    @classmethod
    def _update_spelling(cls, data: Any) -> Any:
        # The node update response spells these volumeType/diskSize (reference 11.3, item 34).
        if isinstance(data, dict) and "size" not in data:
            for key in data:
                if isinstance(key, str) and key.lower() == "disksize":
                    return {**data, "size": data[key]}
        return data


class NodeTemplate(Lenient):
    """A node pool's template for its nodes: a node's spec without the billing mode."""

    flavor: Str = None
    az: Str = None
    os: Str = None
    root_volume: Annotated[Volume, _nested(Volume)] = Field(
        default_factory=Volume, alias="rootVolume"
    )
    data_volumes: Annotated[list[Volume], _objects()] = Field(
        default_factory=list, alias="dataVolumes"
    )
    extend_param: ExtendParam = Field(None, alias="extendParam")


class NodeSpec(CaseInsensitive, NodeTemplate):
    """A node's spec: its pool's template fields, read with keys in any case, and the billing
    mode."""

    _other_keys = frozenset(
        {
            "login",
            "count",
            "nodeNicSpec",
            "runtime",
            "taints",
            "k8sTags",
            "userTags",
            "ecsGroupId",
            "dedicatedHostId",
            "offloadNode",
            "nodepoolScaleUp",
            "publicIP",
            "hostnameConfig",
        }
    )

    billing_mode: Int = Field(None, alias="billingMode")


class NodeStatus(CaseInsensitive):
    _other_keys = frozenset({"deleteStatus", "privateIPv6IP"})

    phase: Str = None
    job_id: Str = Field(None, alias="jobID")
    server_id: Str = Field(None, alias="serverId")
    public_ip: Str = Field(None, alias="publicIP")
    private_ip: Str = Field(None, alias="privateIP")
    reason: Str = None
    message: Str = None
    last_probe_time: Timestamp = Field(None, alias="lastProbeTime")
    configuration_up_to_date: Bool = Field(None, alias="configurationUpToDate")


NODE_POOL_ANNOTATION = "kubernetes.io/node-pool.id"


class Node(Resource):
    spec: Annotated[NodeSpec, _nested(NodeSpec)] = Field(default_factory=NodeSpec)
    status: Annotated[NodeStatus, _nested(NodeStatus)] = Field(default_factory=NodeStatus)

    @property
    def phase(self) -> str | None:
        return self.status.phase

    @property
    def nodepool_id(self) -> str | None:
        """The node pool's ID, or ``<az>#<flavor>#<os>`` for nodes outside a pool (default pool)."""
        return self.metadata.annotations.get(NODE_POOL_ANNOTATION)

    @property
    def flavor(self) -> str | None:
        return self.spec.flavor

    @property
    def az(self) -> str | None:
        return self.spec.az

    @property
    def os(self) -> str | None:
        return self.spec.os

    @property
    def private_ip(self) -> str | None:
        return self.status.private_ip

    @property
    def job_id(self) -> str | None:
        return self.status.job_id

    @property
    def created(self) -> float | None:
        """Creation time in Unix seconds."""
        moment = self.metadata.creation_timestamp
        return None if moment is None else moment.timestamp()

    @property
    def last_probe(self) -> float | None:
        """``status.lastProbeTime`` in Unix seconds (the SDK: older than 5 minutes means stale)."""
        moment = self.status.last_probe_time
        return None if moment is None else moment.timestamp()

    @property
    def configuration_up_to_date(self) -> bool | None:
        """``status.configurationUpToDate``: the node matches its pool's current template."""
        return self.status.configuration_up_to_date


class NodeLike(Protocol):
    """What the exporter keeps of a node: a :class:`Node`, or its :class:`NodeSummary`."""

    @property
    def id(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def phase(self) -> str | None: ...
    @property
    def flavor(self) -> str | None: ...
    @property
    def az(self) -> str | None: ...
    @property
    def os(self) -> str | None: ...
    @property
    def nodepool_id(self) -> str | None: ...
    @property
    def private_ip(self) -> str | None: ...
    @property
    def job_id(self) -> str | None: ...
    @property
    def created(self) -> float | None: ...
    @property
    def last_probe(self) -> float | None: ...
    @property
    def configuration_up_to_date(self) -> bool | None: ...


def _shared(value: str | None) -> str | None:
    return None if value is None else sys.intern(value)


@dataclass(frozen=True, slots=True)
class NodeSummary:
    """The fields of a node the exporter uses, in a fraction of a parsed :class:`Node`'s memory.

    A parsed node is six pydantic objects with their dicts and field sets; the collector keeps
    these instead (docs/performance.md has the sizes).
    """

    id: str | None
    name: str | None
    phase: str | None
    flavor: str | None
    az: str | None
    os: str | None
    nodepool_id: str | None
    private_ip: str | None
    job_id: str | None
    created: float | None
    last_probe: float | None = None
    configuration_up_to_date: bool | None = None

    @classmethod
    def of(cls, node: Node) -> NodeSummary:
        """The summary of a parsed node; flavors, zones, OS names, pool IDs and phases, which
        repeat across thousands of nodes, are kept as one shared copy each."""
        meta, spec, status = node.metadata, node.spec, node.status
        created, probed = meta.creation_timestamp, status.last_probe_time
        return cls(
            meta.uid,
            meta.name,
            _shared(status.phase),
            _shared(spec.flavor),
            _shared(spec.az),
            _shared(spec.os),
            _shared(meta.annotations.get(NODE_POOL_ANNOTATION)),
            status.private_ip,
            status.job_id,
            None if created is None else created.timestamp(),
            None if probed is None else probed.timestamp(),
            status.configuration_up_to_date,
        )

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        # Validated as a Node, kept as its summary: the Node is dropped as soon as it is read.
        return cs.no_info_after_validator_function(cls.of, handler.generate_schema(Node))


class PageInfo(Lenient):
    """SDK ``NodePageInfo``: the page's size and the marker of the next page, if any."""

    current_count: Int = Field(None, alias="currentCount")
    next_marker: Str = Field(None, alias="nextMarker")


class NodeList(Lenient):
    kind: Str = None
    items: Annotated[list[Node], _objects()] = Field(default_factory=list)
    page_info: Annotated[PageInfo, _nested(PageInfo)] = Field(
        default_factory=PageInfo, alias="pageInfo"
    )


class NodePage(Lenient):
    """A node list read as :class:`NodeSummary` objects: each node is validated by the
    :class:`Node` model (every tolerance of it), and only its summary is kept."""

    # Errors name the answer as the API does (parse_response uses the title).
    model_config = ConfigDict(title="NodeList")

    items: Annotated[list[NodeSummary], _objects()] = Field(default_factory=list)
    page_info: Annotated[PageInfo, _nested(PageInfo)] = Field(
        default_factory=PageInfo, alias="pageInfo"
    )


def page_marker(value: object) -> str | None:
    """A ``nextMarker`` value as the next page's marker; None when it names no next page."""
    marker = _to_str(value)
    return marker if marker and marker.strip() else None


def parse_node_page(
    payload: bytes | str, *, endpoint: str | None = None
) -> tuple[list[NodeSummary], str | None]:
    """One page of a node list: its :class:`NodeSummary` objects and ``pageInfo.nextMarker``.

    Raises :class:`~exporter.cce.errors.ResponseParseError` as :func:`parse_response` does.
    """
    page = parse_response(NodePage, payload, endpoint=endpoint)
    return page.items, page_marker(page.page_info.next_marker)


def parse_node_summaries(payload: bytes | str, *, endpoint: str | None = None) -> list[NodeSummary]:
    """A node list response as :class:`NodeSummary` objects (see :func:`parse_node_page`)."""
    return parse_node_page(payload, endpoint=endpoint)[0]
