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


async def test_short_soak_survives_the_hostile_api_kinds() -> None:
    kinds = ("drip", "gzip_bomb", "oversized_labels", "cluster_failing")
    report = await soak(
        30, clusters=6, nodes_per_cluster=6, interval=2.0, seed=5, hostile=kinds, attack=4.0
    )
    summary = report.text()
    assert [e.kind for e in report.episodes] == list(kinds), summary
    for episode in report.episodes:
        assert episode.survived, summary
        assert episode.recovered, summary
    assert report.failed_scrapes == 0 and report.partial_scrapes == 0, summary
    assert report.crashes == 0, summary
    assert "label values cut" in report.episodes[2].note, summary
    assert not report.episodes[2].note.endswith(", 0 label values cut"), summary
    assert report.passed, summary
