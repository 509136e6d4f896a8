"""Typed views of CCE v3 and IAM responses, lenient enough for every quirk the API shows.

Rules (see the API reference, sections 9, 11 and 14):

* Unknown fields are ignored; every field is optional, "required" ones included.
* Keys are matched case-insensitively where the API spells them several ways
  (``reason``/``Reason``, ``jobID``/``jobId``/``jobid``, ``volumetype``/``volumeType``).
* ``items``, ``endpoints``, ``subJobs``, ``dataVolumes`` and the like accept an object or an array;
  ``extendParam`` accepts a string or an object; ``null`` means missing.
* Timestamps of both families (Go ``2018-08-02 03:48:58.968214406 +0000 UTC`` with 0-9 fraction
  digits, RFC 3339 with or without a fraction) parse to aware datetimes; blanks are trimmed, and an
  unreadable timestamp becomes ``None`` rather than losing the whole object.
* Enumerations (phases, statuses) stay raw strings: the metric layer maps values it does not know
  to ``unknown``. The known values live here, in one place.

Parse whole responses with :func:`parse_response` (``bytes`` in, model out): it validates the JSON
text in one pass and raises :class:`~exporter.cce.errors.ResponseParseError`, never anything else.
Every object has one model and is read one way; a node list is read by the same :class:`Node`
model straight into the small :class:`NodeSummary` objects the collector keeps
(:func:`parse_node_page`).

The package's modules: ``known`` (enumerations, flavors), ``fields`` (the lenient field types,
the base models, object metadata and conditions), ``parse`` (:func:`parse_response`), and one
module per resource: ``clusters``, ``nodes``, ``pools``, ``jobs``, ``addons`` (with templates
and upgrade information), ``quotas`` (with the IAM answers).

Today's API, as Huawei's SDK (``huaweicloudsdkcce.v3.model``) defines it, is read besides the
Stack reference's (docs/cce-api.md lists every field, read or deliberately not):

* ``ClusterStatus``: ``conditions`` (``ClusterCondition``: certificate expiry and rotation,
  ``AgencyAvailable``), ``isLocked``/``lockScene``/``lockSource``; ``ClusterSpec``: ``masters``
  (``MasterSpec.availabilityZone``), ``deletionProtection``; the SDK's flavor table
  (``cce.s3.*``) in :data:`FLAVOR_MAX_NODES`.
* ``NodeStatus``: ``lastProbeTime``, ``configurationUpToDate``, phases ``Repairing`` and
  ``RepairFailed``; ``NodePageInfo.nextMarker`` (:func:`parse_node_page`).
* ``NodePoolStatus``: the node counts, ``conditions`` (``NodePoolCondition``) and
  ``scaleGroupStatuses`` (``ScaleGroupStatus``); the SDK deprecates ``phase``.
* ``AddonInstanceStatus.status`` ``rollbackFailed`` (and ``unknown``, the state sets' fallback);
  ``ShowClusterUpgradeInfoResponse`` (:class:`UpgradeInfo`) and ``AddonTemplate``/``Versions``
  (:func:`addon_upgrade_available`).
"""

from __future__ import annotations

