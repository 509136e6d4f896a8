"""The status console: ``GET /`` (HTML), ``GET /cluster`` (one cluster) and ``GET /status.json``.

:mod:`exporter.status.model` builds a view model from the collector's last good data and the
hibernation controller (the only module that reads them); :mod:`exporter.status.html` renders it,
escaping every value; :mod:`exporter.status.routes` serves both. The JSON schema is documented in
``docs/status.md``.
"""

from exporter.status.model import (
    ClusterDetail,
    StatusModel,
    build_cluster_detail,
    build_status,
    to_json,
)

__all__ = ["ClusterDetail", "StatusModel", "build_cluster_detail", "build_status", "to_json"]
