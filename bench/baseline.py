"""The baseline a typical Python exporter has: ``python -m bench.baseline EXPOSITION_FILE``.

Loads the exporter's text exposition into a ``prometheus_client`` registry (one custom collector
yielding the same families and series) and serves it with ``prometheus_client.start_http_server``
on a free loopback port, so that every scrape runs ``generate_latest`` over the whole registry,
as an exporter built on ``prometheus_client`` does. Prints ``{"port": N, "series": M}`` then
serves until stdin closes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector


class Frozen(Collector):
    """A collector that yields the same parsed families on every scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    families = list(text_string_to_metric_families(text))
    del text
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Frozen(families))
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    series = sum(len(fam.samples) for fam in families)
    print(json.dumps({"port": server.server_port, "series": series}), flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
