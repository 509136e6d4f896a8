"""End to end: the simulator and the exporter over loopback HTTP.

The exporter runs in process (``ExporterService`` behind the real web server on a free port) so that
tests can drive collections directly and move its clock; the simulator is the in-process one from
``conftest.py``, steered through its control API. Every check compares the scraped exposition with
what the simulator says its world holds, never with hard-coded values.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as om_families,
)
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import build_web_app
from exporter.assemble import TargetBuilder
from exporter.cce.models import (
    ADDON_STATUSES,
    CLUSTER_PHASES,
    JOB_PHASES,
    NODE_PHASES,
    NODEPOOL_PHASES,
)
from exporter.collect.service import ExporterService
from exporter.collect.target import RESOURCES
from exporter.config import load_settings
from exporter.simulator import Simulator, SimulatorConfig, running_simulator
from exporter.web import Server

DEADLINE = 20.0

#: Family -> (state label, the contract's known values). "unknown" completes every set.
STATE_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cce_cluster_status_phase": ("phase", tuple(CLUSTER_PHASES)),
    "cce_node_status_phase": ("phase", tuple(NODE_PHASES)),
    "cce_nodepool_status_phase": ("phase", tuple(NODEPOOL_PHASES)),
    "cce_addon_status": ("status", tuple(ADDON_STATUSES)),
    "cce_job_status_phase": ("phase", tuple(JOB_PHASES)),
}


class FakeClock:
    """The exporter's injectable clock: real time at the start, then moved by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Sample = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class Scrape:
    """A parsed exposition: family name -> {sample key -> value}."""

    text: str
    families: dict[str, dict[Sample, float]]
    types: dict[str, str]

    def family(self, name: str) -> dict[Sample, float]:
        """The samples of family ``name`` (a counter may be named with its ``_total``)."""
        if name not in self.families and name.endswith("_total"):
            return self.families.get(name.removesuffix("_total"), {})
        return self.families.get(name, {})

    def values(self, name: str, **labels: str) -> list[float]:
        """Values of the samples of family ``name`` (the family's own sample name) matching."""
        out = []
        for (sample, lbls), value in self.family(name).items():
            d = dict(lbls)
            if sample == name and all(d.get(k) == v for k, v in labels.items()):
                out.append(value)
        return out

    def value(self, name: str, **labels: str) -> float:
        found = self.values(name, **labels)
        assert len(found) == 1, f"{name} {labels}: {len(found)} samples"
        return found[0]

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(lbls)[label] for (_, lbls) in self.family(name) if label in dict(lbls)}

    def label_values_for(self, name: str, label: str, **labels: str) -> set[str]:
        out = set()
        for (sample, lbls), _ in self.family(name).items():
            d = dict(lbls)
            if sample == name and all(d.get(k) == v for k, v in labels.items()):
                out.add(d[label])
        return out

    def series(self) -> set[Sample]:
        return {key for fam in self.families.values() for key in fam}


def parse(text: str, *, openmetrics: bool = False) -> Scrape:
    families: dict[str, dict[Sample, float]] = {}
    types: dict[str, str] = {}
    parser = om_families if openmetrics else text_string_to_metric_families
    for fam in parser(text):
        types[fam.name] = fam.type
        samples = families.setdefault(fam.name, {})
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return Scrape(text, families, types)


@dataclass
class Exporter:
    service: ExporterService
    server: Server
    http: httpx.AsyncClient
    clock: FakeClock

    @property
    def url(self) -> str:
        return self.server.url

    async def scrape(self, **headers: str) -> Scrape:
        response = await self.http.get("/metrics", headers=headers)
        assert response.status_code == 200, response.text
        return parse(response.text)

    async def collect_all(self) -> dict[str, bool]:
        return await self.service.collect_all()

    async def collect(self, resource: str, target: int = 0) -> bool:
        return await self.service.collect(self.service.targets[target], resource)

    @property
    def project_id(self) -> str:
        return self.service.targets[0].collector.project_id


def sim_env(sim: Simulator, **overrides: str) -> dict[str, str]:
    env = dict(sim.settings)
    env.update(
        {
            "CCE_EXPORTER_LISTEN": "127.0.0.1:0",
            # Injected faults should show at once, not after backed-off retries.
            "CCE_EXPORTER_MAX_RETRIES": "0",
            "CCE_EXPORTER_TIMEOUT": "5s",
        }
    )
    env.update(overrides)
    return env


@contextlib.asynccontextmanager
async def running_exporter(
    env: Mapping[str, str],
    *,
    config_file: Path | None = None,
    clock: FakeClock | None = None,
    start_scheduler: bool = False,
) -> AsyncIterator[Exporter]:
    settings = load_settings(config_file, env)
    clock = clock or FakeClock()
    service = ExporterService(settings, build_targets=TargetBuilder(), clock=clock)
    await service.setup()
    if start_scheduler:
        service.start_scheduler()
    app = build_web_app(service)
    server = Server(app, settings.listen)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as http:
            yield Exporter(service, server, http, clock)
    finally:
        await server.stop()


async def control(sim: Simulator, method: str, path: str, body: Any = None) -> Any:
    """Call the simulator's control API over HTTP."""
    async with httpx.AsyncClient(base_url=sim.base_url, timeout=10.0) as http:
        response = await http.request(method, path, json=body)
        assert response.status_code < 300, response.text
        return response.json()


