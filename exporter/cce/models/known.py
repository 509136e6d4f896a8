"""The values the API's enumerations are known to take, and the cluster flavors' node limits.

Phases and statuses stay raw strings in the models: the metric layer maps values it does not
know to ``unknown``. The known values live here, in one place.
"""

from __future__ import annotations

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
