"""The status console: ``GET /`` (HTML), ``GET /cluster`` (one cluster) and ``GET /status.json``.

:mod:`exporter.status.model` builds a view model from the collector's last good data and the
hibernation controller (the only module that reads them, with :mod:`~exporter.status.problems`
for a target's problems and :mod:`~exporter.status.hibernation` for the controller's rows);
:mod:`exporter.status.view` defines the model; :mod:`exporter.status.html` and
:mod:`exporter.status.cluster_page` render it, escaping every value; :mod:`exporter.status.routes`
serves both. The JSON schema is documented in ``docs/status.md``.
"""

from exporter.status.model import (
    ClusterDetail,
    StatusModel,
    build_cluster_detail,
    build_status,
    to_json,
)

__all__ = ["ClusterDetail", "StatusModel", "build_cluster_detail", "build_status", "to_json"]
