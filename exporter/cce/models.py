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

import contextlib
import gc
import json
import math
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar, Protocol, TypeVar, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import CoreSchema, from_json
from pydantic_core import core_schema as cs

from exporter.cce.errors import ResponseParseError

# --- known enumeration values (API spelling) --------------------------------------------------

CLUSTER_PHASES: tuple[str, ...] = (
    "Available",
    "Unavailable",
    "ScalingUp",
    "ScalingDown",
    "Creating",
    "Deleting",
    "Upgrading",
    "Resizing",
    "RollingBack",
    "RollbackFailed",
    "Hibernating",
    "Hibernation",
    "Awaking",
    "Empty",
    "Error",
)
NODE_PHASES: tuple[str, ...] = (
    "Build",
    "Installing",
    "Installed",
    "ShutDown",
    "Upgrading",
    "Active",
    "Abnormal",
    "Deleting",
    "Error",
    # Today's API (SDK ``NodeStatus.phase``): only with a pool's node restart self-healing policy.
    "Repairing",
    "RepairFailed",
)
#: ``Normal`` stands for the API's empty (or absent) node-pool phase.
NODEPOOL_PHASES: tuple[str, ...] = (
    "Normal",
    "Synchronizing",
    "Synchronized",
    "SoldOut",
    "Deleting",
    "Error",
)
ADDON_STATUSES: tuple[str, ...] = (
    "running",
    "abnormal",
    "installing",
    "installFailed",
    "upgrading",
    "upgradeFailed",
    "deleting",
    "deleteSuccess",
    "deleteFailed",
    "available",
    "unavailable",
    "rollbacking",
    # Today's API (SDK ``AddonInstanceStatus.status``). Its ``unknown`` (no template instance)
    # is the state sets' own fallback value and is reported as such.
    "rollbackFailed",
)
JOB_PHASES: tuple[str, ...] = ("Initializing", "Running", "Failed", "Success")
JOB_TERMINAL_PHASES: frozenset[str] = frozenset({"Failed", "Success"})

#: Node limit of each cluster flavor (reference 12.2, and the SDK's ``ClusterSpec.flavor``, which
#: adds the five-control-plane ``cce.s3.*``); ``cce.dec.*`` share their size's limit (the SDK lists
#: ``cce.dec.s1.xlarge``, hence ``cce.s1.xlarge``).
FLAVOR_MAX_NODES: dict[str, int] = {
    "cce.s1.small": 50,
    "cce.s1.medium": 200,
    "cce.s1.large": 1000,
    "cce.s1.xlarge": 2000,
    "cce.s2.small": 50,
    "cce.s2.medium": 200,
    "cce.s2.large": 1000,
    "cce.s2.xlarge": 2000,
    "cce.s3.small": 50,
    "cce.s3.medium": 200,
    "cce.s3.large": 1000,
    "cce.s3.xlarge": 2000,
}

#: Condition types of clusters (SDK ``ClusterCondition.type``) and node pools (SDK
#: ``NodePoolCondition.type``) the dashboards and alerts name; others are exported as they come.
CLUSTER_CONDITION_TYPES: tuple[str, ...] = (
    "ClusterCertificate",
    "ClusterCustomCertificate",
    "CertificateRotation",
    "CustomCertificateRotation",
    "AgencyAvailable",
)
#: Reasons of the certificate conditions (SDK ``ClusterCondition.reason``): the certificate's
#: stages in the order it ages, then the outcomes of a rotation; others are exported as they come.
CLUSTER_CONDITION_REASONS: tuple[str, ...] = (
    "CertificateValid",
    "CertificateExpiringWithin180Days",
    "CertificateExpiringWithin30Days",
    "CertificateExpired",
    "RotationInProgress",
    "RotationSucceeded",
    "RotationFailed",
)
NODEPOOL_CONDITION_TYPES: tuple[str, ...] = (
    "Scalable",
    "QuotaInsufficient",
    "ResourceInsufficient",
    "UnexpectedError",
    "LockedByOrder",
    "Error",
)
#: Condition statuses (Kubernetes spelling ``True``/``False``), as the metric labels spell them.
CONDITION_STATUSES: tuple[str, ...] = ("true", "false")


