"""The simulated CCE world: clusters, nodes, node pools, add-ons, jobs and quotas.

Everything is generated from a seed (same seed and same clock instant -> the same bytes) and lives
on the simulator clock: a resource's phase is a *timeline* of segments ``(from instant, phase,
reason, message, job ID)``, so transitions (a job finishing, a cluster waking up) need no timer,
only a read of the clock. The JSON of every list is rendered once and kept as bytes until either
the world changes (``version`` moves) or the clock passes the next transition instant of anything
the list shows, which keeps 500 clusters x 200 nodes cheap to serve.

Shapes follow the API reference, quirks included: the cluster list's ``kind`` is ``"Cluster"``,
the node list's ``"Node"``, add-ons spell ``Reason`` with a capital R and use RFC 3339 times while
clusters, nodes and jobs use Go's ``time.Time.String()`` with a varying number of fraction digits,
the normal node-pool phase is ``""`` (absent on the default pool), ``detail=true`` annotations are
strings, and an ``Error`` cluster shows as ``Deleting`` unless ``errorStatus`` is sent.

Hibernation: ``hibernate`` on an ``Available`` cluster goes Hibernating -> Hibernation, ``awake`` on
a ``Hibernation`` cluster goes Awaking -> Available, each step ``transition_seconds`` long; any
other starting phase is a 400 ``CCE.014000xx``. An injected wake-up failure behaves as the public
cloud describes it: the awake call is accepted (200), the cluster goes Awaking, then falls back to
Hibernation with ``reason: AwakeFailed`` and a lack-of-capacity message; there is no job to fail.

Jobs: clusters in a transitional phase (Creating, Upgrading, ScalingUp, ...) and nodes in Build,
Installing, Upgrading or Deleting carry ``status.jobID`` while their job runs; the job goes
Initializing -> Running -> Success/Failed (sub-jobs in sequence, the last one failing when the job
fails), then the resource moves on (Available/Active, Error, or gone). The Upgrading cluster's job
is the stuck one: running since three hours before start, for eight hours.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from exporter.simulator.clock import NS

MINUTE = 60 * NS
HOUR = 60 * MINUTE
DAY = 24 * HOUR

# --- enumerations the world covers (the metric contract's known values) ------------------------

CLUSTER_SPECIAL_PHASES: tuple[str, ...] = (
    "Hibernation",
    "Unavailable",
    "Creating",
    "Error",
    "Upgrading",
    "Deleting",
    "Hibernating",
    "Awaking",
    "ScalingUp",
    "ScalingDown",
    "Resizing",
    "RollingBack",
    "RollbackFailed",
    "Empty",
)
NODE_SPECIAL_PHASES: tuple[str, ...] = (
    "Build",
    "Installing",
    "Installed",
    "ShutDown",
    "Upgrading",
    "Abnormal",
    "Deleting",
    "Error",
    "Repairing",
    "RepairFailed",
)
NODEPOOL_SPECIAL_PHASES: tuple[str, ...] = (
    "SoldOut",
    "Error",
    "Synchronizing",
    "Synchronized",
    "Deleting",
)
ADDON_SPECIAL_STATUSES: tuple[str, ...] = (
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
    "rollbackFailed",
)

#: Today's cluster conditions (SDK ``ClusterCondition``): certificate stages in the order a
#: certificate ages, and the outcomes of a certificate rotation.
CERTIFICATE_REASONS: tuple[str, ...] = (
    "CertificateValid",
    "CertificateExpiringWithin180Days",
    "CertificateExpiringWithin30Days",
    "CertificateExpired",
)
ROTATION_REASONS: tuple[str, ...] = ("RotationInProgress", "RotationSucceeded", "RotationFailed")
#: Node-pool conditions that block scaling up (SDK ``NodePoolCondition.type``).
NODEPOOL_BLOCKING_CONDITIONS: tuple[str, ...] = (
    "QuotaInsufficient",
    "ResourceInsufficient",
    "UnexpectedError",
    "LockedByOrder",
    "Error",
)
#: The largest node page the API serves (SDK ``ListNodesRequest.limit``: 1 to 2000, default 2000).
NODE_PAGE_MAX = 2000
#: Nodes report a probe at most this old (the SDK: a status older than 5 minutes means nothing).
PROBE_STEP = 5 * 60 * 10**9
#: Stands in each cached node JSON for the shared probe time, substituted when a list is served.
_PROBE_MARK = "\x00probe"
_PROBE_MARK_JSON = b'"\\u0000probe"'

# Reference 12.2, with the dedicated-cloud variant; the node limit decides which flavors fit.
CLUSTER_FLAVORS: tuple[tuple[str, int], ...] = (
    ("cce.s1.small", 50),
    ("cce.s1.medium", 200),
    ("cce.s1.large", 1000),
    ("cce.s2.small", 50),
    ("cce.s2.medium", 200),
    ("cce.s2.large", 1000),
    ("cce.s2.xlarge", 2000),
    ("cce.dec.s1.small", 50),
)
K8S_VERSIONS = ("v1.23.11-r0", "v1.25.5-r0", "v1.27.3-r4", "v1.28.3-r0")
AZS = ("az1.dc1", "az2.dc1", "az3.dc1")
NODE_OSES = ("EulerOS 2.5", "EulerOS 2.9", "CentOS 7.6")
# flavor -> (vCPUs, memory GiB)
NODE_FLAVORS: dict[str, tuple[int, int]] = {
    "s6.large.2": (2, 4),
    "s6.xlarge.2": (4, 8),
    "c6.2xlarge.4": (8, 32),
    "s1.medium": (1, 4),
}


@dataclass(frozen=True)
class AddonTemplate:
    name: str
    version: str
    type: str
    labels: tuple[str, ...]
    description: str


ADDON_TEMPLATES: tuple[AddonTemplate, ...] = (
    AddonTemplate("coredns", "1.28.4", "helm", ("ServiceDiscovery",), "CoreDNS DNS server"),
    AddonTemplate(
        "storage-driver",
        "1.0.10",
        "helm",
        ("Storage",),
        "A kubernetes FlexVolume Driver used to support cloud storage",
    ),
    AddonTemplate("metrics-server", "1.3.6", "helm", ("Monitoring",), "Resource metrics"),
    AddonTemplate("autoscaler", "1.25.21", "helm", ("Scheduling",), "Cluster autoscaler"),
    AddonTemplate("gpu-beta", "2.0.5", "helm", ("Accelerator",), "GPU device plugin"),
    AddonTemplate("web-terminal", "1.1.6", "static", ("Maintenance",), "kubectl in a browser"),
)
_TEMPLATE_BY_NAME = {t.name: t for t in ADDON_TEMPLATES}


class SimError(Exception):
    """An API error answer: HTTP status plus the body fields of the API's error shape."""

    def __init__(
        self, status: int, code: str, message: str, *, addon: bool = False, camel: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.addon = addon
        self.camel = camel

    def body(self) -> bytes:
        if self.addon:
            # The reference's add-on manager shape, plus the keys the SDK's CceExceptionHandler
            # reads (it takes no "code": without error_code the SDK would show no code at all).
            return dump_json(
                {
                    "code": self.code,
                    "message": self.message,
                    "error_code": self.code,
                    "error_msg": self.message,
                }
            )
        if self.camel:
            return dump_json({"errorCode": self.code, "errorMessage": self.message})
        return dump_json({"error_code": self.code, "error_msg": self.message})


def older_version(version: str) -> str:
    """The version before ``version`` in the add-on templates (its last number one lower)."""
    head, _, last = version.rpartition(".")
    if not last.isdigit() or int(last) == 0:
        return version
    return f"{head}.{int(last) - 1}"


# --- time formats -------------------------------------------------------------------------------


def go_time(ns: int) -> str:
    """Go's ``time.Time.String()`` in UTC: trailing fraction zeros trimmed, no dot when zero."""
    secs, frac = divmod(ns, NS)
    text = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%d %H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + " +0000 UTC"


def rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns // NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iam_time(ns: int) -> str:
    """IAM's token times: RFC 3339 with microseconds (``2019-02-13T06:52:13.855000Z``)."""
    return datetime.fromtimestamp(ns // 1000 / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dump_json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- timelines ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """From instant ``at`` on, the resource is in ``phase`` (None: it no longer exists)."""

    at: int
    phase: str | None
    reason: str | None = None
    message: str | None = None
    job_id: str | None = None


class Timeline:
    """Segments in time order; the current one is the last that has started."""

    __slots__ = ("segments",)

    def __init__(self, *segments: Segment) -> None:
        self.segments: list[Segment] = list(segments)

    def state(self, now: int) -> tuple[Segment, int | None]:
        """The current segment and the instant of the next change (None when none is planned)."""
        segs = self.segments
        current = segs[0]
        for seg in segs:
            if seg.at > now:
                return current, seg.at
            current = seg
        return current, None

    def replace_from(self, now: int, *segments: Segment) -> None:
        """Drop what was planned after ``now`` and continue with ``segments``."""
        kept = [s for s in self.segments if s.at <= now]
        self.segments = (kept or self.segments[:1]) + list(segments)


class Horizon:
    """Collects the earliest future instant at which a rendering goes stale."""

    __slots__ = ("now", "until")

    def __init__(self, now: int) -> None:
        self.now = now
        self.until: int | None = None

    def note(self, instant: int | None) -> None:
        if (
            instant is not None
            and instant > self.now
            and (self.until is None or instant < self.until)
        ):
            self.until = instant


# --- resources ----------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Job:
    uid: str
    type: str
    cluster_uid: str
    created: int
    started: int
    finished: int
    failed: bool = False
    resource_id: str | None = None
    resource_name: str | None = None
    extend_param: dict[str, str] | None = None
    fail_reason: str = ""
    sub_jobs: list[Job] = field(default_factory=list)

    def phase(self, now: int) -> str:
        if now < self.started:
            return "Initializing"
        if now < self.finished:
            return "Running"
        return "Failed" if self.failed else "Success"

    def next_change(self, now: int) -> int | None:
        for instant in (self.started, self.finished):
            if instant > now:
                return instant
        return None

    def render(self, now: int, horizon: Horizon) -> dict[str, Any]:
        horizon.note(self.next_change(now))
        phase = self.phase(now)
        updated = self.created
        for instant in (self.started, self.finished):
            if instant <= now:
                updated = instant
        spec: dict[str, Any] = {"type": self.type, "clusterUID": self.cluster_uid}
        if self.resource_id is not None:
            spec["resourceID"] = self.resource_id
        if self.resource_name is not None:
            spec["resourceName"] = self.resource_name
        if self.extend_param is not None:
            spec["extendParam"] = dict(self.extend_param)
        if self.sub_jobs:
            spec["subJobs"] = [j.render(now, horizon) for j in self.sub_jobs]
        status: dict[str, Any] = {"phase": phase}
        status["reason"] = self.fail_reason if phase == "Failed" else ""
        return {
            "kind": "Job",
            "apiVersion": "v3",
            "metadata": {
                "uid": self.uid,
                "creationTimestamp": go_time(self.created),
                "updateTimestamp": go_time(updated),
            },
            "spec": spec,
            "status": status,
        }


@dataclass(eq=False, slots=True)
class Node:
    uid: str
    name: str
    cluster_uid: str
    created: int
    flavor: str
    az: str
    os: str
    pool_id: str
    server_id: str
    private_ip: str
    public_ip: str | None
    timeline: Timeline
    #: ``status.configurationUpToDate``: False once the pool's template moved on.
    config_up_to_date: bool = True
    #: A probe frozen at this instant (a stale status); None: probed with everyone else.
    probe_at: int | None = None

    def render(self, now: int, horizon: Horizon) -> dict[str, Any] | None:
        """The node's JSON object; ``lastProbeTime`` is :data:`_PROBE_MARK` unless frozen (the
        list substitutes the shared probe instant, so that cached nodes stay cached)."""
        seg, nxt = self.timeline.state(now)
        horizon.note(nxt)
        if seg.phase is None:
            return None
        status: dict[str, Any] = {"phase": seg.phase}
        status["lastProbeTime"] = _PROBE_MARK if self.probe_at is None else go_time(self.probe_at)
        if seg.job_id:
            status["jobID"] = seg.job_id
        status["serverId"] = self.server_id
        if self.public_ip:
            status["publicIP"] = self.public_ip
        status["privateIP"] = self.private_ip
        if seg.reason:
            status["reason"] = seg.reason
            status["message"] = seg.message or ""
        status["configurationUpToDate"] = self.config_up_to_date
        return {
            "kind": "Node",
            "apiVersion": "v3",
            "metadata": {
                "name": self.name,
                "uid": self.uid,
                "creationTimestamp": go_time(self.created),
                "updateTimestamp": go_time(max(self.created, seg.at)),
                "annotations": {"kubernetes.io/node-pool.id": self.pool_id},
            },
            "spec": {
                "flavor": self.flavor,
                "az": self.az,
                "os": self.os,
                "login": {"sshKey": "KeyPair-sim"},
                "rootVolume": {"volumetype": "SATA", "size": 40},
                "dataVolumes": [{"volumetype": "SSD", "size": 100}],
                "publicIP": {"eip": {"bandwidth": {}}},
                "billingMode": 0,
            },
            "status": status,
        }


@dataclass(eq=False, slots=True)
class NodePool:
    uid: str
    name: str
    flavor: str
    az: str
    os: str
    phase: str
    initial_nodes: int | None
    autoscaling: dict[str, Any]
    default: bool = False
    #: ``status.conditions`` (SDK ``NodePoolCondition``): type -> (status, reason).
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)

    def render(self, current_nodes: int, counts: Counter[str] | None = None) -> dict[str, Any]:
        template: dict[str, Any] = {
            "flavor": self.flavor,
            "az": self.az,
            "os": self.os,
            # (A pool template's publicIP is the SDK's NodeEIPSpec, not a node's NodePublicIP;
            # an empty userPassword lacks the SDK's required password: both left out.)
            "login": {"sshKey": "KeyPair-sim"},
            "rootVolume": {"volumetype": "SATA", "size": 40} if not self.default else {},
            "billingMode": 0,
        }
        spec: dict[str, Any] = {}
        if not self.default:
            spec["type"] = "vm"
            if self.initial_nodes is not None:
                spec["initialNodeCount"] = self.initial_nodes
            template["dataVolumes"] = [
                {"volumetype": "SATA", "size": 100, "extendParam": {"useType": "docker"}}
            ]
            template["extendParam"] = {
                "alpha.cce/preInstall": "",
                "alpha.cce/postInstall": "",
                "maxPods": 110,
            }
            template["k8sTags"] = {"cce.cloud.com/cce-nodepool": self.name}
        spec["nodeTemplate"] = template
        spec["autoscaling"] = dict(self.autoscaling)
        if not self.default:
            spec["nodeManagement"] = {}
        status: dict[str, Any] = {"currentNode": current_nodes}
        # The default pool leaves the phase out altogether; the others send "" when normal.
        if not self.default:
            status["phase"] = self.phase
            # Today's API (SDK NodePoolStatus): node counts, conditions and scale groups.
            counts = counts if counts is not None else Counter()
            status.update(
                {
                    "creatingNode": counts["creating"],
                    "deletingNode": counts["deleting"],
                    "activeNode": counts["active"],
                    "repairingNode": counts["repairing"],
                    "repairFailedNode": counts["repair_failed"],
                    "configurationSyncedNodeCount": counts["synced"],
                }
            )
            conditions = [
                {"type": kind, "status": state, "reason": reason, "message": ""}
                for kind, (state, reason) in self.conditions.items()
            ]
            status["conditions"] = conditions
            upcoming = counts["creating"]
            status["scaleGroupStatuses"] = [
                {
                    "name": "default",
                    "uid": "default",
                    "phase": self.phase,
                    "desiredNodeCount": current_nodes + upcoming - counts["deleting"],
                    "existingNodeCount": {
                        "postPaid": current_nodes,
                        "prePaid": 0,
                        "total": current_nodes,
                    },
                    "upcomingNodeCount": {"postPaid": upcoming, "prePaid": 0, "total": upcoming},
                    "conditions": conditions,
                }
            ]
        return {
            "kind": "NodePool",
            "apiVersion": "v3",
            "metadata": {"name": self.name, "uid": self.uid},
            "spec": spec,
            "status": status,
        }


@dataclass(eq=False, slots=True)
class Addon:
    uid: str
    cluster_uid: str
    template: AddonTemplate
    created: int
    updated: int
    status: str
    reason: str
    message: str
    #: The installed version when older than the template's (an upgrade is available).
    installed: str = ""

    def render(self) -> dict[str, Any]:
        t = self.template
        version = self.installed or t.version
        return {
            "metadata": {
                "uid": self.uid,
                "name": t.name,
                "creationTimestamp": rfc3339(self.created),
                "updateTimestamp": rfc3339(self.updated),
            },
            "apiVersion": "v3",
            "kind": "Addon",
            "spec": {
                "addonTemplateName": t.name,
                "addonTemplateLogo": "",
                "addonTemplateType": t.type,
                "values": {"flavor": {"replicas": 2}, "basic": {"platform": "linux-amd64"}},
                "description": t.description,
                "addonTemplateLabels": list(t.labels),
                "clusterID": self.cluster_uid,
                "version": version,
            },
            "status": {
                "message": self.message,
                "Reason": self.reason,
                "currentVersion": {
                    "input": {"basic": {}, "parameters": {}},
                    "stable": True,
                    "creationTimestamp": "2024-01-15T08:00:00Z",
                    "version": version,
                    "translate": {"en_US": {"addon": {"changeLog": "", "description": ""}}},
                    "supportVersions": [
                        {"clusterType": "VirtualMachine", "clusterVersion": ["v1.*"]}
                    ],
                    "updateTimestamp": "2024-01-15T08:00:00Z",
                },
                "status": self.status,
            },
        }


@dataclass(eq=False, slots=True)
class Cluster:
    uid: str
    name: str
    created: int
    flavor: str
    version: str
    type: str
    category: str
    description: str
    vpc: str
    subnet: str
    network_mode: str
    container_cidr: str
    az: str
    internal_ip: str
    external_ip: str | None
    timeline: Timeline
    nodes: dict[str, Node] = field(default_factory=dict)
    pools: dict[str, NodePool] = field(default_factory=dict)
    addons: dict[str, Addon] = field(default_factory=dict)
    fail_next_wakeup: bool = False
    #: Today's status (SDK ClusterStatus): the certificate's stage, the last rotation's outcome
    #: (None: never rotated), the agency's state, and a billing lock (scene, source) or None.
    certificate: str = "CertificateValid"
    rotation: str | None = None
    agency: bool = True
    lock: tuple[str, str] | None = None
    masters: int = 1

    def segment(self, now: int) -> Segment:
        return self.timeline.state(now)[0]

    def render(
        self, now: int, horizon: Horizon, *, detail: bool = False, error_status: bool = False
    ) -> dict[str, Any] | None:
        seg, nxt = self.timeline.state(now)
        horizon.note(nxt)
        if seg.phase is None:
            return None
        phase = seg.phase
        # Reference 5.2: without errorStatus the Error phase is masked as Deleting.
        if phase == "Error" and not error_status:
            phase = "Deleting"
        metadata: dict[str, Any] = {
            "name": self.name,
            "uid": self.uid,
            "creationTimestamp": go_time(self.created),
            "updateTimestamp": go_time(max(self.created, seg.at)),
        }
        if detail:
            metadata["annotations"] = self._detail_annotations(now, horizon)
        status: dict[str, Any] = {"phase": phase}
        if seg.job_id:
            status["jobID"] = seg.job_id
        if phase != "Available" and seg.reason:
            status["reason"] = seg.reason
            status["message"] = seg.message or ""
        endpoints = [{"url": f"https://{self.internal_ip}:5443", "type": "Internal"}]
        if self.external_ip:
            endpoints.append({"url": f"https://{self.external_ip}:5443", "type": "External"})
        status["endpoints"] = endpoints
        status["isLocked"] = self.lock is not None
        if self.lock is not None:
            status["lockScene"], status["lockSource"] = self.lock
        status["conditions"] = self._conditions()
        spec_extra: dict[str, Any] = {}
        if self.category == "Turbo":
            # Required for CCE Turbo (SDK ClusterSpec.eniNetwork): the container subnets.
            spec_extra["eniNetwork"] = {"subnets": [{"subnetID": self.subnet}]}
        return {
            "kind": "Cluster",
            "apiVersion": "v3",
            "metadata": metadata,
            "spec": {
                "category": self.category,
                "type": self.type,
                "flavor": self.flavor,
                "version": self.version,
                "description": self.description,
                "hostNetwork": {"vpc": self.vpc, "subnet": self.subnet},
                "containerNetwork": {"mode": self.network_mode, "cidr": self.container_cidr},
                "authentication": {"mode": "rbac", "authenticatingProxy": {}},
                "billingMode": 0,
                "kubernetesSvcIpRange": "10.247.0.0/16",
                "extendParam": {"clusterAZ": self.az},
                "masters": self._masters(),
                **spec_extra,
            },
            "status": status,
        }

    def _masters(self) -> list[dict[str, str]]:
        """The control plane's nodes (SDK ``MasterSpec``): one zone each, spread over the AZs."""
        if self.az in AZS:
            return [{"availabilityZone": self.az} for _ in range(self.masters)]
        return [{"availabilityZone": AZS[i % len(AZS)]} for i in range(self.masters)]

    def _conditions(self) -> list[dict[str, str]]:
        """``status.conditions`` (SDK ``ClusterCondition``)."""
        valid = self.certificate == "CertificateValid"
        out = [
            {
                "type": "ClusterCertificate",
                "status": "True" if valid else "False",
                "reason": self.certificate,
                "message": "",
            },
            {
                "type": "AgencyAvailable",
                "status": "True" if self.agency else "False",
                "reason": "" if self.agency else "AgencyNotFound",
                "message": "",
            },
        ]
        if self.rotation is not None:
            out.append(
                {
                    "type": "CertificateRotation",
                    "status": "False" if self.rotation == "RotationFailed" else "True",
                    "reason": self.rotation,
                    "message": "",
                }
            )
        return out

    def upgrade_targets(self) -> list[str]:
        """Versions this cluster could be upgraded to: the later ones of :data:`K8S_VERSIONS`."""
        if self.version not in K8S_VERSIONS:
            return []
        return list(K8S_VERSIONS[K8S_VERSIONS.index(self.version) + 1 :])

    def _detail_annotations(self, now: int, horizon: Horizon) -> dict[str, str]:
        total = active = cpu = memory = 0
        for node in self.nodes.values():
            seg, nxt = node.timeline.state(now)
            horizon.note(nxt)
            if seg.phase is None:
                continue
            total += 1
            if seg.phase == "Active":
                active += 1
            c, m = NODE_FLAVORS.get(node.flavor, (2, 4))
            cpu += c
            memory += m
        installed = [
            {
                "addonTemplateName": a.template.name,
                "version": a.installed or a.template.version,
                "status": a.status,
            }
            for a in self.addons.values()
        ]
        return {
            "totalNodesNumber": str(total),
            "activeNodesNumber": str(active),
            "totalNodesCPU": str(cpu),
            "totalNodesMemory": str(memory),
            "installedAddonInstances": json.dumps(installed, separators=(",", ":")),
        }

    def pool_counts(self, now: int, horizon: Horizon) -> Counter[str]:
        counts: Counter[str] = Counter()
        for node in self.nodes.values():
            seg, nxt = node.timeline.state(now)
            horizon.note(nxt)
            if seg.phase is not None:
                counts[node.pool_id] += 1
        return counts

    def pool_states(self, now: int, horizon: Horizon) -> dict[str, Counter[str]]:
        """Per pool, its nodes by the SDK's count names (creating, active, synced...)."""
        states: dict[str, Counter[str]] = {}
        for node in self.nodes.values():
            seg, nxt = node.timeline.state(now)
            horizon.note(nxt)
            if seg.phase is None:
                continue
            counts = states.setdefault(node.pool_id, Counter())
            state = _NODE_COUNT_STATES.get(seg.phase)
            if state is not None:
                counts[state] += 1
            if node.config_up_to_date:
                counts["synced"] += 1
        return states


# --- the world ----------------------------------------------------------------------------------

#: Node phase -> the node-pool count it adds to (SDK NodePoolStatus creatingNode, activeNode...).
_NODE_COUNT_STATES: dict[str, str] = {
    "Build": "creating",
    "Installing": "creating",
    "Installed": "creating",
    "Active": "active",
    "Deleting": "deleting",
    "Repairing": "repairing",
    "RepairFailed": "repair_failed",
}

_JOB_SUBTYPES: dict[str, tuple[str, ...]] = {
    "CreateCluster": ("CreatePSMCert", "InstallMaster", "InstallAddons"),
    "DeleteCluster": ("DeleteAddons", "DeleteMaster"),
    "UpgradeCluster": ("UpgradePreCheck", "UpgradeMaster", "UpgradeNodes"),
    "ScaleUpCluster": ("PrepareMasterResources", "ScaleMaster"),
    "ScaleDownCluster": ("DrainMaster", "ScaleMaster"),
    "ResizeCluster": ("PrepareMasterResources", "ResizeMaster"),
    "RollbackCluster": ("RollbackMaster",),
    "CreateNode": ("CreateServer", "InstallNode"),
    "DeleteNode": ("DrainNode", "DeleteServer"),
    "UpgradeNode": ("UpgradeNodeComponents",),
}
_CLUSTER_JOB_TYPES: dict[str, str] = {
    "Creating": "CreateCluster",
    "Deleting": "DeleteCluster",
    "Upgrading": "UpgradeCluster",
    "ScalingUp": "ScaleUpCluster",
    "ScalingDown": "ScaleDownCluster",
    "Resizing": "ResizeCluster",
    "RollingBack": "RollbackCluster",
}
_STATIC_REASONS: dict[str, tuple[str, str]] = {
    "Unavailable": ("ClusterUnavailable", "kube-apiserver of the control plane is not reachable"),
    "Error": ("ClusterError", "control-plane node failed its health check three times"),
    "RollbackFailed": ("RollbackFailed", "rollback of the upgrade failed at step UpgradeMaster"),
    "Empty": ("ClusterEmpty", "the cluster has no resources"),
}
_ADDON_REASONS: dict[str, tuple[str, str]] = {
    "running": ("Install complete", ""),
    "available": ("Install complete", ""),
    "installing": ("Installing", ""),
    "installFailed": ("Install failed", "helm install timed out after 300s"),
    "upgrading": ("Upgrading", ""),
    "upgradeFailed": ("Upgrade failed", "pre-upgrade hook failed"),
    "abnormal": ("Abnormal", "1 of 2 replicas not ready"),
    "unavailable": ("Unavailable", "no replica ready"),
    "deleting": ("Deleting", ""),
    "deleteSuccess": ("Delete complete", ""),
    "deleteFailed": ("Delete failed", "helm uninstall failed"),
    "rollbacking": ("Rolling back", ""),
    "rollbackFailed": ("Rollback failed", "helm rollback failed"),
    "unknown": ("Unknown", "the add-on's template instance does not exist"),
}

RenderFn = Callable[[Horizon], object]


class World:
    """The simulated project; see the module docstring. All instants are clock nanoseconds."""

    def __init__(
        self,
        *,
        seed: int,
        clusters: int,
        nodes_per_cluster: int,
        now_ns: Callable[[], int],
        transition_seconds: float = 60.0,
        project_id: str = "0" * 32,
        region: str = "sim-region-1",
    ) -> None:
        self.seed = seed
        self.now_ns = now_ns
        self.transition_ns = max(1, int(transition_seconds * NS))
        self.project_id = project_id
        self.region = region
        self.clusters: dict[str, Cluster] = {}
        self.jobs: dict[str, Job] = {}
        self.version = 0
        self.wakeup_failures = 0
        self._cache: dict[tuple[object, ...], tuple[int, int | None, bytes]] = {}
        self._node_json: dict[str, tuple[int, Segment, bytes]] = {}
        self._parts_cache: dict[str, tuple[int, int | None, list[tuple[str, bytes]]]] = {}
        #: The largest node page served (the public cloud's is 2,000).
        self.node_page_max = NODE_PAGE_MAX
        #: Optional calls this installation offers (a Stack installation may lack some).
        self.features: dict[str, bool] = {"upgradeinfo": True, "addontemplates": True}
        self._rng = random.Random(seed)
        self._counters: Counter[str] = Counter()
        self._node_seq = 0
        self._pool_seq = 0
        self._addon_seq = 0
        self._job_seq = 0
        self._generate(clusters, nodes_per_cluster)

    # --- ids and helpers ----------------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _past(self, now: int, min_ns: int, max_ns: int) -> int:
        """An instant in the past, quantised at random so fraction digits vary (0 to 9)."""
        value = now - self._rng.randrange(min_ns, max_ns)
        quantum = self._rng.choice((1, 1, 1, 10, 100, 1000, NS))
        return value - value % quantum

    def _new_job(
        self,
        job_type: str,
        cluster_uid: str,
        *,
        created: int,
        init_ns: int,
        run_ns: int,
        failed: bool = False,
        resource_id: str | None = None,
        resource_name: str | None = None,
    ) -> Job:
        started = created + init_ns
        finished = started + run_ns
        job = Job(
            uid=self._uuid(),
            type=job_type,
            cluster_uid=cluster_uid,
            created=created,
            started=started,
            finished=finished,
            failed=failed,
            resource_id=resource_id,
            resource_name=resource_name,
            extend_param={"serverID": self._uuid()} if resource_id else None,
        )
        subtypes = _JOB_SUBTYPES.get(job_type, ("Execute",))
        part = max(1, run_ns // len(subtypes))
        for i, sub_type in enumerate(subtypes):
            sub_failed = failed and i == len(subtypes) - 1
            sub = Job(
                uid=self._uuid(),
                type=sub_type,
                cluster_uid=cluster_uid,
                created=created + (i + 1) * 1_234_567,
                started=started + i * part,
                finished=finished if i == len(subtypes) - 1 else started + (i + 1) * part,
                failed=sub_failed,
                fail_reason=f"{sub_type} failed: insufficient resources" if sub_failed else "",
            )
            job.sub_jobs.append(sub)
            self.jobs[sub.uid] = sub
        if failed:
            job.fail_reason = f"sub-job {subtypes[-1]} failed"
        self.jobs[job.uid] = job
        self._job_seq += 1
        return job

    # --- generation ---------------------------------------------------------------------------

    def _generate(self, n_clusters: int, nodes_per_cluster: int) -> None:
        now = self.now_ns()
        specials = list(CLUSTER_SPECIAL_PHASES[: max(0, n_clusters // 2)])
        # Deterministic positions for the special phases; cluster 0 always stays Available.
        positions = list(range(1, n_clusters))
        self._rng.shuffle(positions)
        phase_of = {pos: phase for pos, phase in zip(positions, specials, strict=False)}
        for i in range(n_clusters):
            self._add_cluster(
                now,
                name=f"sim-cluster-{i:03d}",
                phase=phase_of.get(i, "Available"),
                nodes=nodes_per_cluster,
                generated=True,
            )

    def _cluster_timeline(
        self, now: int, uid: str, name: str, created: int, phase: str
    ) -> Timeline:
        t = self.transition_ns
        if phase == "Available":
            return Timeline(Segment(created, "Available"))
        if phase in _STATIC_REASONS:
            reason, message = _STATIC_REASONS[phase]
            since = max(created, now - self._rng.randrange(MINUTE, DAY))
            return Timeline(Segment(created, "Available"), Segment(since, phase, reason, message))
        if phase == "Hibernation":
            since = max(created, now - self._rng.randrange(HOUR, 3 * DAY))
            return Timeline(Segment(created, "Available"), Segment(since, "Hibernation"))
        if phase == "Hibernating":
            return Timeline(
                Segment(created, "Available"),
                Segment(now, "Hibernating"),
                Segment(now + t, "Hibernation"),
            )
        if phase == "Awaking":
            return Timeline(
                Segment(created, "Hibernation"),
                Segment(now, "Awaking"),
                Segment(now + t, "Available"),
            )
        job_type = _CLUSTER_JOB_TYPES[phase]
        if phase == "Upgrading":
            # The stuck job: running for hours, finishing only after a long while.
            job = self._new_job(
                job_type,
                uid,
                created=now - 3 * HOUR,
                init_ns=20 * NS,
                run_ns=8 * HOUR,
                resource_id=uid,
                resource_name=name,
            )
        else:
            job = self._new_job(
                job_type,
                uid,
                created=now - self._rng.randrange(MINUTE, 5 * MINUTE),
                init_ns=30 * NS,
                run_ns=self._rng.randrange(10 * MINUTE, 30 * MINUTE),
                failed=phase == "ScalingDown",
                resource_id=uid,
                resource_name=name,
            )
        start = job.created if phase != "Creating" else created
        if phase == "Creating":
            after: str | None = "Unavailable" if job.failed else "Available"
        elif phase == "Deleting":
            after = None
        else:
            after = "Available"
        segments = [Segment(start, phase, job_id=job.uid)]
        if phase != "Creating":
            segments.insert(0, Segment(created, "Available"))
        segments.append(Segment(job.finished, after))
        return Timeline(*segments)

    def _add_cluster(
        self,
        now: int,
        *,
        name: str,
        phase: str,
        nodes: int,
        generated: bool,
        flavor: str | None = None,
    ) -> Cluster:
        rng = self._rng
        uid = self._uuid()
        if phase == "Creating":
            created = now - rng.randrange(MINUTE, 5 * MINUTE)
        else:
            created = self._past(now, 2 * DAY, 400 * DAY)
        if flavor is None:
            fitting = [f for f, limit in CLUSTER_FLAVORS if limit >= nodes] or [
                CLUSTER_FLAVORS[6][0]
            ]
            flavor = rng.choice(fitting)
        index = len(self.clusters)
        cluster = Cluster(
            uid=uid,
            name=name,
            created=created,
            flavor=flavor,
            version=rng.choice(K8S_VERSIONS),
            type=rng.choice(("VirtualMachine", "VirtualMachine", "VirtualMachine", "ARM64")),
            category=rng.choice(("CCE", "CCE", "Turbo")),
            description=f"simulated cluster {index}",
            vpc=self._uuid(),
            subnet=self._uuid(),
            network_mode=rng.choice(("overlay_l2", "vpc-router")),
            container_cidr=f"172.{16 + index % 16}.0.0/16",
            az=rng.choice((*AZS, "multi_az")),
            internal_ip=f"192.168.{index // 250 % 250}.{index % 250 + 2}",
            external_ip=f"100.64.{index // 250 % 250}.{index % 250 + 2}"
            if index % 3 == 0
            else None,
            timeline=self._cluster_timeline(now, uid, name, created, phase),
        )
        cluster.masters = {"s1": 1, "s2": 3, "s3": 5}.get(flavor.split(".")[-2], 1)
        if index % 10 == 4:
            cluster.certificate = "CertificateExpiringWithin180Days"
        elif index % 15 == 7:
            cluster.certificate = "CertificateExpiringWithin30Days"
        elif index % 30 == 13:
            cluster.certificate = "CertificateExpired"
        if index % 30 == 22:
            cluster.rotation = "RotationFailed"
        elif index % 5 == 1:
            cluster.rotation = "RotationSucceeded"
        if index % 30 == 17:
            cluster.lock = ("ARREAR", "CBC")
        self.clusters[uid] = cluster
        self._add_pools(cluster)
        if phase not in ("Creating", "Empty"):
            self.add_nodes(uid, nodes, generated=generated)
        self._add_addons(now, cluster)
        return cluster

    def _add_pools(self, cluster: Cluster) -> None:
        rng = self._rng
        az, flavor, os_name = (
            rng.choice(AZS),
            rng.choice(tuple(NODE_FLAVORS)),
            rng.choice(NODE_OSES),
        )
        key = f"{az}#{flavor}#{os_name}"
        cluster.pools[key] = NodePool(
            uid=key,
            name=key,
            flavor=flavor,
            az=az,
            os=os_name,
            phase="",
            initial_nodes=None,
            autoscaling={"enable": False, "maxNodeCount": 50},
            default=True,
        )
        for j in range(rng.choice((1, 2, 2, 3))):
            seq = self._pool_seq
            self._pool_seq += 1
            phase = ""
            if seq % 4 == 3:
                phase = NODEPOOL_SPECIAL_PHASES[(seq // 4) % len(NODEPOOL_SPECIAL_PHASES)]
            conditions = {"Scalable": ("True", "")}
            if phase == "SoldOut":
                # What replaces SoldOut today: not scalable, and why.
                conditions = {
                    "Scalable": ("False", "ResourceInsufficient"),
                    "ResourceInsufficient": ("True", "FlavorSoldOut"),
                }
            elif phase == "Error":
                conditions = {"Scalable": ("False", "Error"), "Error": ("True", "DeleteFailed")}
            elif seq % 9 == 5:
                conditions = {
                    "Scalable": ("False", "QuotaInsufficient"),
                    "QuotaInsufficient": ("True", "ECSQuotaInsufficient"),
                }
            minimum = rng.choice((0, 1, 2))
            pool = NodePool(
                uid=self._uuid(),
                name=f"{cluster.name}-pool-{j}",
                flavor=rng.choice(tuple(NODE_FLAVORS)),
                az=rng.choice(AZS),
                os=rng.choice(NODE_OSES),
                phase=phase,
                initial_nodes=rng.choice((1, 2, 3, 5)),
                autoscaling=(
                    {"enable": True, "minNodeCount": minimum, "maxNodeCount": minimum + 50}
                    if seq % 2 == 0
                    else {"maxNodeCount": 20}
                ),
                conditions=conditions,
            )
            cluster.pools[pool.uid] = pool

    def _add_addons(self, now: int, cluster: Cluster) -> None:
        rng = self._rng
        names = ["coredns", "storage-driver", "metrics-server"]
        names += [n for n in ("autoscaler", "gpu-beta", "web-terminal") if rng.random() < 0.4]
        for name in names:
            seq = self._addon_seq
            self._addon_seq += 1
            status = "running"
            if seq % 5 == 2:
                status = ADDON_SPECIAL_STATUSES[(seq // 5) % len(ADDON_SPECIAL_STATUSES)]
            reason, message = _ADDON_REASONS[status]
            created = max(cluster.created, self._past(now, HOUR, 300 * DAY))
            addon = Addon(
                uid=self._uuid(),
                cluster_uid=cluster.uid,
                template=_TEMPLATE_BY_NAME[name],
                created=created,
                updated=max(created, self._past(now, MINUTE, HOUR)),
                status=status,
                reason=reason,
                message=message,
            )
            if seq % 4 == 1:
                addon.installed = older_version(addon.template.version)
            cluster.addons[addon.uid] = addon

    def _node_timeline(
        self, now: int, cluster: Cluster, uid: str, name: str, created: int, phase: str
    ) -> Timeline:
        rng = self._rng
        if phase == "Active":
            return Timeline(Segment(created, "Active"))
        if phase in ("ShutDown", "Abnormal", "Error", "Repairing", "RepairFailed"):
            since = max(created, now - rng.randrange(MINUTE, DAY))
            reason = {
                "ShutDown": None,
                "Abnormal": "NodeNotReady",
                "Error": "NodeError",
                "Repairing": "NodeRestarting",
                "RepairFailed": "NodeRestartFailed",
            }[phase]
            message = None if reason is None else "kubelet stopped posting node status"
            return Timeline(Segment(created, "Active"), Segment(since, phase, reason, message))
        if phase == "Installed":
            return Timeline(Segment(created, "Installed"), Segment(now + 2 * MINUTE, "Active"))
        if phase in ("Build", "Installing"):
            self._counters["node_create_jobs"] += 1
            failed = self._counters["node_create_jobs"] % 3 == 0
            job = self._new_job(
                "CreateNode",
                cluster.uid,
                created=created,
                # The first Build node's job is still initialising at start.
                init_ns=(3 * MINUTE if phase == "Build" else 20 * NS),
                run_ns=rng.randrange(5 * MINUTE, 15 * MINUTE),
                failed=failed,
                resource_id=uid,
                resource_name=name,
            )
            segs = [Segment(created, phase, job_id=job.uid)]
            if phase == "Build":
                segs.append(Segment(job.started + MINUTE, "Installing", job_id=job.uid))
            end = (
                Segment(job.finished, "Error", "InstallFailed", job.fail_reason) if failed else None
            )
            segs.append(end or Segment(job.finished, "Active"))
            return Timeline(*segs)
        job_type = {"Upgrading": "UpgradeNode", "Deleting": "DeleteNode"}[phase]
        job = self._new_job(
            job_type,
            cluster.uid,
            created=now - rng.randrange(MINUTE, 4 * MINUTE),
            init_ns=15 * NS,
            run_ns=rng.randrange(5 * MINUTE, 20 * MINUTE),
            resource_id=uid,
            resource_name=name,
        )
        return Timeline(
            Segment(created, "Active"),
            Segment(job.created, phase, job_id=job.uid),
            Segment(job.finished, None if phase == "Deleting" else "Active"),
        )

    # --- control operations (the control API calls these) ------------------------------------

    def _changed(self) -> None:
        self.version += 1

    def cluster(self, uid: str) -> Cluster:
        cluster = self.clusters.get(uid)
        if cluster is None or cluster.segment(self.now_ns()).phase is None:
            raise SimError(404, "CCE.01404001", f"cluster {uid} not found")
        return cluster

    def add_cluster(
        self,
        *,
        name: str | None = None,
        phase: str = "Available",
        nodes: int = 0,
        flavor: str | None = None,
    ) -> Cluster:
        now = self.now_ns()
        if name is None:
            name = f"sim-cluster-{len(self.clusters):03d}"
        if phase not in CLUSTER_SPECIAL_PHASES and phase != "Available":
            # An arbitrary (possibly unknown) phase is held as it is.
            cluster = self._add_cluster(
                now, name=name, phase="Available", nodes=nodes, generated=False
            )
            cluster.timeline.replace_from(now, Segment(now, phase))
        else:
            cluster = self._add_cluster(
                now, name=name, phase=phase, nodes=nodes, generated=False, flavor=flavor
            )
        if flavor is not None:
            cluster.flavor = flavor
        self._changed()
        return cluster

    def remove_cluster(self, uid: str) -> None:
        self.cluster(uid)
        del self.clusters[uid]
        self._changed()

    def add_nodes(
        self, cluster_uid: str, count: int, *, phase: str | None = None, generated: bool = False
    ) -> list[Node]:
        now = self.now_ns()
        cluster = self.clusters[cluster_uid] if generated else self.cluster(cluster_uid)
        rng = self._rng
        pools = list(cluster.pools.values())
        added: list[Node] = []
        for _ in range(count):
            seq = self._node_seq
            self._node_seq += 1
            node_phase = phase or "Active"
            if phase is None and generated and seq % 13 == 7:
                node_phase = NODE_SPECIAL_PHASES[(seq // 13) % len(NODE_SPECIAL_PHASES)]
            pool = (
                pools[0] if seq % 3 == 0 or len(pools) == 1 else pools[1 + seq % (len(pools) - 1)]
            )
            uid = self._uuid()
            name = f"{pool.name if not pool.default else cluster.name}-{seq:06d}"[-56:].lstrip("-#")
            name = name.replace("#", "-").replace(".", "-").replace(" ", "-").lower()
            if node_phase in ("Build", "Installing"):
                created = now - rng.randrange(10 * NS, 2 * MINUTE)
            else:
                created = max(cluster.created, self._past(now, HOUR, 300 * DAY))
            known = node_phase in NODE_SPECIAL_PHASES or node_phase == "Active"
            node = Node(
                uid=uid,
                name=name,
                cluster_uid=cluster.uid,
                created=created,
                flavor=pool.flavor,
                az=pool.az,
                os=pool.os,
                pool_id=pool.uid,
                server_id=self._uuid(),
                private_ip=f"10.{seq // 65536 % 256}.{seq // 256 % 256}.{seq % 256}",
                public_ip=f"100.96.{seq // 256 % 256}.{seq % 256}" if seq % 10 == 0 else None,
                timeline=(
                    self._node_timeline(now, cluster, uid, name, created, node_phase)
                    if known
                    else Timeline(Segment(created, node_phase))
                ),
            )
            if generated and seq % 11 == 4:
                node.config_up_to_date = False  # the pool's template changed since
            if generated and seq % 97 == 50:
                node.probe_at = now - 20 * MINUTE  # a status that stopped being refreshed
            cluster.nodes[uid] = node
            added.append(node)
        if not generated:
            self._changed()
        return added

    def remove_node(self, cluster_uid: str, node_uid: str) -> None:
        cluster = self.cluster(cluster_uid)
        if node_uid not in cluster.nodes:
            raise SimError(404, "CCE.01404002", f"node {node_uid} not found")
        del cluster.nodes[node_uid]
        self._node_json.pop(node_uid, None)
        self._changed()

    def set_phase(
        self,
        kind: str,
        uid: str,
        phase: str,
        *,
        cluster_id: str | None = None,
        reason: str | None = None,
        message: str | None = None,
        version: str | None = None,
    ) -> None:
        """Hold a cluster/node/nodepool phase or an add-on status (and installed version)."""
        now = self.now_ns()
        if kind == "cluster":
            self.cluster(uid).timeline.replace_from(now, Segment(now, phase, reason, message))
        elif kind == "node":
            node = self._find(uid, cluster_id, lambda c: c.nodes)
            node.timeline.replace_from(now, Segment(now, phase, reason, message))
        elif kind == "nodepool":
            pool = self._find(uid, cluster_id, lambda c: c.pools)
            pool.phase = "" if phase == "Normal" else phase
        elif kind == "addon":
            addon = self._find(uid, cluster_id, lambda c: c.addons)
            addon.status = phase
            addon.reason, addon.message = _ADDON_REASONS.get(phase, (reason or "", message or ""))
            addon.updated = now
            if version is not None:
                addon.installed = str(version)
        else:
            raise SimError(400, "SIM.400", f"unknown kind {kind!r}")
        self._changed()

    def _find(
        self, uid: str, cluster_id: str | None, table: Callable[[Cluster], dict[str, Any]]
    ) -> Any:
        clusters: Iterable[Cluster] = (
            [self.cluster(cluster_id)] if cluster_id else list(self.clusters.values())
        )
        for cluster in clusters:
            found = table(cluster).get(uid)
            if found is not None:
                return found
        raise SimError(404, "SIM.404", f"{uid} not found")

    def hibernate(self, uid: str) -> None:
        now = self.now_ns()
        cluster = self.cluster(uid)
        phase = cluster.segment(now).phase
        if phase != "Available":
            raise SimError(
                400,
                "CCE.01400010",
                f"cluster {cluster.name} is {phase}; only an Available cluster can be hibernated",
            )
        cluster.timeline.replace_from(
            now, Segment(now, "Hibernating"), Segment(now + self.transition_ns, "Hibernation")
        )
        self._changed()

    def awake(self, uid: str) -> None:
        now = self.now_ns()
        cluster = self.cluster(uid)
        phase = cluster.segment(now).phase
        if phase != "Hibernation":
            raise SimError(
                400,
                "CCE.01400011",
                f"cluster {cluster.name} is {phase}; only a hibernated cluster can be woken up",
            )
        end = now + self.transition_ns
        if cluster.fail_next_wakeup:
            # As on the public cloud, the wake-up is accepted and fails later for lack of
            # capacity: the cluster falls back to Hibernation and says why.
            cluster.fail_next_wakeup = False
            self.wakeup_failures += 1
            final = Segment(
                end,
                "Hibernation",
                "AwakeFailed",
                "insufficient resources to start the control plane; wait and retry",
            )
        else:
            final = Segment(end, "Available")
        cluster.timeline.replace_from(now, Segment(now, "Awaking"), final)
        self._changed()

    def set_cluster_status(
        self,
        uid: str,
        *,
        certificate: str | None = None,
        rotation: Any = ...,
        agency: bool | None = None,
        lock: Any = ...,
    ) -> None:
        """Set today's cluster status fields (``...``: leave as it is)."""
        cluster = self.cluster(uid)
        if certificate is not None:
            cluster.certificate = str(certificate)
        if rotation is not ...:
            cluster.rotation = None if rotation is None else str(rotation)
        if agency is not None:
            cluster.agency = bool(agency)
        if lock is not ...:
            cluster.lock = lock
        self._changed()

    def set_node_status(
        self,
        cluster_uid: str,
        node_uid: str,
        *,
        probe_age_seconds: Any = ...,
        configuration_up_to_date: bool | None = None,
    ) -> None:
        """Freeze a node's probe ``probe_age_seconds`` ago (None: probed again), or mark it
        (not) up to date with its pool's template."""
        node = self.cluster(cluster_uid).nodes.get(node_uid)
        if node is None:
            raise SimError(404, "CCE.01404002", f"node {node_uid} not found")
        if probe_age_seconds is not ...:
            node.probe_at = (
                None
                if probe_age_seconds is None
                else self.now_ns() - int(float(probe_age_seconds) * NS)
            )
        if configuration_up_to_date is not None:
            node.config_up_to_date = bool(configuration_up_to_date)
        self._changed()

    def set_pool_conditions(
        self, cluster_uid: str, pool_uid: str, conditions: dict[str, tuple[str, str]]
    ) -> None:
        pool = self.cluster(cluster_uid).pools.get(pool_uid)
        if pool is None:
            raise SimError(404, "CCE.01404003", f"node pool {pool_uid} not found")
        pool.conditions = dict(conditions)
        self._changed()

    def fail_next_wakeup(self, uid: str) -> None:
        self.cluster(uid).fail_next_wakeup = True
        self._changed()

    def invalidate(self) -> None:
        """Called when the clock jumps: cached renderings stay valid by instant, but be safe."""
        self._changed()

    # --- rendering ----------------------------------------------------------------------------

    def _cached(self, key: tuple[object, ...], build: RenderFn) -> bytes:
        return self._cached_bytes(key, lambda horizon: dump_json(build(horizon)))

    def _cached_bytes(self, key: tuple[object, ...], build: Callable[[Horizon], bytes]) -> bytes:
        """``build``'s payload, kept until the world changes or its horizon passes."""
        now = self.now_ns()
        entry = self._cache.get(key)
        if entry is not None:
            version, until, payload = entry
            if version == self.version and (until is None or now < until):
                return payload
        horizon = Horizon(now)
        payload = build(horizon)
        self._cache[key] = (self.version, horizon.until, payload)
        return payload

    def cluster_list_bytes(
        self,
        *,
        error_status: bool = False,
        detail: bool = False,
        status: str | None = None,
        type: str | None = None,
        version: str | None = None,
    ) -> bytes:
        """The cluster list; ``status``, ``type`` and ``version`` filter it as the SDK's
        ``ListClustersRequest`` does (exact match on the phase shown, type and version)."""

        def build(h: Horizon) -> object:
            items = [
                c.render(h.now, h, error_status=error_status, detail=detail)
                for c in self.clusters.values()
            ]
            kept = [
                i
                for i in items
                if i
                and (not status or i["status"]["phase"] == status)
                and (not type or i["spec"]["type"] == type)
                and (not version or i["spec"]["version"] == version)
            ]
            return {"kind": "Cluster", "apiVersion": "v3", "items": kept}

        return self._cached(("clusters", error_status, detail, status, type, version), build)

    def upgradeinfo_bytes(self, uid: str) -> bytes:
        """``GET .../clusters/{id}/upgradeinfo`` (SDK ``ShowClusterUpgradeInfoResponse``)."""
        if not self.features.get("upgradeinfo", True):
            raise SimError(404, "CCE.01404001", "the API does not offer upgradeinfo", camel=True)
        cluster = self.cluster(uid)
        targets = cluster.upgrade_targets()
        release, _, patch = cluster.version.partition("-")
        return dump_json(
            {
                "kind": "UpgradeInfo",
                "apiVersion": "v3",
                "metadata": {},
                "spec": {
                    "lastUpgradeInfo": {
                        "phase": "Success",
                        "progress": "100",
                        "completionTime": go_time(cluster.created),
                    },
                    "versionInfo": {
                        "release": release,
                        "patch": patch,
                        "suggestPatch": patch,
                        "targetVersions": targets,
                    },
                    "upgradeFeatureGates": {},
                },
                "status": {"phase": "Success", "progress": "100"},
            }
        )

    def cluster_bytes(self, uid: str, *, detail: bool, error_status: bool) -> bytes:
        cluster = self.cluster(uid)

        def build(h: Horizon) -> object:
            return cluster.render(h.now, h, detail=detail, error_status=error_status)

        return self._cached(("cluster", uid, detail, error_status), build)

    def probe_json(self, now: int) -> bytes:
        """The shared ``lastProbeTime`` of nodes whose status is current, as JSON."""
        return dump_json(go_time(now - now % PROBE_STEP))

    def node_list_bytes(
        self, cluster_uid: str, *, limit: int | None = None, marker: str | None = None
    ) -> bytes:
        """A page of the node list: at most ``limit`` nodes (the server's maximum,
        :attr:`node_page_max`, when absent or larger) after the node ``marker``, with
        ``pageInfo.nextMarker`` when more follow (SDK ``ListNodesRequest``/``NodePageInfo``)."""
        cluster = self.cluster(cluster_uid)
        page = min(limit or self.node_page_max, self.node_page_max)

        def build(horizon: Horizon) -> bytes:
            now = horizon.now
            parts, until = self._node_parts(cluster)
            horizon.note(until)
            horizon.note(now - now % PROBE_STEP + PROBE_STEP)
            start = 0
            if marker:
                uids = [uid for uid, _ in parts]
                if marker not in uids:
                    raise SimError(
                        400, "CCE.01400001", "the marker names no node of the cluster", camel=True
                    )
                start = uids.index(marker) + 1
            chosen = parts[start : start + page]
            info: dict[str, Any] = {"currentCount": len(chosen)}
            if start + page < len(parts) and chosen:
                info["nextMarker"] = chosen[-1][0]
            body = b",".join(p for _, p in chosen).replace(_PROBE_MARK_JSON, self.probe_json(now))
            return (
                b'{"kind":"Node","apiVersion":"v3","items":['
                + body
                + b'],"pageInfo":'
                + dump_json(info)
                + b"}"
            )

        return self._cached_bytes(("nodes", cluster_uid, page, marker), build)

    def _node_parts(self, cluster: Cluster) -> tuple[list[tuple[str, bytes]], int | None]:
        """(uid, JSON) of each node present, and until when that holds.

        Each node's JSON is kept until its own segment changes: when one node of a cluster moves
        on, the list is joined again, not rendered again (the benchmark asks for 500 lists of
        200 nodes a cycle, and must measure the exporter, not this simulator).
        """
        now = self.now_ns()
        entry = self._parts_cache.get(cluster.uid)
        if entry is not None:
            version, until, kept = entry
            if version == self.version and (until is None or now < until):
                return kept, until
        horizon = Horizon(now)
        parts: list[tuple[str, bytes]] = []
        for node in cluster.nodes.values():
            seg, nxt = node.timeline.state(now)
            horizon.note(nxt)
            if seg.phase is None:
                continue
            cached = self._node_json.get(node.uid)
            if cached is None or cached[0] != self.version or cached[1] is not seg:
                cached = (self.version, seg, dump_json(node.render(now, Horizon(now))))
                self._node_json[node.uid] = cached
            parts.append((node.uid, cached[2]))
        self._parts_cache[cluster.uid] = (self.version, horizon.until, parts)
        return parts, horizon.until

    def node_bytes(self, cluster_uid: str, node_uid: str) -> bytes:
        cluster = self.cluster(cluster_uid)
        node = cluster.nodes.get(node_uid)
        now = self.now_ns()
        rendered = node.render(now, Horizon(now)) if node else None
        if rendered is None:
            raise SimError(404, "CCE.01404002", f"node {node_uid} not found")
        return dump_json(rendered).replace(_PROBE_MARK_JSON, self.probe_json(now))

    def nodepool_list_bytes(self, cluster_uid: str, *, show_default: bool) -> bytes:
        cluster = self.cluster(cluster_uid)

        def build(h: Horizon) -> object:
            counts = cluster.pool_counts(h.now, h)
            states = cluster.pool_states(h.now, h)
            items = [
                p.render(counts[p.uid], states.get(p.uid))
                for p in cluster.pools.values()
                if show_default or not p.default
            ]
            return {"kind": "List", "apiVersion": "v3", "items": items}

        return self._cached(("nodepools", cluster_uid, show_default), build)

    def nodepool_bytes(self, cluster_uid: str, pool_uid: str) -> bytes:
        cluster = self.cluster(cluster_uid)
        pool = cluster.pools.get(pool_uid)
        if pool is None:
            raise SimError(404, "CCE.01404003", f"node pool {pool_uid} not found")
        counts = cluster.pool_counts(self.now_ns(), Horizon(self.now_ns()))
        states = cluster.pool_states(self.now_ns(), Horizon(self.now_ns()))
        return dump_json(pool.render(counts[pool.uid], states.get(pool.uid)))

    def job_bytes(self, job_uid: str) -> bytes:
        job = self.jobs.get(job_uid)
        if job is None:
            raise SimError(404, "CCE.01404004", f"job {job_uid} not found")
        now = self.now_ns()
        return dump_json(job.render(now, Horizon(now)))

    def quotas_bytes(self) -> bytes:
        now = self.now_ns()
        horizon = Horizon(now)
        visible = [c for c in self.clusters.values() if c.segment(now).phase is not None]
        n = len(visible)
        pools = sum(1 for c in visible for p in c.pools.values() if not p.default)
        per_az: Counter[str] = Counter()
        for cluster in visible:
            for node in cluster.nodes.values():
                if node.timeline.state(now)[0].phase is not None:
                    per_az[node.az] += 1
        quotas: list[dict[str, Any]] = [
            # Near its limit (18/20 for 18 clusters) ...
            {"quotaKey": "cluster", "quotaLimit": max(20, n + 2), "used": n, "unit": "count"},
            # ... and one at its limit.
            {
                "quotaKey": "nodepool",
                "quotaLimit": pools,
                "used": pools,
                "unit": "count",
                "regionId": self.region,
            },
        ]
        for az in AZS:
            used = per_az[az]
            quotas.append(
                {
                    "quotaKey": "node",
                    "quotaLimit": max(500, 2 * used),
                    "used": used,
                    "unit": "count",
                    "regionId": self.region,
                    "availabilityZoneId": az,
                }
            )
        del horizon
        return dump_json({"quotas": quotas})

    def addon_list_bytes(self, cluster_uid: str) -> bytes:
        cluster = self._addon_cluster(cluster_uid)

        def build(h: Horizon) -> object:
            return {
                "apiVersion": "v3",
                "kind": "Addon",
                "items": [a.render() for a in cluster.addons.values()],
            }

        return self._cached(("addons", cluster_uid), build)

    def addon_bytes(self, addon_uid: str, cluster_uid: str | None) -> bytes:
        if cluster_uid:
            clusters = [self._addon_cluster(cluster_uid)]
        else:
            clusters = list(self.clusters.values())
        for cluster in clusters:
            addon = cluster.addons.get(addon_uid)
            if addon is not None:
                return dump_json(addon.render())
        raise SimError(404, "SVCSTG.CCE-ADDONMGR.4040204", "Addon instance not exist", addon=True)

    def _addon_cluster(self, cluster_uid: str) -> Cluster:
        try:
            return self.cluster(cluster_uid)
        except SimError:
            raise SimError(
                404, "SVCSTG.CCE-ADDONMGR.4040001", "cluster not exist", addon=True
            ) from None

    def addontemplates_bytes(self, name: str | None = None) -> bytes:
        items = []
        for t in ADDON_TEMPLATES:
            if name and t.name != name:
                continue
            items.append(
                {
                    "metadata": {
                        "uid": t.name,
                        "name": t.name,
                        "creationTimestamp": "2024-01-15T08:00:00Z",
                        "updateTimestamp": "2024-03-01T09:30:00Z",
                    },
                    "apiVersion": "v3",
                    "kind": "Addon",
                    "spec": {
                        "type": t.type,
                        "labels": list(t.labels),
                        "logoURL": "",
                        "readmeURL": "",
                        "description": t.description,
                        "versions": [
                            {
                                "version": version,
                                "input": {"basic": {}, "parameters": {}},
                                "stable": True,
                                "translate": {},
                                "supportVersions": [
                                    {"clusterType": kind, "clusterVersion": ["v1.*"]}
                                    for kind in ("VirtualMachine", "ARM64")
                                ],
                                "creationTimestamp": "2024-01-15T08:00:00Z",
                                "updateTimestamp": "2024-03-01T09:30:00Z",
                            }
                            for version in (older_version(t.version), t.version)
                        ],
                    },
                }
            )
        return dump_json({"apiVersion": "v3", "kind": "Addon", "items": items})

    # --- state summary ------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        now = self.now_ns()
        cluster_phases: Counter[str] = Counter()
        node_phases: Counter[str] = Counter()
        pool_phases: Counter[str] = Counter()
        addon_statuses: Counter[str] = Counter()
        job_phases: Counter[str] = Counter()
        nodes = 0
        for cluster in self.clusters.values():
            phase = cluster.segment(now).phase
            if phase is None:
                continue
            cluster_phases[phase] += 1
            for node in cluster.nodes.values():
                node_phase = node.timeline.state(now)[0].phase
                if node_phase is not None:
                    nodes += 1
                    node_phases[node_phase] += 1
            for pool in cluster.pools.values():
                pool_phases[pool.phase or "Normal"] += 1
            for addon in cluster.addons.values():
                addon_statuses[addon.status] += 1
        for job in self.jobs.values():
            job_phases[job.phase(now)] += 1
        return {
            "clusters": sum(cluster_phases.values()),
            "nodes": nodes,
            "cluster_phases": dict(cluster_phases),
            "node_phases": dict(node_phases),
            "nodepool_phases": dict(pool_phases),
            "addon_statuses": dict(addon_statuses),
            "job_phases": dict(job_phases),
            "wakeup_failures": self.wakeup_failures,
            "version": self.version,
        }
