"""Partial failure is not total failure: one broken cluster never blinds the target.

A cluster whose node listing answers 500 for good (a cluster in error often does) is shown as
failing by ``cce_exporter_cluster_collect_success``; the resource itself succeeds, the other
clusters' data is there, and ``/readyz`` is ready. Staleness still makes it unready.
"""

from __future__ import annotations

import pytest

from exporter.simulator import Simulator
from exporter.status.model import build_status
from tests.test_e2e_exporter import control, running_exporter, sim_env


@pytest.mark.simulator(clusters=6, nodes_per_cluster=2, seed=11)
async def test_one_cluster_failing_for_good_is_shown_per_cluster_not_target_wide(
    simulator: Simulator,
) -> None:
    async with running_exporter(sim_env(simulator)) as exporter:
        await exporter.collect("clusters")
        clusters = exporter.service.targets[0].collector.governed_clusters()
        listed = [c for c in clusters if c.phase not in ("Hibernation", "Creating")]
        broken = listed[0]
        assert broken.id is not None
        await control(
            simulator,
            "POST",
            "/_sim/faults",
            {"kind": "http_500", "rate": 1.0, "path": f"/clusters/{broken.id}/(nodes|nodepools)$"},
        )
        results = await exporter.collect_all()
        assert results["default/nodes"] and results["default/nodepools"], results

        scrape = await exporter.scrape()
        pid = exporter.project_id
        assert scrape.value("cce_exporter_collect_success", project_id=pid, resource="nodes") == 1
        for resource in ("nodes", "nodepools"):
            per_cluster = {
                dict(labels)["cluster_id"]: value
                for (name, labels), value in scrape.family(
                    "cce_exporter_cluster_collect_success"
                ).items()
                if dict(labels)["resource"] == resource
            }
            assert per_cluster[broken.id] == 0, resource
            others = {cid: v for cid, v in per_cluster.items() if cid != broken.id}
            assert others and set(others.values()) == {1.0}, per_cluster
        # The broken cluster's name is a label of its series.
        assert (
            scrape.value(
                "cce_exporter_cluster_collect_success",
                cluster_id=broken.id,
                cluster=broken.name or "",
                resource="nodes",
            )
            == 0
        )
        # The other clusters' nodes are all there.
        shown = scrape.label_values("cce_node_info", "cluster_id")
        assert shown >= {c.id for c in listed[1:] if c.id}
        # Errors are counted and the status says which part failed.
        status = build_status(exporter.service)
        nodes = next(c for c in status.collections if c.resource == "nodes")
        assert nodes.success is True and nodes.error == f"1 of {len(clusters)} clusters failed"

        response = await exporter.http.get("/readyz")
        assert (response.status_code, response.text) == (200, "ready\n")

        # Stale data still makes the exporter unready: three intervals without a pass.
        interval = exporter.service.interval(exporter.service.targets[0], "nodes")
        exporter.clock.advance(3 * interval + 1)
        response = await exporter.http.get("/readyz")
        assert response.status_code == 503 and "nodes data is" in response.text


@pytest.mark.simulator(clusters=3, nodes_per_cluster=1, seed=2)
async def test_a_resource_fails_when_every_cluster_fails(simulator: Simulator) -> None:
    async with running_exporter(sim_env(simulator)) as exporter:
        await control(
            simulator, "POST", "/_sim/faults", {"kind": "http_500", "rate": 1.0, "path": "/nodes$"}
        )
        results = await exporter.collect_all()
        assert results["default/clusters"] and not results["default/nodes"]
        response = await exporter.http.get("/readyz")
        assert response.status_code == 503 and "nodes has never succeeded" in response.text


@pytest.mark.simulator(clusters=5, nodes_per_cluster=1, seed=3)
async def test_slow_upgrade_checks_fail_per_cluster_and_a_failed_pass_is_retried_soon(
    simulator: Simulator,
) -> None:
    async with running_exporter(sim_env(simulator)) as exporter:
        assert await exporter.collect("clusters")
        collector = exporter.service.targets[0].collector
        asked = [c for c in collector.governed_clusters() if c.phase == "Available"]
        broken = asked[0].id
        await control(
            simulator,
            "POST",
            "/_sim/faults",
            {"kind": "http_500", "rate": 1.0, "path": f"/clusters/{broken}/upgradeinfo$"},
        )
        # One cluster failing: the check succeeds, the cluster is shown failing.
        assert await exporter.collect("cluster_upgrades")
        scrape = await exporter.scrape()
        assert (
            scrape.value(
                "cce_exporter_cluster_collect_success",
                resource="cluster_upgrades",
                cluster_id=broken or "",
            )
            == 0
        )
        # Every cluster failing: the check fails, and is asked again at the clusters' pace
        # rather than an hour later.
        await control(simulator, "DELETE", "/_sim/faults")
        await control(
            simulator,
            "POST",
            "/_sim/faults",
            {"kind": "http_503", "rate": 1.0, "path": "/upgradeinfo$"},
        )
        exporter.clock.advance(3600)
        assert not await exporter.collect("cluster_upgrades")
        await control(simulator, "DELETE", "/_sim/faults")
        exporter.clock.advance(30)
        assert await exporter.collect("cluster_upgrades")
        assert collector.health["cluster_upgrades"].last_success == exporter.clock.now
