"""Readiness at its edges: the exact reasons ``/readyz`` gives, and where staleness begins."""

from __future__ import annotations

import pytest

from exporter.simulator import Simulator
from tests.test_e2e_exporter import control, running_exporter, sim_env


@pytest.mark.simulator(clusters=2, nodes_per_cluster=1)
async def test_stale_from_just_past_three_intervals(simulator: Simulator) -> None:
    async with running_exporter(sim_env(simulator)) as exporter:
        assert all((await exporter.collect_all()).values())
        service = exporter.service
        interval = service.interval(service.targets[0], "jobs")
        exporter.clock.advance(3 * interval)  # exactly three intervals: still fresh
        assert service.readiness() == (True, [])
        exporter.clock.advance(1)
        ready, reasons = service.readiness()
        assert not ready
        assert f"target default: jobs data is {3 * interval + 1:.0f}s old " in reasons[0]
        assert reasons[0].endswith(f"(more than 3 intervals of {interval:g}s)")


@pytest.mark.simulator(clusters=2, nodes_per_cluster=1)
async def test_a_resource_that_never_ran_says_why(simulator: Simulator) -> None:
    async with running_exporter(sim_env(simulator)) as exporter:
        await control(
            simulator,
            "POST",
            "/_sim/faults",
            {"kind": "http_500", "rate": 1.0, "path": "/clusters$"},
        )
        results = await exporter.collect_all()
        assert results["default/clusters"] is False and results["default/nodes"] is False
        ready, reasons = exporter.service.readiness()
        assert not ready
        by_resource = {r.split(":")[1].split()[0]: r for r in reasons}
        # The cluster listing failed with the API's error; the nodes could not even start.
        assert by_resource["clusters"].startswith("target default: clusters has never succeeded (")
        assert "HTTP 500" in by_resource["clusters"]
        assert by_resource["nodes"] == (
            "target default: nodes has never succeeded (the cluster list is not available yet)"
        )
        # A failed collection that left no error text says so in one word.
        exporter.service.targets[0].collector.health["clusters"].error = None
        assert exporter.service.readiness()[1][0] == (
            "target default: clusters has never succeeded (failed)"
        )


@pytest.mark.simulator(clusters=1, nodes_per_cluster=1)
async def test_no_target_is_never_ready(simulator: Simulator) -> None:
    async with running_exporter(sim_env(simulator)) as exporter:
        targets, exporter.service.targets = exporter.service.targets, []
        try:
            assert exporter.service.readiness() == (False, ["no target is configured"])
        finally:
            exporter.service.targets = targets  # closed with the service