def flavor_max_nodes(flavor: str | None) -> int | None:
    """The node limit of a cluster flavor, or None when the flavor is unknown."""
    if not flavor:
        return None
    if flavor in FLAVOR_MAX_NODES:
        return FLAVOR_MAX_NODES[flavor]
    if flavor.startswith("cce.dec."):
        return FLAVOR_MAX_NODES.get("cce." + flavor[len("cce.dec.") :])
    return None


# --- timestamps ---------------------------------------------------------------------------------

_TS = re.compile(
    r"""^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})
        (?:[.,](?P<frac>\d{1,9}))?
        \s*(?P<off>Z|z|[+-]\d{2}:?\d{2})?
        (?:\s+(?P<zone>[A-Za-z][A-Za-z0-9_+-]*))?
        (?:\s+m=[+-]?[\d.]+)?$""",
    re.VERBOSE,
)


#: UTC suffixes of the two families as the API sends them (Go ``+0000 UTC``, RFC 3339 ``Z``).
_UTC_SUFFIXES: tuple[str, ...] = (" +0000 UTC", "Z", "+00:00")


def _fast_utc_timestamp(value: str) -> datetime | None:
    """The common exact layouts in UTC, without the regex; None means "use the general path".

    ``YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}]`` followed by one of :data:`_UTC_SUFFIXES`, ASCII digits
    only. It accepts a subset of what the general path accepts and gives the same result; parsing
    100,000 nodes spends most of its timestamp time here, so the regex is kept for the rest.
    """
    last = _last_timestamp
    if last[0] == value:
        return last[1]
    for suffix in _UTC_SUFFIXES:
        if value.endswith(suffix):
            core = value[: -len(suffix)]
            break
    else:
        return None
    n = len(core)
    if (
        n < 19
        or core[4] != "-"
        or core[7] != "-"
        or core[10] not in "T "
        or core[13] != ":"
        or core[16] != ":"
    ):
        return None
    digits = core[0:4] + core[5:7] + core[8:10] + core[11:13] + core[14:16] + core[17:19]
    frac = ""
    if n > 19:
        frac = core[20:]
        if core[19] not in ".," or not 1 <= len(frac) <= 9:
            return None
        digits += frac
    if not (digits.isascii() and digits.isdigit()):
        return None
    try:
        parsed = datetime(
            int(core[0:4]),
            int(core[5:7]),
            int(core[8:10]),
            int(core[11:13]),
            int(core[14:16]),
            int(core[17:19]),
            int(frac[:6].ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    _remember_timestamp(value, parsed)
    return parsed


#: The last timestamp parsed: an object's update time is often its creation time (datetimes are
#: immutable, so sharing one is safe; a stale read from another thread is only a miss).
_last_timestamp: tuple[str, datetime | None] = ("", None)


def _remember_timestamp(value: str, parsed: datetime) -> None:
    global _last_timestamp
    _last_timestamp = (value, parsed)


def parse_timestamp(value: object) -> datetime | None:
    """Parse a CCE timestamp of either family into an aware datetime; None if missing or unreadable.

    Numbers are taken as Unix seconds. A timestamp without an offset is taken as UTC.
    """
    if type(value) is str:
        fast = _fast_utc_timestamp(value)
        if fast is not None:
            return fast
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) > 253402300799:
            return None
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str):
        return None
    m = _TS.match(value.strip())
    if m is None:
        return None
    frac = (m.group("frac") or "").ljust(6, "0")[:6]
    try:
        dt = datetime.fromisoformat(f"{m.group('date')}T{m.group('time')}")
        dt = dt.replace(microsecond=int(frac))
    except ValueError:
        return None
    off = m.group("off")
    tz: timezone = UTC
    if off and off not in ("Z", "z"):
        sign = -1 if off[0] == "-" else 1
        digits = off[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            return None
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        return dt.replace(tzinfo=tz)
    except (ValueError, OverflowError):
        return None


# --- lenient field types ------------------------------------------------------------------------


def _to_str(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _to_int(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return parse_number(value)
    return None


def parse_number(value: str) -> int | None:
    """Leading integer or float of a string (``"12"``, ``"3.5"``, ``"16Gi"``), else None."""
    m = re.match(r"^\s*([+-]?\d+(?:\.\d+)?)", value)
    if m is None:
        return None
    number = float(m.group(1))
    return int(number) if math.isfinite(number) else None


def _to_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off", ""):
            return False
    if isinstance(value, int | float):
        return bool(value)
    return None


def _to_str_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    out: dict[str, str] = {}
    for k, v in value.items():
        if v is None:
            continue
        out[str(k)] = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return out


def _to_list(value: object) -> list[Any]:
    """An object where an array is expected becomes a one-item array; null becomes empty."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    return []


def _to_object_list(value: object) -> list[Any]:
    """Like ``_to_list`` but keeps only objects (anything else in an array is dropped)."""
    return [item for item in _to_list(value) if isinstance(item, dict)]


def _to_extend_param(value: object) -> dict[str, Any] | str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return value
    return _to_str(value)


def _to_str_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [s for s in (_to_str(v) for v in _to_list(value)) if s is not None]


class _FastPath:
    """Validate with a pydantic-core schema first, and with the lenient Python function only when
    that refuses the value.

    The API's values nearly always have the documented type; checking that in Rust and calling
    Python only for the odd value keeps every tolerance at a fraction of the cost (parsing
    100,000 nodes calls these millions of times). ``fast`` must accept only values for which
    ``fallback`` would return the same thing.
    """

    __slots__ = ("fallback", "fast")

    def __init__(
        self,
        fast: CoreSchema | None,
        fallback: Callable[[Any], Any],
    ) -> None:
        self.fast = fast
        self.fallback = fallback

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        # ``None`` as the fast schema: the type's own (lax) schema, for nested models.
        fast = self.fast if self.fast is not None else handler(source)
        if self.fallback is _to_object_list:
            # An array of objects: each item must be an object before it reaches the model
            # (whose own before-validator would turn a stray number into an empty object).
            (item,) = get_args(source)
            only_objects = cs.dict_schema(strict=True)
            fast = cs.list_schema(
                cs.chain_schema([only_objects, handler.generate_schema(item)]), strict=True
            )
        slow = cs.no_info_before_validator_function(self.fallback, handler(source))
        return cs.union_schema([fast, slow], mode="left_to_right")


def _strict(schema: CoreSchema) -> CoreSchema:
    return cs.nullable_schema(schema)


Str = Annotated[str | None, _FastPath(_strict(cs.str_schema(strict=True)), _to_str)]
Int = Annotated[int | None, _FastPath(_strict(cs.int_schema(strict=True)), _to_int)]
Bool = Annotated[bool | None, _FastPath(_strict(cs.bool_schema(strict=True)), _to_bool)]
Timestamp = Annotated[datetime | None, BeforeValidator(parse_timestamp)]
StrMap = Annotated[
    dict[str, str],
    _FastPath(
        cs.dict_schema(cs.str_schema(strict=True), cs.str_schema(strict=True), strict=True),
        _to_str_map,
    ),
]
StrList = Annotated[list[str], BeforeValidator(_to_str_list)]
ExtendParam = Annotated[dict[str, Any] | str | None, BeforeValidator(_to_extend_param)]


def _coerce_object(value: object) -> object:
    return value if isinstance(value, dict) else {}


def _nested(model: Callable[..., Any]) -> Any:
    """A nested object: anything but an object becomes an empty one."""
    return _FastPath(None, _coerce_object)


def _objects() -> Any:
    """An array of objects; an object alone is a one-item array, non-objects are dropped."""
    return _FastPath(None, _to_object_list)


class Lenient(BaseModel):
    """Base of every model: ignores unknown keys; every field optional."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    _ci_keys: ClassVar[dict[str, str]] = {}


class CaseInsensitive(Lenient):
    """A model whose keys the API spells several ways: they are matched case-insensitively.

    Only the objects known to need it pay for the extra pass (statuses and volumes); the rest are
    validated by pydantic-core alone, which matters when a cycle parses 100,000 nodes.
    """

    #: Keys known to need no renaming: the canonical spellings, and other keys seen so far that
    #: match no field in any case. A response whose keys are all in it (nearly every object) is
    #: passed through after one set comparison, done in C.
    _plain_keys: ClassVar[set[str]] = set()
    _PLAIN_KEYS_MAX: ClassVar[int] = 4096

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        keys: dict[str, str] = {}
        for name, field in cls.model_fields.items():
            alias = field.alias or name
            keys[alias.lower()] = alias
        cls._ci_keys = keys
        cls._plain_keys = set(keys.values())

    @model_validator(mode="before")
    @classmethod
    def _normalise_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return {}
        plain = cls._plain_keys
        if plain.issuperset(data):
            return data
        keys = cls._ci_keys
        out: dict[str, Any] | None = None
        for key in data:
            if not isinstance(key, str):
                continue
            canonical = keys.get(key.lower())
            if canonical is None:
                # Bounded: keys come from the API, and an odd server must not grow this forever.
                if len(plain) < cls._PLAIN_KEYS_MAX:
                    plain.add(key)
            elif canonical != key:
                if out is None:
                    out = dict(data)
                value = out.pop(key)
                # The exact spelling wins when both are present.
                if canonical not in data:
                    out[canonical] = value
        return data if out is None else out


# --- clusters -----------------------------------------------------------------------------------


class ObjectMeta(Lenient):
    name: Str = None
    uid: Str = None
    alias: Str = None
    creation_timestamp: Timestamp = Field(None, alias="creationTimestamp")
    update_timestamp: Timestamp = Field(None, alias="updateTimestamp")
    labels: StrMap = Field(default_factory=dict)
    annotations: StrMap = Field(default_factory=dict)


class ContainerNetwork(Lenient):
    mode: Str = None
    cidr: Str = None


class HostNetwork(Lenient):
    vpc: Str = None
    subnet: Str = None


class Condition(CaseInsensitive):
    """One entry of ``status.conditions`` (SDK ``ClusterCondition``, ``NodePoolCondition``)."""

    type: Str = None
    status: Str = None
    reason: Str = None
    message: Str = None
    last_probe_time: Timestamp = Field(None, alias="lastProbeTime")
    last_transit_time: Timestamp = Field(None, alias="lastTransitTime")

    @property
    def state(self) -> str | None:
        """``true``/``false`` for the API's ``True``/``False`` (any case); else the raw value."""
        raw = self.status
        if raw is None:
            return None
        lowered = raw.strip().lower()
        return lowered if lowered in ("true", "false", "unknown") else raw


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


class Cluster(Lenient):
    kind: Str = None
    api_version: Str = Field(None, alias="apiVersion")
    metadata: Annotated[ObjectMeta, _nested(ObjectMeta)] = Field(default_factory=ObjectMeta)
    spec: Annotated[ClusterSpec, _nested(ClusterSpec)] = Field(default_factory=ClusterSpec)
    status: Annotated[ClusterStatus, _nested(ClusterStatus)] = Field(default_factory=ClusterStatus)

    @property
    def id(self) -> str | None:
        return self.metadata.uid

    @property
    def name(self) -> str | None:
        return self.metadata.name

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


# --- nodes --------------------------------------------------------------------------------------


class Volume(CaseInsensitive):
    volumetype: Str = None
    size: Int = None

    @model_validator(mode="before")
    @classmethod
    def _update_spelling(cls, data: Any) -> Any:
        # The node update response spells these volumeType/diskSize (reference 11.3, item 34).
        if isinstance(data, dict) and "size" not in data:
            for key in data:
                if isinstance(key, str) and key.lower() == "disksize":
                    return {**data, "size": data[key]}
        return data


class NodeSpec(CaseInsensitive):
    flavor: Str = None
    az: Str = None
    os: Str = None
    root_volume: Annotated[Volume, _nested(Volume)] = Field(
        default_factory=Volume, alias="rootVolume"
    )
    data_volumes: Annotated[list[Volume], _objects()] = Field(
        default_factory=list, alias="dataVolumes"
    )
    billing_mode: Int = Field(None, alias="billingMode")
    extend_param: ExtendParam = Field(None, alias="extendParam")


class NodeStatus(CaseInsensitive):
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


class Node(Lenient):
    kind: Str = None
    metadata: Annotated[ObjectMeta, _nested(ObjectMeta)] = Field(default_factory=ObjectMeta)
    spec: Annotated[NodeSpec, _nested(NodeSpec)] = Field(default_factory=NodeSpec)
    status: Annotated[NodeStatus, _nested(NodeStatus)] = Field(default_factory=NodeStatus)

    @property
    def id(self) -> str | None:
        return self.metadata.uid

    @property
    def name(self) -> str | None:
        return self.metadata.name

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
    # Flavors, zones, OS names, pool IDs and phases repeat across thousands of nodes: one copy each.
    return None if value is None else sys.intern(value)


@dataclass(frozen=True, slots=True)
class NodeSummary:
    """The fields of a node the exporter uses, in about a tenth of a parsed :class:`Node`'s memory.

    A parsed node is six pydantic objects with their dicts and field sets (~5 KB); 100,000 of them
    would not fit the exporter's memory budget, so the collector keeps these instead.
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
        return cls(
            id=node.id,
            name=node.name,
            phase=_shared(node.phase),
            flavor=_shared(node.flavor),
            az=_shared(node.az),
            os=_shared(node.os),
            nodepool_id=_shared(node.nodepool_id),
            private_ip=node.private_ip,
            job_id=node.job_id,
            created=node.created,
            last_probe=node.last_probe,
            configuration_up_to_date=node.configuration_up_to_date,
        )


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


# --- node pools ---------------------------------------------------------------------------------


class NodeTemplate(Lenient):
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


class NodePool(Lenient):
    kind: Str = None
    metadata: Annotated[ObjectMeta, _nested(ObjectMeta)] = Field(default_factory=ObjectMeta)
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


# --- jobs ---------------------------------------------------------------------------------------


class JobSpec(CaseInsensitive):
    type: Str = None
    cluster_uid: Str = Field(None, alias="clusterUID")
    resource_id: Str = Field(None, alias="resourceID")
    resource_name: Str = Field(None, alias="resourceName")
    extend_param: ExtendParam = Field(None, alias="extendParam")
    sub_jobs: Annotated[list[Job], _objects()] = Field(default_factory=list, alias="subJobs")


class JobStatus(CaseInsensitive):
    phase: Str = None
    reason: Str = None


class Job(Lenient):
    kind: Str = None
    metadata: Annotated[ObjectMeta, _nested(ObjectMeta)] = Field(default_factory=ObjectMeta)
    spec: Annotated[JobSpec, _nested(JobSpec)] = Field(default_factory=JobSpec)
    status: Annotated[JobStatus, _nested(JobStatus)] = Field(default_factory=JobStatus)

    @property
    def id(self) -> str | None:
        return self.metadata.uid

    @property
    def phase(self) -> str | None:
        return self.status.phase

    @property
    def finished(self) -> bool:
        return self.status.phase in JOB_TERMINAL_PHASES

    @property
    def failed_sub_jobs(self) -> list[Job]:
        return [j for j in self.spec.sub_jobs if j.status.phase == "Failed"]


# --- add-ons ------------------------------------------------------------------------------------


class AddonVersion(Lenient):
    version: Str = None
    stable: Bool = None


class AddonSpec(CaseInsensitive):
    cluster_id: Str = Field(None, alias="clusterID")
    version: Str = None
    addon_template_name: Str = Field(None, alias="addonTemplateName")
    addon_template_type: Str = Field(None, alias="addonTemplateType")
    addon_template_labels: StrList = Field(default_factory=list, alias="addonTemplateLabels")
    description: Str = None


class AddonStatus(CaseInsensitive):
    status: Str = None
    reason: Str = None
    message: Str = None
    target_versions: StrList = Field(default_factory=list, alias="targetVersions")
    current_version: Annotated[AddonVersion, _nested(AddonVersion)] = Field(
        default_factory=AddonVersion, alias="currentVersion"
    )


class Addon(Lenient):
    kind: Str = None
    metadata: Annotated[ObjectMeta, _nested(ObjectMeta)] = Field(default_factory=ObjectMeta)
    spec: Annotated[AddonSpec, _nested(AddonSpec)] = Field(default_factory=AddonSpec)
    status: Annotated[AddonStatus, _nested(AddonStatus)] = Field(default_factory=AddonStatus)

    @property
    def id(self) -> str | None:
        return self.metadata.uid

    @property
    def name(self) -> str | None:
        """The template name (``coredns``), falling back to the instance name."""
        return self.spec.addon_template_name or self.metadata.name

    @property
    def version(self) -> str | None:
        return self.spec.version or self.status.current_version.version


def _addon_list_metadata(value: object) -> dict[str, Any]:
    # Typed String in Tbl 4-346, an object elsewhere, absent in the example.
    return value if isinstance(value, dict) else {}


class AddonList(Lenient):
    kind: Str = None
    metadata: Annotated[dict[str, Any], BeforeValidator(_addon_list_metadata)] = Field(
        default_factory=dict
    )
    items: Annotated[list[Addon], _objects()] = Field(default_factory=list)


# --- upgrades -----------------------------------------------------------------------------------


class UpgradeVersionInfo(CaseInsensitive):
    """SDK ``UpgradeVersionInfo``: the cluster's release and the versions it can move to."""

    release: Str = None
    patch: Str = None
    suggest_patch: Str = Field(None, alias="suggestPatch")
    target_versions: StrList = Field(default_factory=list, alias="targetVersions")


class UpgradeInfoSpec(Lenient):
    version_info: Annotated[UpgradeVersionInfo, _nested(UpgradeVersionInfo)] = Field(
        default_factory=UpgradeVersionInfo, alias="versionInfo"
    )


class UpgradeInfo(Lenient):
    """``GET .../clusters/{id}/upgradeinfo`` (SDK ``ShowClusterUpgradeInfoResponse``)."""

    kind: Str = None
    spec: Annotated[UpgradeInfoSpec, _nested(UpgradeInfoSpec)] = Field(
        default_factory=UpgradeInfoSpec
    )

    @property
    def target_versions(self) -> list[str]:
        return [v for v in self.spec.version_info.target_versions if v.strip()]


class SupportVersion(Lenient):
    """SDK ``SupportVersions``: cluster type and version patterns a template version fits."""

    cluster_type: Str = Field(None, alias="clusterType")
    cluster_version: StrList = Field(default_factory=list, alias="clusterVersion")


class TemplateVersion(Lenient):
    """SDK ``Versions``: one version of an add-on template."""

    version: Str = None
    stable: Bool = None
    support_versions: Annotated[list[SupportVersion], _objects()] = Field(
        default_factory=list, alias="supportVersions"
    )


class AddonTemplateSpec(Lenient):
    type: Str = None
    versions: Annotated[list[TemplateVersion], _objects()] = Field(default_factory=list)


class AddonTemplate(Lenient):
    """SDK ``AddonTemplate`` (``GET /api/v3/addontemplates``)."""

    metadata: Annotated[ObjectMeta, _nested(ObjectMeta)] = Field(default_factory=ObjectMeta)
    spec: Annotated[AddonTemplateSpec, _nested(AddonTemplateSpec)] = Field(
        default_factory=AddonTemplateSpec
    )

    @property
    def name(self) -> str | None:
        return self.metadata.name or self.metadata.uid


class AddonTemplateList(Lenient):
    items: Annotated[list[AddonTemplate], _objects()] = Field(default_factory=list)


def version_key(version: str) -> tuple[int, ...]:
    """Numbers of a version (``v1.28.3-r0`` -> (1, 28, 3, 0)), for ordering."""
    return tuple(int(n) for n in re.findall(r"\d+", version)[:8])


_PATTERN_MAX = 128


def _fits(pattern: str, value: str) -> bool:
    """Whether a ``clusterVersion`` pattern (a regular expression such as ``v1.*``) matches."""
    if len(pattern) > _PATTERN_MAX:
        return False
    try:
        return re.fullmatch(pattern, value) is not None
    except re.error:
        return pattern == value


def addon_upgrade_available(
    addon: Addon, cluster: Cluster, templates: dict[str, AddonTemplate]
) -> bool | None:
    """Whether a stable template version newer than the add-on's fits its cluster's type and
    version; None when the template or a version is unknown."""
    template = templates.get(addon.name or "")
    installed = addon.version
    version = cluster.spec.version
    if template is None or not installed or not version:
        return None
    current = version_key(installed)
    for candidate in template.spec.versions:
        if not candidate.version or candidate.stable is False:
            continue
        if version_key(candidate.version) <= current:
            continue
        for support in candidate.support_versions:
            if (
                support.cluster_type
                and cluster.spec.type
                and support.cluster_type != cluster.spec.type
            ):
                continue
            if any(_fits(p, version) for p in support.cluster_version):
                return True
    return False


# --- quotas -------------------------------------------------------------------------------------


class Quota(CaseInsensitive):
    quota_key: Str = Field(None, alias="quotaKey")
    quota_limit: Int = Field(None, alias="quotaLimit")
    used: Int = None
    unit: Str = None
    region_id: Str = Field(None, alias="regionId")
    availability_zone_id: Str = Field(None, alias="availabilityZoneId")


class QuotaList(Lenient):
    quotas: Annotated[list[Quota], _objects()] = Field(default_factory=list)


# --- IAM ----------------------------------------------------------------------------------------


class Project(Lenient):
    id: Str = None
    name: Str = None
    domain_id: Str = None
    enabled: Bool = None


class ProjectList(Lenient):
    projects: Annotated[list[Project], _objects()] = Field(default_factory=list)


class TokenInfo(Lenient):
    expires_at: Timestamp = None
    issued_at: Timestamp = None


class TokenBody(Lenient):
    token: Annotated[TokenInfo, _nested(TokenInfo)] = Field(default_factory=TokenInfo)


# --- parsing ------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)

#: Responses at least this large are validated with the cyclic garbage collector paused.
GC_PAUSE_BYTES = 32 * 1024

_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, re-entrant and across threads.

    Validating a large list allocates hundreds of thousands of models next to a large, long-lived
    heap of earlier ones; the collector would walk that heap again and again for nothing (the
    models form no cycles), which once doubled the parse time of 100,000 nodes. The collector is
    re-enabled when the last pauser leaves, if it was enabled when the first one came.
    """
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def parse_response(model: type[M], payload: bytes | str, *, endpoint: str | None = None) -> M:
    """Validate a whole JSON response into ``model``.

    Raises :class:`ResponseParseError` (and nothing else) for invalid JSON, a top level that is not
    an object, or any shape the model refuses.
    """
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes | bytearray) else payload
        # Top level must be an object; checking the first character spares a second parse.
        if not text.lstrip().startswith("{"):
            raise ResponseParseError("response is not a JSON object", endpoint=endpoint)
        if len(text) < GC_PAUSE_BYTES:
            return model.model_validate_json(text)
        with gc_paused():
            return model.model_validate_json(text)
    except ResponseParseError:
        raise
    except UnicodeDecodeError as exc:
        raise ResponseParseError(
            f"response is not UTF-8: {exc.reason}", endpoint=endpoint
        ) from None
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[:1]
        detail = first[0]["msg"] if first else "invalid"
        where = ".".join(str(p) for p in first[0]["loc"]) if first and first[0]["loc"] else ""
        raise ResponseParseError(
            f"malformed {model.__name__} response{' at ' + where if where else ''}: {detail}",
            endpoint=endpoint,
        ) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise ResponseParseError(
            f"malformed {model.__name__} response: {type(exc).__name__}", endpoint=endpoint
        ) from None


_MISSING = object()


def _ci_get(data: dict[str, Any], canonical: str, name: str) -> Any:
    """A :class:`CaseInsensitive` model's view of one key: the exact spelling, else any other
    casing of it, else the field's Python name (``populate_by_name``)."""
    if canonical in data:
        return data[canonical]
    lower = canonical.lower()
    found: Any = _MISSING
    for key, value in data.items():
        if key.lower() == lower:
            found = value  # the last of several spellings wins, as in _normalise_keys
    return data.get(name) if found is _MISSING else found


def _by_alias(data: dict[str, Any], alias: str, name: str) -> Any:
    """A :class:`Lenient` model's view of one key: its alias, else its Python name."""
    return data[alias] if alias in data else data.get(name)


def _summary_from_dict(item: dict[str, Any]) -> NodeSummary:
    meta = item.get("metadata")
    meta = meta if type(meta) is dict else {}
    spec = item.get("spec")
    spec = spec if type(spec) is dict else {}
    status = item.get("status")
    status = status if type(status) is dict else {}
    if not _SPEC_PLAIN.issuperset(spec):
        spec = {k: _ci_get(spec, k, k) for k in ("flavor", "az", "os")}
    if not _STATUS_PLAIN.issuperset(status):
        status = {
            "phase": _ci_get(status, "phase", "phase"),
            "jobID": _ci_get(status, "jobID", "job_id"),
            "privateIP": _ci_get(status, "privateIP", "private_ip"),
            "lastProbeTime": _ci_get(status, "lastProbeTime", "last_probe_time"),
            "configurationUpToDate": _ci_get(
                status, "configurationUpToDate", "configuration_up_to_date"
            ),
        }
    annotations = meta.get("annotations")
    pool = _to_str_map(annotations).get(NODE_POOL_ANNOTATION) if annotations else None
    moment = parse_timestamp(_by_alias(meta, "creationTimestamp", "creation_timestamp"))
    probe = status.get("lastProbeTime")
    probed = None if probe is None else parse_timestamp(probe)
    return NodeSummary(
        id=_to_str(meta.get("uid")),
        name=_to_str(meta.get("name")),
        phase=_shared(_to_str(status.get("phase"))),
        flavor=_shared(_to_str(spec.get("flavor"))),
        az=_shared(_to_str(spec.get("az"))),
        os=_shared(_to_str(spec.get("os"))),
        nodepool_id=_shared(pool),
        private_ip=_to_str(status.get("privateIP")),
        job_id=_to_str(status.get("jobID")),
        created=None if moment is None else moment.timestamp(),
        last_probe=None if probed is None else probed.timestamp(),
        configuration_up_to_date=_to_bool(status.get("configurationUpToDate")),
    )


#: Spellings of the node spec and status keys that need no case folding: the canonical ones, and
#: keys that fold to none of the fields read (checked in C, one set comparison per object).
_SPEC_PLAIN: frozenset[str] = frozenset(
    {
        "flavor",
        "az",
        "os",
        "rootVolume",
        "dataVolumes",
        "billingMode",
        "extendParam",
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
_STATUS_PLAIN: frozenset[str] = frozenset(
    {
        "phase",
        "jobID",
        "privateIP",
        "serverId",
        "publicIP",
        "reason",
        "message",
        "lastProbeTime",
        "deleteStatus",
        "configurationUpToDate",
        "privateIPv6IP",
    }
)


def next_marker(data: object) -> str | None:
    """``pageInfo.nextMarker`` of a decoded list (SDK ``NodePageInfo``), if it names a next page."""
    if type(data) is not dict:
        return None
    info = data.get("pageInfo")
    if type(info) is not dict:
        return None
    return page_marker(info.get("nextMarker"))


def page_marker(value: object) -> str | None:
    """A ``nextMarker`` value as the next page's marker; None when it names no next page."""
    marker = _to_str(value)
    return marker if marker and marker.strip() else None


def parse_node_page(
    payload: bytes | str, *, endpoint: str | None = None
) -> tuple[list[NodeSummary], str | None]:
    """One page of a node list: its :class:`NodeSummary` objects and ``pageInfo.nextMarker``."""
    try:
        data = from_json(payload, cache_strings="keys")
    except ValueError as exc:
        raise ResponseParseError(
            f"malformed NodeList response: {str(exc)[:120]}", endpoint=endpoint
        ) from None
    if type(data) is not dict:
        raise ResponseParseError("response is not a JSON object", endpoint=endpoint)
    with gc_paused():
        nodes = [_summary_from_dict(item) for item in _to_object_list(data.get("items"))]
    return nodes, next_marker(data)


def parse_node_summaries(payload: bytes | str, *, endpoint: str | None = None) -> list[NodeSummary]:
    """A node list response straight into :class:`NodeSummary` objects.

    The same values as ``[NodeSummary.of(n) for n in parse_response(NodeList, payload).items]``
    (a property test holds them equal), without building the six pydantic objects of each node
    first: at 100,000 nodes that is about a quarter of the CPU. Raises
    :class:`ResponseParseError` for what ``parse_response`` refuses.
    """
    return parse_node_page(payload, endpoint=endpoint)[0]


def extract_job_id(data: object) -> str | None:
    """A job ID in a decoded response: ``jobID``/``jobId``/``jobid``, top level or in ``status``."""
    if not isinstance(data, dict):
        return None
    for container in (data, data.get("status")):
        if isinstance(container, dict):
            for key, value in container.items():
                if isinstance(key, str) and key.lower() == "jobid" and isinstance(value, str):
                    return value or None
    return None


JobSpec.model_rebuild()
