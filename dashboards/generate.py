"""Render the CCE Grafana dashboards (dashboards/*.json) from Python, with grafana-foundation-sdk.

Usage::

    python -m dashboards.generate            # rewrite dashboards/*.json
    python -m dashboards.generate --check    # exit 1 when a committed dashboard drifted
    python -m dashboards.generate --output DIR

Every panel and query uses the ``${datasource}`` variable (no data source UID is hard-coded), so the
files import as they are and work with Grafana's file provisioning
(dashboards/provisioning/dashboards.yaml). Dashboards link to each other through the ``cce`` tag.
One module per dashboard (overview, cluster, hibernation, exporter_health, workloads) lays out
its panels from dashboards/kit.py's panel shapes on dashboards/board.py's dashboard; the phases
and statuses they show are the models' (exporter/cce/models/known.py) with
dashboards/phases.py's colours, never a list of the dashboards' own.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards.board import Board
from dashboards.cluster import cluster
from dashboards.exporter_health import exporter
from dashboards.hibernation import hibernation
from dashboards.overview import overview
from dashboards.workloads import workloads
from exporter.generated import write_or_check

OUT_DIR = Path(__file__).resolve().parent

DASHBOARDS: dict[str, Callable[[], Board]] = {
    "cce-overview.json": overview,
    "cce-cluster.json": cluster,
    "cce-hibernation.json": hibernation,
    "cce-exporter.json": exporter,
    "cce-workloads.json": workloads,
}


def render(build: Callable[[], Board]) -> str:
    return json.dumps(build().build(), cls=JSONEncoder, indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.generate", description=__doc__)
    parser.add_argument("--output", type=Path, default=OUT_DIR, help="directory to write to")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    outputs = [(args.output / name, render(build)) for name, build in DASHBOARDS.items()]
    return write_or_check(outputs, check=args.check, command="python -m dashboards.generate")


if __name__ == "__main__":
    sys.exit(main())
