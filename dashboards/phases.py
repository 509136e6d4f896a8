"""The phases, statuses and reasons the dashboards show, and their colours.

The values are the models' (``exporter.cce.models``), with the state sets' ``unknown`` appended as
the exporter exports them; this module only gives each a colour by what it means.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from exporter.cce import models
from exporter.metrics.spec import UNKNOWN

#: Colour of a phase, status or reason by what it means; a value not listed is a transition
#: (blue). The values themselves come from the models; tests/test_known_values.py checks
#: that every name here is one the exporter knows.
COLOURS: dict[str, tuple[str, ...]] = {
    "green": (
        "Available",
        "Active",
        "Normal",
        "Synchronized",
        "running",
        "available",
        "Success",
        "CertificateValid",
        "RotationSucceeded",
    ),
    "red": (
        "Unavailable",
        "RollbackFailed",
        "Error",
        "Abnormal",
        "RepairFailed",
        "Failed",
        "abnormal",
        "unavailable",
        "installFailed",
        "upgradeFailed",
        "deleteFailed",
        "rollbackFailed",
        "CertificateExpired",
        "RotationFailed",
    ),
    "orange": (
        "Deleting",
        "RollingBack",
        "Repairing",
        "SoldOut",
        "rollbacking",
        "deleting",
        "CertificateExpiringWithin30Days",
    ),
    "yellow": ("CertificateExpiringWithin180Days",),
    "purple": ("Hibernating", "Awaking"),
    "dark-purple": ("Hibernation",),
    "text": ("Empty", "ShutDown", "deleteSuccess", UNKNOWN),
}
_COLOUR_OF = {name: colour for colour, names in COLOURS.items() for name in names}
TRANSITION = "blue"


def coloured(names: Iterable[str]) -> dict[str, str]:
    """Each name with its colour, in the given order."""
    return {name: _COLOUR_OF.get(name, TRANSITION) for name in names}


def state_set(values: Sequence[str]) -> dict[str, str]:
    """A state set's values as exported (the known ones, then ``unknown``), coloured."""
    return coloured((*values, UNKNOWN))


# Phases and statuses as the exporter exports them (the models' values, then "unknown"); the
# order is the code phase_code() gives them.
CLUSTER_PHASES = state_set(models.CLUSTER_PHASES)
NODE_PHASES = state_set(models.NODE_PHASES)
NODEPOOL_PHASES = state_set(models.NODEPOOL_PHASES)
ADDON_STATUSES = state_set(models.ADDON_STATUSES)
JOB_PHASES = state_set(models.JOB_PHASES)
#: Certificate stages and rotation outcomes (the SDK's ClusterCondition reasons), as coloured cells.
CERTIFICATE_REASONS = coloured(models.CLUSTER_CONDITION_REASONS)
#: The codes hibernation_actual() gives (0, 1, 2): the dashboards' own, not phases.
HIBERNATION_STATES = {"Awake": "green", "Transition": "purple", "Hibernated": "dark-purple"}
