"""Time in phase of node pools is kept per cluster: default pool IDs repeat across clusters."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from exporter.cce.models import Cluster, NodePool
from exporter.collect.target import TargetCollector
from exporter.collect.tracking import JobTracker
from exporter.metrics.render import assemble, render_group

#: What CCE names a cluster's default node pool: the same in every cluster with that template.
DEFAULT_POOL = "cn-north-4a#s3.large.2#EulerOS 2.9"


class Stats:
    def error(self, project_id: str, resource: str, error: str) -> None:
        pass

    def job_dropped(self, project_id: str, reason: str) -> None:
        pass

    def job_finished(self, job: Any) -> None:
        pass


class TwoClusters:
    """Two clusters, each with a default pool of the same ID; pool phases set by the test."""

    def __init__(self) -> None:
        self.phases = {"c1": "", "c2": ""}

    async def list_clusters(self) -> list[Cluster]:
        return [
            Cluster.model_validate(
                {
                    "metadata": {"uid": cid, "name": f"cluster-{cid}"},
                    "status": {"phase": "Available"},
                }
            )
            for cid in ("c1", "c2")
        ]

    async def list_nodepools(
        self, cluster_id: str, show_default: bool = True, memo: Any = None
    ) -> list[NodePool]:
        return [
            NodePool.model_validate(
                {
                    "metadata": {"uid": DEFAULT_POOL, "name": DEFAULT_POOL},
                    "status": {"phase": self.phases[cluster_id]},
                }
            )
        ]


def since_by_cluster(collector: TargetCollector) -> dict[str, float]:
    fragment = render_group("nodepools", [collector.snapshot()], now=1000.0, state_sets="all")
    text = assemble([fragment], []).text.decode()
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "cce_nodepool_status_phase_since_timestamp_seconds":
            for sample in family.samples:
                out[sample.labels["cluster_id"]] = sample.value
    return out


async def test_two_clusters_with_the_same_default_pool_id_keep_their_own_phase_since() -> None:
    api = TwoClusters()
    now = [100.0]
    collector = TargetCollector(
        name="t",
        project_id="p",
        labels={},
        client=api,  # type: ignore[arg-type]
        stats=Stats(),
        jobs=JobTracker(3600),
        clock=lambda: now[0],
    )
    assert await collector.collect_clusters()
    assert await collector.collect_nodepools()
    assert since_by_cluster(collector) == {"c1": 100.0, "c2": 100.0}

    # Only the second cluster's default pool changes phase, later.
    now[0] = 200.0
    api.phases["c2"] = "Error"
    assert await collector.collect_nodepools()
    assert since_by_cluster(collector) == {"c1": 100.0, "c2": 200.0}

    # And back: the first cluster's pool still counts from its own first sight.
    now[0] = 300.0
    api.phases["c2"] = ""
    assert await collector.collect_nodepools()
    assert since_by_cluster(collector) == {"c1": 100.0, "c2": 300.0}
