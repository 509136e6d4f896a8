"""The metric layer: per-resource tables of metric families, the renderer and generated docs.

No I/O and no API client here: the collector hands in :class:`TargetData` snapshots built from
:mod:`exporter.cce.models`, and gets back pre-rendered exposition bytes.

* :mod:`~exporter.metrics.inputs` -- ``TargetData``, ``TrackedJob``, ``ResourceHealth``;
* :mod:`~exporter.metrics.spec` -- the row types (``Gauge``, ``Info``, ``StateSet``, ``Samples``);
* ``clusters``, ``nodes``, ``nodepools``, ``addons``, ``jobs``, ``quotas``, ``selfmetrics`` -- the
  tables, one module per resource;
* :mod:`~exporter.metrics.catalog` -- ``GROUPS``, ``ALL_FAMILIES`` (tables + external families);
* :mod:`~exporter.metrics.render` -- ``render_group``, ``assemble``, ``Fragment``, ``Exposition``;
* :mod:`~exporter.metrics.histogram` -- ``JobDurationHistogram``;
* :mod:`~exporter.metrics.docs` -- ``python -m exporter.metrics.docs``.
"""

from exporter.metrics.catalog import ALL_FAMILIES, GROUPS, RESERVED_LABELS, FamilyDoc
from exporter.metrics.histogram import JobDurationHistogram
from exporter.metrics.inputs import ResourceHealth, TargetData, TrackedJob
from exporter.metrics.render import (
    CONTENT_TYPE_OPENMETRICS,
    CONTENT_TYPE_TEXT,
    Exposition,
    Fragment,
    assemble,
    render_group,
)

__all__ = [
    "ALL_FAMILIES",
    "CONTENT_TYPE_OPENMETRICS",
    "CONTENT_TYPE_TEXT",
    "GROUPS",
    "RESERVED_LABELS",
    "Exposition",
    "FamilyDoc",
    "Fragment",
    "JobDurationHistogram",
    "ResourceHealth",
    "TargetData",
    "TrackedJob",
    "assemble",
    "render_group",
]