from exporter.cce.models.addons import (
    Addon,
    AddonList,
    AddonSpec,
    AddonStatus,
    AddonTemplate,
    AddonTemplateList,
    AddonTemplateSpec,
    AddonVersion,
    SupportVersion,
    TemplateVersion,
    UpgradeInfo,
    UpgradeInfoSpec,
    UpgradeVersionInfo,
    addon_upgrade_available,
    version_key,
)
from exporter.cce.models.clusters import (
    Cluster,
    ClusterEndpoint,
    ClusterList,
    ClusterSpec,
    ClusterStatus,
    ContainerNetwork,
    HostNetwork,
    MasterSpec,
)
from exporter.cce.models.fields import (
    Bool,
    CaseInsensitive,
    Condition,
    ExtendParam,
    Int,
    Lenient,
    ObjectMeta,
    Resource,
    Str,
    StrList,
    StrMap,
    Timestamp,
    parse_number,
    parse_timestamp,
)
from exporter.cce.models.jobs import (
    Job,
    JobSpec,
    JobStatus,
    extract_job_id,
)
from exporter.cce.models.known import (
    ADDON_STATUSES,
    CLUSTER_CONDITION_REASONS,
    CLUSTER_CONDITION_TYPES,
    CLUSTER_PHASES,
    CONDITION_STATUSES,
    FLAVOR_MAX_NODES,
    JOB_PHASES,
    JOB_TERMINAL_PHASES,
    NODE_PHASES,
    NODEPOOL_CONDITION_TYPES,
    NODEPOOL_PHASES,
    flavor_max_nodes,
)
from exporter.cce.models.nodes import (
    NODE_POOL_ANNOTATION,
    Node,
    NodeLike,
    NodeList,
    NodePage,
    NodeSpec,
    NodeStatus,
    NodeSummary,
    NodeTemplate,
    PageInfo,
    Volume,
    page_marker,
    parse_node_page,
    parse_node_summaries,
)
from exporter.cce.models.parse import (
    GC_PAUSE_BYTES,
    parse_response,
)
from exporter.cce.models.pools import (
    Autoscaling,
    NodeCount,
    NodePool,
    NodePoolList,
    NodePoolSpec,
    NodePoolStatus,
    ScaleGroupStatus,
)
from exporter.cce.models.quotas import (
    Project,
    ProjectList,
    Quota,
    QuotaList,
    TokenBody,
    TokenInfo,
)

__all__ = [
    "ADDON_STATUSES",
    "CLUSTER_CONDITION_REASONS",
    "CLUSTER_CONDITION_TYPES",
    "CLUSTER_PHASES",
    "CONDITION_STATUSES",
    "FLAVOR_MAX_NODES",
    "GC_PAUSE_BYTES",
    "JOB_PHASES",
    "JOB_TERMINAL_PHASES",
    "NODEPOOL_CONDITION_TYPES",
    "NODEPOOL_PHASES",
    "NODE_PHASES",
    "NODE_POOL_ANNOTATION",
    "Addon",
    "AddonList",
    "AddonSpec",
    "AddonStatus",
    "AddonTemplate",
    "AddonTemplateList",
    "AddonTemplateSpec",
    "AddonVersion",
    "Autoscaling",
    "Bool",
    "CaseInsensitive",
    "Cluster",
    "ClusterEndpoint",
    "ClusterList",
    "ClusterSpec",
    "ClusterStatus",
    "Condition",
    "ContainerNetwork",
    "ExtendParam",
    "HostNetwork",
    "Int",
    "Job",
    "JobSpec",
    "JobStatus",
    "Lenient",
    "MasterSpec",
    "Node",
    "NodeCount",
    "NodeLike",
    "NodeList",
    "NodePage",
    "NodePool",
    "NodePoolList",
    "NodePoolSpec",
    "NodePoolStatus",
    "NodeSpec",
    "NodeStatus",
    "NodeSummary",
    "NodeTemplate",
    "ObjectMeta",
    "PageInfo",
    "Project",
    "ProjectList",
    "Quota",
    "QuotaList",
    "Resource",
    "ScaleGroupStatus",
    "Str",
    "StrList",
    "StrMap",
    "SupportVersion",
    "TemplateVersion",
    "Timestamp",
    "TokenBody",
    "TokenInfo",
    "UpgradeInfo",
    "UpgradeInfoSpec",
    "UpgradeVersionInfo",
    "Volume",
    "addon_upgrade_available",
    "extract_job_id",
    "flavor_max_nodes",
    "page_marker",
    "parse_node_page",
    "parse_node_summaries",
    "parse_number",
    "parse_response",
    "parse_timestamp",
    "version_key",
]