async def sim_api(sim: Simulator, path: str) -> Any:
    """GET a CCE route of the simulator with its AK/SK (what the API says, for comparisons)."""
    from tests.conftest import signed_client

    async with signed_client(sim, timeout=10.0) as http:
        response = await http.get(path)
        assert response.status_code == 200, response.text
        return response.json()


def project_path(sim: Simulator, rest: str = "") -> str:
    return f"/api/v3/projects/{sim.credentials.project_id}{rest}"


async def until(check: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    end = time.monotonic() + deadline
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def exporter(simulator: Simulator) -> AsyncIterator[Exporter]:
    async with running_exporter(sim_env(simulator)) as exp:
        yield exp


# --- state sets, counts, quotas --------------------------------------------------------------


def current_values(scrape: Scrape, family: str) -> dict[tuple[tuple[str, str], ...], str]:
    """Identity labels -> the state-set value whose series is 1; asserts exactly one is."""
    label, known = STATE_SETS[family]
    per_object: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
    for (_, lbls), value in scrape.family(family).items():
        d = dict(lbls)
        state = d.pop(label)
        per_object.setdefault(tuple(sorted(d.items())), {})[state] = value
    out = {}
    for ident, states in per_object.items():
        assert set(states) == {*known, "unknown"}, f"{family}: {sorted(states)}"
        ones = [s for s, v in states.items() if v == 1.0]
        assert len(ones) == 1 and all(v in (0.0, 1.0) for v in states.values()), states
        out[ident] = ones[0]
    return out


# The simulator's clock stands still: the phases read straight from the API below are those of
# the instant the exporter collected (on real time, a job could move on in between).
@pytest.mark.simulator(clock_frozen=True)
async def test_every_state_set_value_matches_the_simulator(
    simulator: Simulator, exporter: Exporter
) -> None:
    results = await exporter.collect_all()
    assert all(results.values()), results
    scrape = await exporter.scrape()
    summary = (await control(simulator, "GET", "/_sim/state"))["world"]

    clusters = current_values(scrape, "cce_cluster_status_phase")
    assert Counter(clusters.values()) == Counter(summary["cluster_phases"])
    nodes = current_values(scrape, "cce_node_status_phase")
    assert Counter(nodes.values()) == Counter(summary["node_phases"])
    pools = current_values(scrape, "cce_nodepool_status_phase")
    assert Counter(pools.values()) == Counter(summary["nodepool_phases"])
    addons = current_values(scrape, "cce_addon_status")
    # Add-ons of clusters asleep or being created are not listed (the API cannot answer).
    listed = {
        cid
        for cid, c in simulator.world.clusters.items()
        if c.segment(simulator.world.now_ns()).phase
        not in ("Hibernation", "Hibernating", "Awaking", "Creating", None)
    }
    expected_addons = Counter(
        a.status for cid in listed for a in simulator.world.clusters[cid].addons.values()
    )
    assert Counter(addons.values()) == expected_addons
    # The world covers every known value of the contract, so each appears as a current value.
    for family, seen in (
        ("cce_cluster_status_phase", clusters),
        ("cce_node_status_phase", nodes),
        ("cce_nodepool_status_phase", pools),
        ("cce_addon_status", addons),
    ):
        _, known = STATE_SETS[family]
        assert set(known) <= set(seen.values()), (family, set(known) - set(seen.values()))

    # Per object: the exporter's current phase is what the API says for that very object.
    api_clusters = await sim_api(simulator, project_path(simulator, "/clusters?errorStatus=true"))
    by_id = {c["metadata"]["uid"]: c for c in api_clusters["items"]}
    assert {dict(k)["cluster_id"] for k in clusters} == set(by_id)
    for ident, phase in clusters.items():
        cluster = by_id[dict(ident)["cluster_id"]]
        assert phase == cluster["status"]["phase"]
        assert dict(ident)["cluster"] == cluster["metadata"]["name"]

    # Jobs: every tracked job's phase is the one the simulator's job route answers.
    jobs = current_values(scrape, "cce_job_status_phase")
    assert jobs, "the simulator's transitional clusters and nodes carry jobs"
    for ident, phase in jobs.items():
        job = await sim_api(simulator, project_path(simulator, f"/jobs/{dict(ident)['job_id']}"))
        assert phase == job["status"]["phase"]


async def test_node_counts_and_quotas_match_the_simulator(
    simulator: Simulator, exporter: Exporter
) -> None:
    assert all((await exporter.collect_all()).values())
    scrape = await exporter.scrape()
    api = await sim_api(simulator, project_path(simulator, "/clusters?errorStatus=true"))
    for cluster in api["items"]:
        cid = cluster["metadata"]["uid"]
        nodes = await sim_api(simulator, project_path(simulator, f"/clusters/{cid}/nodes"))
        node_ids = {n["metadata"]["uid"] for n in nodes["items"]}
        assert scrape.label_values_for("cce_node_info", "node_id", cluster_id=cid) == node_ids
        total = cluster["status"].get("totalNodesNumber", len(nodes["items"]))
        assert scrape.value("cce_cluster_nodes", cluster_id=cid) == total
    quotas = (await sim_api(simulator, project_path(simulator, "/quotas")))["quotas"]
    assert len(scrape.values("cce_quota_limit")) == len(quotas)
    for quota in quotas:
        labels = {"resource": quota["quotaKey"]}
        if "availabilityZoneId" in quota:
            labels["az"] = quota["availabilityZoneId"]
        assert scrape.value("cce_quota_limit", **labels) == quota["quotaLimit"]
        assert scrape.value("cce_quota_used", **labels) == quota["used"]
    summary = (await control(simulator, "GET", "/_sim/state"))["world"]
    assert len(scrape.values("cce_node_info")) == summary["nodes"]
    assert len(scrape.values("cce_cluster_info")) == summary["clusters"]


# --- inventory changes -------------------------------------------------------------------------


def cluster_series(scrape: Scrape, cluster_id: str) -> dict[str, int]:
    """How many series of each resource family name the cluster."""
    out: Counter[str] = Counter()
    for name, samples in scrape.families.items():
        for _, lbls in samples:
            if dict(lbls).get("cluster_id") == cluster_id:
                out[name] += 1
    return dict(out)


async def test_a_cluster_added_or_removed_appears_or_disappears(
    simulator: Simulator, exporter: Exporter
) -> None:
    assert all((await exporter.collect_all()).values())
    added = await control(simulator, "POST", "/_sim/clusters", {"name": "e2e-new", "nodes": 4})
    cid = added["uid"]
    assert cluster_series(await exporter.scrape(), cid) == {}

    assert all((await exporter.collect_all()).values())
    scrape = await exporter.scrape()
    assert scrape.value("cce_cluster_status_phase", cluster_id=cid, phase="Available") == 1
    assert scrape.label_values_for("cce_cluster_info", "cluster", cluster_id=cid) == {"e2e-new"}
    assert scrape.label_values_for("cce_node_info", "node_id", cluster_id=cid) == set(
        added["nodes"]
    )
    world_cluster = simulator.world.clusters[cid]
    assert scrape.label_values_for("cce_nodepool_info", "nodepool_id", cluster_id=cid) == set(
        world_cluster.pools
    )
    assert scrape.label_values_for("cce_addon_info", "addon_id", cluster_id=cid) == set(
        world_cluster.addons
    )
    assert scrape.value("cce_cluster_nodes", cluster_id=cid) == 4
    memos = exporter.service.targets[0].collector.memos
    assert {f"nodes/{cid}", f"nodepools/{cid}", f"addons/{cid}"} <= set(memos)

    # Nodes added and removed follow on the next node listing (the node list's body changed:
    # it is parsed again, not recalled).
    new_nodes = (await control(simulator, "POST", f"/_sim/clusters/{cid}/nodes", {"count": 2}))[
        "uids"
    ]
    gone = added["nodes"][0]
    await control(simulator, "DELETE", f"/_sim/clusters/{cid}/nodes/{gone}")
    assert await exporter.collect("nodes")
    scrape = await exporter.scrape()
    expected = (set(added["nodes"]) - {gone}) | set(new_nodes)
    assert scrape.label_values_for("cce_node_info", "node_id", cluster_id=cid) == expected
    assert scrape.label_values_for("cce_node_status_phase", "node_id", cluster_id=cid) == expected
    assert await exporter.collect("clusters")
    assert (await exporter.scrape()).value("cce_cluster_nodes", cluster_id=cid) == len(expected)

    # The cluster removed: every series naming it goes with the next cluster listing.
    await control(simulator, "DELETE", f"/_sim/clusters/{cid}")
    assert await exporter.collect("clusters")
    assert cluster_series(await exporter.scrape(), cid) == {}
    assert all((await exporter.collect_all()).values())
    assert cluster_series(await exporter.scrape(), cid) == {}
    # ...and so do the last answers kept for it.
    assert not [key for key in memos if key.endswith(f"/{cid}")]


# --- faults, freshness, readiness --------------------------------------------------------------


async def test_node_listing_failing_for_one_cluster_keeps_the_rest(
    simulator: Simulator, exporter: Exporter
) -> None:
    pid = exporter.project_id
    assert all((await exporter.collect_all()).values())
    before = await exporter.scrape()
    clusters = sorted(before.label_values("cce_node_info", "cluster_id"))
    broken, others = clusters[0], clusters[1:]
    nodes_before = {
        c: before.label_values_for("cce_node_info", "node_id", cluster_id=c) for c in clusters
    }
    last_ok = before.value("cce_exporter_last_success_timestamp_seconds", resource="nodes")
    assert before.value("cce_exporter_collect_success", resource="nodes", project_id=pid) == 1

    await control(
        simulator,
        "POST",
        "/_sim/faults",
        {"kind": "http_500", "rate": 1.0, "path": f"/clusters/{broken}/nodes$"},
    )
    # A node added to a healthy cluster meanwhile shows: the other clusters are still listed.
    healthy = others[0]
    new = (await control(simulator, "POST", f"/_sim/clusters/{healthy}/nodes", {"count": 1}))[
        "uids"
    ]
    for _ in range(2):
        exporter.clock.advance(30)
        # Partial failure is not total failure: the pass succeeds, the cluster shows failing.
        assert await exporter.collect("nodes")
        scrape = await exporter.scrape()
        assert scrape.value("cce_exporter_collect_success", resource="nodes", project_id=pid) == 1
        assert (
            scrape.value("cce_exporter_last_success_timestamp_seconds", resource="nodes")
            == exporter.clock.now
            > last_ok
        )
        assert (
            scrape.value(
                "cce_exporter_cluster_collect_success", resource="nodes", cluster_id=broken
            )
            == 0
        )
        # The failing cluster keeps its last good nodes, the others are current.
        for c in clusters:
            want = nodes_before[c] | (set(new) if c == healthy else set())
            assert scrape.label_values_for("cce_node_info", "node_id", cluster_id=c) == want
        assert scrape.value("cce_exporter_collect_success", resource="clusters") == 1
    errors = scrape.values("cce_exporter_collect_errors_total", resource="nodes", project_id=pid)
    assert sum(errors) == 2

    await control(simulator, "DELETE", "/_sim/faults")
    exporter.clock.advance(30)
    assert await exporter.collect("nodes")
    scrape = await exporter.scrape()
    assert scrape.value("cce_exporter_collect_success", resource="nodes") == 1
    assert (
        scrape.value("cce_exporter_cluster_collect_success", resource="nodes", cluster_id=broken)
        == 1
    )
    assert scrape.value("cce_exporter_last_success_timestamp_seconds", resource="nodes") == (
        exporter.clock.now
    )
    assert (
        scrape.label_values_for("cce_node_info", "node_id", cluster_id=broken)
        == (nodes_before[broken])
    )


async def test_cluster_listing_failure_keeps_the_last_good_clusters(
    simulator: Simulator, exporter: Exporter
) -> None:
    assert all((await exporter.collect_all()).values())
    before = await exporter.scrape()
    await control(
        simulator, "POST", "/_sim/faults", {"kind": "http_503", "rate": 1.0, "path": "/clusters$"}
    )
    exporter.clock.advance(10)
    assert not await exporter.collect("clusters")
    after = await exporter.scrape()
    assert after.value("cce_exporter_collect_success", resource="clusters") == 0
    assert after.family("cce_cluster_info") == before.family("cce_cluster_info")
    assert after.family("cce_node_info") == before.family("cce_node_info")


async def test_readyz_follows_the_first_collection_and_staleness(
    simulator: Simulator, exporter: Exporter
) -> None:
    response = await exporter.http.get("/readyz")
    assert response.status_code == 503
    assert "has not completed a collection yet" in response.text
    assert (await exporter.http.get("/healthz")).status_code == 200

    assert all((await exporter.collect_all()).values())
    response = await exporter.http.get("/readyz")
    assert (response.status_code, response.text) == (200, "ready\n")

    # Jobs are polled every 15 s by default: past three intervals, their data is stale.
    interval = exporter.service.interval(exporter.service.targets[0], "jobs")
    exporter.clock.advance(3 * interval + 1)
    response = await exporter.http.get("/readyz")
    assert response.status_code == 503
    assert "target default: jobs data is" in response.text
    assert f"more than 3 intervals of {interval:g}s" in response.text
    assert "clusters" not in response.text  # 30 s x 3 is not over yet

    assert await exporter.collect("jobs")
    assert (await exporter.http.get("/readyz")).status_code == 200


async def test_readyz_names_a_resource_that_never_succeeded(simulator: Simulator) -> None:
    async with running_exporter(sim_env(simulator)) as exporter:
        await control(
            simulator, "POST", "/_sim/faults", {"kind": "http_500", "rate": 1.0, "path": "/quotas"}
        )
        results = await exporter.collect_all()
        assert results["default/quotas"] is False
        response = await exporter.http.get("/readyz")
        assert response.status_code == 503
        assert "target default: quotas has never succeeded" in response.text


# --- CCE jobs ----------------------------------------------------------------------------------


def histogram_count(scrape: Scrape, **labels: str) -> float:
    name = "cce_job_completed_duration_seconds"
    found = [
        v
        for (sample, lbls), v in scrape.family(name).items()
        if sample == f"{name}_count" and all(dict(lbls).get(k) == w for k, w in labels.items())
    ]
    return sum(found)


def histogram_sum(scrape: Scrape, **labels: str) -> float:
    name = "cce_job_completed_duration_seconds"
    return sum(
        v
        for (sample, lbls), v in scrape.family(name).items()
        if sample == f"{name}_sum" and all(dict(lbls).get(k) == w for k, w in labels.items())
    )


async def new_creating_cluster(sim: Simulator, name: str) -> tuple[str, str]:
    """A cluster being created, and its CreateCluster job's ID (as the API shows it)."""
    cid = (await control(sim, "POST", "/_sim/clusters", {"name": name, "phase": "Creating"}))["uid"]
    cluster = await sim_api(sim, project_path(sim, f"/clusters/{cid}"))
    job_id = cluster["status"]["jobID"]
    assert job_id
    return cid, job_id


async def test_a_job_moves_through_its_phases(simulator: Simulator, exporter: Exporter) -> None:
    assert all((await exporter.collect_all()).values())
    start = await exporter.scrape()
    cid, job_id = await new_creating_cluster(simulator, "e2e-job")
    job = simulator.world.jobs[job_id]
    created, finished = job.created / 1e9, job.finished / 1e9
    type_labels = {"type": "CreateCluster", "phase": "Success"}

    assert await exporter.collect("clusters")
    assert await exporter.collect("jobs")
    scrape = await exporter.scrape()
    ident = {"cluster_id": cid, "job_id": job_id}
    api_job = await sim_api(simulator, project_path(simulator, f"/jobs/{job_id}"))
    phase = api_job["status"]["phase"]
    assert phase in ("Initializing", "Running")
    assert scrape.value("cce_job_status_phase", phase=phase, **ident) == 1
    assert scrape.value("cce_job_status_phase", phase="Success", **ident) == 0
    assert scrape.value("cce_job_created_timestamp_seconds", **ident) == pytest.approx(created)
    assert scrape.value("cce_job_duration_seconds", **ident) == pytest.approx(
        exporter.clock.now - created, abs=1e-3
    )
    assert scrape.values("cce_job_completion_timestamp_seconds", **ident) == []
    info = scrape.family("cce_job_info")
    assert any(
        dict(lbls).get("job_id") == job_id and dict(lbls).get("resource") == "e2e-job"
        for _, lbls in info
    )

    # Both clocks move past the job's end: it is seen finished, and observed once.
    seconds = finished - time.time() + 5
    before_ns = simulator.world.now_ns()
    simulator.advance(seconds)
    # Other CreateCluster jobs of the world (all followed since the first collection) may
    # succeed in the same jump; each is observed once too.
    after_ns = simulator.world.now_ns()
    finishing = sum(
        1
        for j in simulator.world.jobs.values()
        if j.type == "CreateCluster" and not j.failed and before_ns < j.finished <= after_ns
    )
    exporter.clock.advance(seconds)
    assert await exporter.collect("clusters")
    assert await exporter.collect("jobs")
    scrape = await exporter.scrape()
    assert scrape.value("cce_job_status_phase", phase="Success", **ident) == 1
    assert scrape.value("cce_job_completion_timestamp_seconds", **ident) == pytest.approx(finished)
    assert scrape.value("cce_job_duration_seconds", **ident) == pytest.approx(finished - created)
    assert scrape.value("cce_cluster_status_phase", cluster_id=cid, phase="Available") == 1
    observed = histogram_count(scrape, **type_labels) - histogram_count(start, **type_labels)
    assert observed == finishing >= 1
    others = sum(
        (j.finished - j.created) / 1e9
        for j in simulator.world.jobs.values()
        if j.type == "CreateCluster"
        and not j.failed
        and before_ns < j.finished <= after_ns
        and j.uid != job_id
    )
    # This job adds its own duration, the others theirs.
    assert histogram_sum(scrape, **type_labels) - histogram_sum(
        start, **type_labels
    ) == pytest.approx(finished - created + others)

    # More collections (and the clusters' listing again) do not observe it again.
    for _ in range(2):
        assert all((await exporter.collect_all()).values())
    again = await exporter.scrape()
    assert histogram_count(again, **type_labels) == histogram_count(scrape, **type_labels)
    assert again.value("cce_job_status_phase", phase="Success", **ident) == 1
    # A finished job is not polled again: its last answer is not kept.
    assert f"job/{job_id}" not in exporter.service.targets[0].collector.memos

    # Past the retention window (24 h by default) the finished job is dropped.
    exporter.clock.advance(exporter.service.settings.job_retention + 1)
    assert await exporter.collect("jobs")
    assert (await exporter.scrape()).values("cce_job_info", job_id=job_id) == []


async def test_collect_all_polls_each_job_once_and_new_ones_in_the_same_cycle(
    simulator: Simulator, exporter: Exporter
) -> None:
    """Followed jobs are polled while the listings run, the ones those listings discover right
    after: every job once a cycle, a new one in the cycle that finds it."""
    assert all((await exporter.collect_all()).values())
    tracker = exporter.service.targets[0].collector.jobs
    followed = {e.job_id for e in tracker.pending()}
    assert followed  # the world keeps jobs running
    before = simulator.state()["requests"].get("job", 0)
    _, job_id = await new_creating_cluster(simulator, "e2e-same-cycle")
    assert all((await exporter.collect_all()).values())
    new = set(tracker.entries) - followed
    assert job_id in new
    assert simulator.state()["requests"]["job"] - before == len(followed) + len(new)
    assert (await exporter.scrape()).values("cce_job_info", job_id=job_id) == [1.0]

    # A new job that cannot be fetched fails the cycle's jobs collection.
    _, failing = await new_creating_cluster(simulator, "e2e-same-cycle-fails")
    simulator.faults.add("http_500", rate=1.0, path=f"/jobs/{failing}$")
    results = await exporter.collect_all()
    name = exporter.service.targets[0].config.name
    assert results[f"{name}/jobs"] is False
    assert results[f"{name}/clusters"] is True
    assert (await exporter.scrape()).value("cce_exporter_collect_success", resource="jobs") == 0


async def test_a_job_answering_404_is_dropped_and_counted(
    simulator: Simulator, exporter: Exporter
) -> None:
    pid = exporter.project_id
    assert all((await exporter.collect_all()).values())
    _, job_id = await new_creating_cluster(simulator, "e2e-lost-job")
    assert await exporter.collect("clusters")
    assert await exporter.collect("jobs")
    assert (await exporter.scrape()).values("cce_job_info", job_id=job_id) == [1.0]
    dropped_before = sum(
        (await exporter.scrape()).values("cce_exporter_jobs_dropped_total", reason="not_found")
    )

    # Job IDs are short-lived: the API forgets this one while the cluster still shows it.
    del simulator.world.jobs[job_id]
    assert await exporter.collect("jobs")  # a 404 is not a failure
    scrape = await exporter.scrape()
    assert scrape.values("cce_job_info", job_id=job_id) == []
    assert scrape.values("cce_job_status_phase", job_id=job_id) == []
    assert (
        scrape.value("cce_exporter_jobs_dropped_total", reason="not_found", project_id=pid)
        == dropped_before + 1
    )
    # The cluster still carries the job ID; it is not followed (and counted) again.
    for _ in range(2):
        assert await exporter.collect("clusters")
        assert await exporter.collect("jobs")
    scrape = await exporter.scrape()
    assert scrape.values("cce_job_info", job_id=job_id) == []
    assert scrape.value("cce_exporter_jobs_dropped_total", reason="not_found") == (
        dropped_before + 1
    )
    assert scrape.value("cce_exporter_collect_success", resource="jobs") == 1


# --- time in state and the state file ----------------------------------------------------------


def phase_since(scrape: Scrape) -> dict[str, float]:
    return {
        dict(lbls)["cluster_id"]: v
        for (name, lbls), v in scrape.family(
            "cce_cluster_status_phase_since_timestamp_seconds"
        ).items()
    }


async def test_phase_since_survives_a_restart_via_the_state_file(
    simulator: Simulator, tmp_path: Path
) -> None:
    state = tmp_path / "exporter.json"
    env = sim_env(simulator, CCE_EXPORTER_STATE_FILE=str(state))
    clock = FakeClock()
    first_seen = clock.now
    async with running_exporter(env, clock=clock) as exporter:
        assert await exporter.collect("clusters")
        before = phase_since(await exporter.scrape())
    assert set(before.values()) == {first_seen}
    # Stopping the server ran the shutdown hook, which wrote the state file.
    saved = json.loads(state.read_text())
    assert set(saved["sections"]["phases"]["default"]) >= {f"cluster/{c}" for c in before}

    changed = sorted(before)[0]
    await control(
        simulator, "POST", "/_sim/phase", {"kind": "cluster", "id": changed, "phase": "Unavailable"}
    )
    clock.advance(600)
    async with running_exporter(env, clock=clock) as exporter:
        assert await exporter.collect("clusters")
        after = phase_since(await exporter.scrape())
    assert after[changed] == first_seen + 600  # a new phase starts its own clock
    unchanged = {c: v for c, v in after.items() if c != changed}
    assert unchanged == {c: before[c] for c in unchanged}


async def test_a_corrupt_state_file_is_set_aside(
    simulator: Simulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "exporter.json"
    state.write_bytes(b'{"version": 1, "sections": {"phases": [tr')
    env = sim_env(simulator, CCE_EXPORTER_STATE_FILE=str(state))
    with caplog.at_level(logging.ERROR, logger="exporter.collect.statefile"):
        async with running_exporter(env) as exporter:
            aside = list(tmp_path.glob("exporter.json.corrupt-*"))
            assert len(aside) == 1
            assert aside[0].read_bytes().startswith(b'{"version": 1, "sections"')
            assert all((await exporter.collect_all()).values())
            assert (await exporter.http.get("/readyz")).status_code == 200
    assert any(
        "is corrupt" in r.getMessage() and "moved aside" in r.getMessage() for r in caplog.records
    )
    # A good state file replaced it at shutdown.
    assert "phases" in json.loads(state.read_text())["sections"]


# --- scrapes during collections ----------------------------------------------------------------

VARIANTS = {
    "text": {},
    "text+gzip": {"Accept-Encoding": "gzip"},
    "openmetrics": {"Accept": "application/openmetrics-text; version=1.0.0"},
    "openmetrics+gzip": {
        "Accept": "application/openmetrics-text; version=1.0.0",
        "Accept-Encoding": "gzip",
    },
}


@pytest.mark.simulator(clock_frozen=True, clusters=12, nodes_per_cluster=4)
async def test_scrapes_during_collections_always_parse_and_are_complete(
    simulator: Simulator,
) -> None:
    async with running_exporter(sim_env(simulator, CCE_EXPORTER_MAX_RETRIES="3")) as exporter:
        await scrapes_during_collections(exporter)


async def scrapes_during_collections(exporter: Exporter, clients: int = 8) -> None:
    # Two warm-up rounds: every self-metric series exists (API endpoints, the histogram).
    for _ in range(2):
        assert all((await exporter.collect_all()).values())

    async def fetch(client: httpx.AsyncClient, variant: str) -> str:
        headers = {"Accept-Encoding": "identity", **VARIANTS[variant]}
        response = await client.get("/metrics", headers=headers)
        assert response.status_code == 200
        assert ("gzip" in variant) == (response.headers.get("content-encoding") == "gzip")
        openmetrics = variant.startswith("openmetrics")
        assert response.headers["content-type"].startswith(
            "application/openmetrics-text" if openmetrics else "text/plain"
        )
        return response.text  # httpx undid the gzip: a truncated stream would have raised

    def parsed(variant: str, text: str) -> Scrape:
        return parse(text, openmetrics=variant.startswith("openmetrics"))

    reference = {v: parsed(v, await fetch(exporter.http, v)) for v in VARIANTS}
    assert reference["text"].series() == reference["text+gzip"].series()
    assert reference["openmetrics"].series() == reference["openmetrics+gzip"].series()
    families = set(reference["text"].families)
    assert {"cce_cluster_info", "cce_node_info", "cce_job_info", "cce_quota_limit"} <= families

    done = asyncio.Event()
    scrapes: Counter[str] = Counter()
    bodies: dict[str, set[str]] = {v: set() for v in VARIANTS}

    async def hammer(index: int) -> None:
        variant = list(VARIANTS)[index % len(VARIANTS)]
        async with httpx.AsyncClient(base_url=exporter.url, timeout=10.0) as client:
            while not done.is_set() or scrapes[variant] < 5:
                # Parsing waits until the end: done here, it would starve the collections that
                # share this event loop (each parse of a large exposition takes milliseconds).
                bodies[variant].add(await fetch(client, variant))
                scrapes[variant] += 1

    async def collections() -> None:
        try:
            for _ in range(4):
                results = await exporter.collect_all()
                assert all(results.values()), results
                assert await exporter.collect("nodes")
                assert await exporter.collect("clusters")
        finally:
            done.set()

    await asyncio.gather(collections(), *(hammer(i) for i in range(clients)))
    assert all(scrapes[v] >= 5 for v in VARIANTS), scrapes
    # Different collections rendered different values (durations, counters), never other series.
    assert sum(len(b) for b in bodies.values()) > len(VARIANTS)
    for variant, texts in bodies.items():
        for text in texts:
            assert parsed(variant, text).series() == reference[variant].series(), variant


# --- several targets ----------------------------------------------------------------------------


async def test_two_targets_with_different_credentials_and_labels(
    simulator: Simulator, tmp_path: Path
) -> None:
    async with running_simulator(SimulatorConfig(clusters=4, nodes_per_cluster=2, seed=9)) as other:
        a, b = simulator.settings, other.settings
        config = {
            "listen": "127.0.0.1:0",
            "max_retries": 0,
            "targets": [
                {
                    "name": "alpha",
                    "endpoint": a["CCE_EXPORTER_ENDPOINT"],
                    "iam_endpoint": a["CCE_EXPORTER_IAM_ENDPOINT"],
                    "addon_endpoint": a["CCE_EXPORTER_ADDON_ENDPOINT"],
                    "project_id": a["CCE_EXPORTER_PROJECT_ID"],
                    "auth_method": "aksk",
                    "ak": a["CCE_EXPORTER_AK"],
                    "sk": a["CCE_EXPORTER_SK"],
                    "labels": {"region": "region-one", "env": "prod"},
                },
                {
                    "name": "beta",
                    "endpoint": b["CCE_EXPORTER_ENDPOINT"],
                    "iam_endpoint": b["CCE_EXPORTER_IAM_ENDPOINT"],
                    "addon_endpoint": b["CCE_EXPORTER_ADDON_ENDPOINT"],
                    "project_name": other.credentials.project_name,
                    "auth_method": "password",
                    "username": b["CCE_EXPORTER_USERNAME"],
                    "password": b["CCE_EXPORTER_PASSWORD"],
                    "domain": b["CCE_EXPORTER_DOMAIN"],
                    "labels": {"region": "region-two", "team": "data"},
                },
            ],
        }
        path = tmp_path / "config.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        async with running_exporter({}, config_file=path) as exporter:
            results = await exporter.collect_all()
            assert all(results.values()) and len(results) == 2 * len(RESOURCES), results
            scrape = await exporter.scrape()
            page = (await exporter.http.get("/")).text
        sims = {
            a["CCE_EXPORTER_PROJECT_ID"]: (simulator, {"region": "region-one", "env": "prod"}),
            other.credentials.project_id: (other, {"region": "region-two", "team": "data"}),
        }
        assert a["CCE_EXPORTER_PROJECT_ID"] != other.credentials.project_id
        for project_id, (sim, labels) in sims.items():
            summary = sim.state()["world"]
            assert (
                len(scrape.values("cce_cluster_info", project_id=project_id))
                == (summary["clusters"])
            )
            assert len(scrape.values("cce_node_info", project_id=project_id)) == summary["nodes"]
            # Each target keeps its own time in phase: one target's listing forgets none of
            # the other's.
            for family in (
                "cce_cluster_status_phase_since_timestamp_seconds",
                "cce_node_status_phase_since_timestamp_seconds",
            ):
                assert len(scrape.values(family, project_id=project_id)) == len(
                    scrape.values(
                        family.replace("_status_phase_since_timestamp_seconds", "_info"),
                        project_id=project_id,
                    )
                ), family
            assert (
                scrape.value(
                    "cce_exporter_collect_success", project_id=project_id, resource="clusters"
                )
                == 1
            )
            # Every resource series of the target carries its static labels, and only those.
            for name in (
                "cce_cluster_info",
                "cce_node_status_phase",
                "cce_quota_used",
                "cce_addon_status",
            ):
                for (_, lbls), _ in scrape.family(name).items():
                    d = dict(lbls)
                    if d["project_id"] != project_id:
                        continue
                    want = dict(labels)
                    if name == "cce_quota_used" and d["resource"] != "cluster":
                        # A quota's own ``region`` (the API's regionId) replaces the static one.
                        want["region"] = sim.credentials.project_name
                    assert {k: d.get(k) for k in ("region", "env", "team")} == {
                        k: want.get(k) for k in ("region", "env", "team")
                    }, (name, d)
        # The password target fetched an IAM token from its own simulator; the AK/SK one did not.
        assert other.state()["tokens"]["issued"] >= 1
        assert simulator.state()["tokens"]["issued"] == 0
        assert "alpha" in page and "beta" in page


# --- the scheduler ------------------------------------------------------------------------------


def short_intervals(seconds: str) -> dict[str, str]:
    return {f"CCE_EXPORTER_{r.upper()}_INTERVAL": seconds for r in RESOURCES}


class RealClock(FakeClock):
    def __call__(self) -> float:
        return time.time()


@pytest.mark.simulator(clusters=6, nodes_per_cluster=2)
async def test_the_scheduler_collects_at_the_configured_intervals(
    simulator: Simulator, tmp_path: Path
) -> None:
    # Intervals from the YAML file for two resources, the environment for the rest.
    config = tmp_path / "config.yaml"
    config.write_text("resources:\n  clusters:\n    interval: 300ms\n  jobs:\n    interval: 0.3\n")
    env = sim_env(simulator, **short_intervals("0.4s"))
    del env["CCE_EXPORTER_CLUSTERS_INTERVAL"], env["CCE_EXPORTER_JOBS_INTERVAL"]
    async with running_exporter(
        env, config_file=config, clock=RealClock(), start_scheduler=True
    ) as exporter:
        health = exporter.service.targets[0].collector.health
        assert exporter.service.interval(exporter.service.targets[0], "clusters") == 0.3
        seen: dict[str, set[float]] = {r: set() for r in health}

        def every_resource_ran_three_times() -> bool:
            for resource, h in health.items():
                if h.last_success is not None:
                    seen[resource].add(h.last_success)
            return all(len(v) >= 3 for v in seen.values())

        await until(every_resource_ran_three_times, "three scheduled runs of every resource")
        response = await exporter.http.get("/readyz")
        assert response.status_code == 200, response.text
        scrape = await exporter.scrape()
        assert set(scrape.values("cce_exporter_collect_success")) == {1.0}
        assert len(scrape.values("cce_cluster_info")) == simulator.state()["world"]["clusters"]


@pytest.mark.simulator(clusters=6, nodes_per_cluster=2)
async def test_the_daemon_survives_malformed_and_truncated_answers(simulator: Simulator) -> None:
    env = sim_env(simulator, **short_intervals("0.2s"))
    async with running_exporter(env, clock=RealClock(), start_scheduler=True) as exporter:
        health = exporter.service.targets[0].collector.health
        await until(lambda: all(h.success for h in health.values()), "a first good round")
        for kind in ("malformed_json", "truncated_json"):
            await control(simulator, "POST", "/_sim/faults", {"kind": kind, "rate": 0.5})
        await until(
            lambda: (
                simulator.faults.injected["malformed_json"] >= 10
                and simulator.faults.injected["truncated_json"] >= 10
                and any(not h.success for h in health.values())
            ),
            "bad answers during scheduled runs",
        )
        scrape = await exporter.scrape()
        errors = scrape.family("cce_exporter_collect_errors")
        assert any(dict(lbls).get("error") == "ResponseParseError" for _, lbls in errors), errors
        await control(simulator, "DELETE", "/_sim/faults")
        marks = {r: h.last_attempt or 0.0 for r, h in health.items()}
        await until(
            lambda: all(h.success and (h.last_success or 0) > marks[r] for r, h in health.items()),
            "every resource to succeed again",
        )
        assert exporter.service.scheduler is not None and exporter.service.scheduler.running
        assert (await exporter.http.get("/healthz")).status_code == 200

        async def ready() -> bool:
            # Ready once the exposition holding the recovered data is swapped in.
            return (await exporter.http.get("/readyz")).status_code == 200

        await until(ready, "/readyz to answer 200 again")


async def test_close_cancels_collections_in_flight(simulator: Simulator) -> None:
    """A collection hung on the API does not outlive the service, nor delay its shutdown."""
    simulator.faults.add("hang", rate=1.0, path=r"/nodes$", hang_seconds=60.0)
    env = sim_env(simulator, CCE_EXPORTER_TIMEOUT="60s", CCE_EXPORTER_MAX_RETRIES="0")
    async with running_exporter(env) as exporter:
        service = exporter.service
        target = service.targets[0]
        await service.collect(target, "clusters")
        hung = asyncio.create_task(service.collect(target, "nodes"))
        await until(lambda: service._running, "a nodes collection in flight")
        await asyncio.wait_for(service.close(), timeout=10.0)
        assert hung.cancelled() or hung.done()
        assert not service._running
