"""What the simulated world is made of: the phases, statuses, reasons, flavors and add-on
templates it covers (the metric contract's known values), and the tables its generation reads."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.cce.models import (
    ADDON_STATUSES,
    CLUSTER_PHASES,
    NODE_PHASES,
    NODEPOOL_PHASES,
    flavor_max_nodes,
)
from exporter.simulator.clock import NS

MINUTE = 60 * NS
HOUR = 60 * MINUTE
DAY = 24 * HOUR

# --- enumerations the world covers (the metric contract's known values) ------------------------

#: The phases a small world shows first (a world of ``n`` clusters holds ``n // 2`` special ones);
#: the rest of the models' known phases follow in their own order.
_CLUSTER_PHASES_FIRST: tuple[str, ...] = (
    "Hibernation",
    "Unavailable",
    "Creating",
    "Error",
    "Upgrading",
    "Deleting",
    "Hibernating",
    "Awaking",
)
_NODEPOOL_PHASES_FIRST: tuple[str, ...] = ("SoldOut", "Error")


def _specials(known: tuple[str, ...], normal: str, first: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The models' known values but the normal one, ``first`` leading."""
    assert set(first) <= set(known) and normal not in first, (first, known)
    return first + tuple(v for v in known if v != normal and v not in first)


#: Every known phase (status) but the normal one, in the order the world hands them out.
CLUSTER_SPECIAL_PHASES: tuple[str, ...] = _specials(
    CLUSTER_PHASES, "Available", _CLUSTER_PHASES_FIRST
)
NODE_SPECIAL_PHASES: tuple[str, ...] = _specials(NODE_PHASES, "Active")
NODEPOOL_SPECIAL_PHASES: tuple[str, ...] = _specials(
    NODEPOOL_PHASES, "Normal", _NODEPOOL_PHASES_FIRST
)
ADDON_SPECIAL_STATUSES: tuple[str, ...] = _specials(ADDON_STATUSES, "running")
#: The largest node page the API serves (SDK ``ListNodesRequest.limit``: 1 to 2000, default 2000).
NODE_PAGE_MAX = 2000
#: Nodes report a probe at most this old (the SDK: a status older than 5 minutes means nothing).
PROBE_STEP = 5 * 60 * 10**9
#: Stands in each cached node JSON for the shared probe time, substituted when a list is served.
_PROBE_MARK = "\x00probe"
_PROBE_MARK_JSON = b'"\\u0000probe"'

#: The flavors the world's clusters take (reference 12.2, with the dedicated-cloud variant), each
#: with the node limit the models know for it, which decides which flavors fit.
CLUSTER_FLAVORS: tuple[tuple[str, int], ...] = tuple(
    (flavor, flavor_max_nodes(flavor) or 0)
    for flavor in (
        "cce.s1.small",
        "cce.s1.medium",
        "cce.s1.large",
        "cce.s2.small",
        "cce.s2.medium",
        "cce.s2.large",
        "cce.s2.xlarge",
        "cce.dec.s1.small",
    )
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


def older_version(version: str) -> str:
    """The version before ``version`` in the add-on templates (its last number one lower)."""
    head, _, last = version.rpartition(".")
    if not last.isdigit() or int(last) == 0:
        return version
    return f"{head}.{int(last) - 1}"


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
