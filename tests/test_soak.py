"""The short fault soak (``make soak`` runs the long one): real simulator process, real faults.

About 25 seconds: 10% of requests faulted, tokens expired, the simulator restarted twice, clusters
and nodes churning, a client scraping all along. No scrape may fail or see a partial state, nothing
may crash, and every resource must succeed again within two intervals of the faults stopping.
"""

from __future__ import annotations

from bench.soak import soak


async def test_short_soak_survives_every_fault_kind() -> None:
    report = await soak(25, clusters=8, nodes_per_cluster=8, interval=2.0, seed=11)
    summary = report.text()
    assert report.scrapes > 50, summary
    assert report.failed_scrapes == 0, summary
    assert report.partial_scrapes == 0, summary
    assert report.crashes == 0, summary
    assert report.recovered, summary
    assert report.simulator_restarts == 2, summary
    assert report.token_expiries >= 2, summary
    assert sum(report.faults_by_kind.values()) > 10, summary
    assert report.cycles >= 5, summary
    assert report.churn_actions, summary
    assert report.passed
