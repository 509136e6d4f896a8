"""Kubernetes Jobs, CronJobs and ResourceQuotas inside the clusters, through CCE.

Configuration (opt-in, hostile values), the tolerant models, the client against the simulator over
loopback HTTP (paging, an expired continue token, version discovery and its cache, the cluster-host
layout), and the whole service: selection, hibernated clusters, retention, the per-cluster cap,
one broken cluster, and a golden exposition from simulator data (``UPDATE_GOLDEN=1`` regenerates
it; read the diff).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.assemble import TargetBuilder
from exporter.cce import signing
from exporter.cce.errors import APIError, ResponseParseError
from exporter.cce.factory import build_client
from exporter.collect.service import ExporterService
from exporter.config import ConfigError, load_settings
from exporter.kube.client import KubeClient, fetcher_for
from exporter.kube.models import parse_job, parse_list, parse_quantity
from exporter.metrics.kube import next_fire
from exporter.metrics.render import inflate, render_group
from exporter.simulator import Simulator, running_simulator
from exporter.simulator.kube import CRON_PATTERNS

GOLDEN = Path(__file__).parent / "golden"
#: A fixed instant for the frozen simulator and the exporter's clock (2026-03-02 08:00 UTC).
FROZEN = 1_772_438_400.0

BASE_ENV = {
    "CCE_EXPORTER_ENDPOINT": "https://cce.region-1.example.com",
    "CCE_EXPORTER_PROJECT_ID": "0123456789abcdef0123456789abcdef",
    "CCE_EXPORTER_AK": "AKEXAMPLE",
    "CCE_EXPORTER_SK": "sk-very-secret-value",
}


# --- configuration --------------------------------------------------------------------------------


def test_kubernetes_is_off_by_default_with_the_documented_defaults() -> None:
    kube = load_settings(env=BASE_ENV).targets[0].kubernetes
    assert kube.enabled is False
    assert kube.interval == 60.0
    assert kube.max_objects_per_cluster == 5000
    assert kube.finished_job_retention == 86400.0
    assert kube.resources == ["jobs", "cronjobs", "resourcequotas"]
    assert kube.endpoint == "https://{cluster_id}.cce.region-1.example.com"


def test_environment_merges_key_by_key_with_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "kubernetes:\n"
        "  clusters: {names: ['prod-*'], exclude: [prod-sandbox]}\n"
        "  namespaces: {exclude: ['kube-*']}\n"
        "  interval: 2m\n"
        "targets:\n"
        "  - name: one\n"
        "    endpoint: https://cce.r1.example.com\n"
        "  - name: two\n"
        "    endpoint: https://cce.r2.example.com\n"
        "    kubernetes: {resources: [jobs]}\n"
    )
    env = {k: v for k, v in BASE_ENV.items() if k != "CCE_EXPORTER_ENDPOINT"} | {
        "CCE_EXPORTER_KUBERNETES_ENABLED": "true",
        "CCE_EXPORTER_TARGETS__TWO__KUBERNETES_MAX_OBJECTS_PER_CLUSTER": "100",
        "CCE_EXPORTER_KUBERNETES_NAMESPACES_INCLUDE": "batch, team-*",
    }
    one, two = load_settings(config, env).targets
    assert one.kubernetes.enabled and two.kubernetes.enabled
    assert one.kubernetes.clusters.names == ["prod-*"]
    assert one.kubernetes.clusters.exclude == ["prod-sandbox"]
    assert one.kubernetes.namespaces.include == ["batch", "team-*"]
    assert one.kubernetes.namespaces.exclude == ["kube-*"]
    assert one.kubernetes.interval == 120.0
    assert one.kubernetes.resources == ["jobs", "cronjobs", "resourcequotas"]
    assert two.kubernetes.resources == ["jobs"]
    assert (one.kubernetes.max_objects_per_cluster, two.kubernetes.max_objects_per_cluster) == (
        5000,
        100,
    )
    assert two.kubernetes.endpoint == "https://{cluster_id}.cce.r2.example.com"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CCE_EXPORTER_KUBERNETES_RESOURCES": "jobs,pods"}, "unknown kind(s) 'pods'"),
        ({"CCE_EXPORTER_KUBERNETES_MAX_OBJECTS_PER_CLUSTER": "0"}, "greater than or equal to 1"),
        ({"CCE_EXPORTER_KUBERNETES_MAX_OBJECTS_PER_CLUSTER": "lots"}, "valid integer"),
        ({"CCE_EXPORTER_KUBERNETES_MAX_OBJECTS_PER_CLUSTER": "1e12"}, "KUBERNETES_MAX_OBJECTS"),
        ({"CCE_EXPORTER_KUBERNETES_INTERVAL": "-5"}, "must be greater than zero"),
        ({"CCE_EXPORTER_KUBERNETES_INTERVAL": "nan"}, "KUBERNETES_INTERVAL"),
        ({"CCE_EXPORTER_KUBERNETES_FINISHED_JOB_RETENTION": "forever"}, "is not a duration"),
        ({"CCE_EXPORTER_KUBERNETES_ENABLED": "maybe"}, "KUBERNETES_ENABLED"),
        ({"CCE_EXPORTER_KUBERNETES_ENDPOINT": "https://{cluster}.x.com"}, "unknown placeholder"),
        ({"CCE_EXPORTER_KUBERNETES_ENDPOINT": "ftp://{cluster_id}.x.com"}, "http:// or https://"),
        ({"CCE_EXPORTER_KUBERNETES_ENDPOINT": "https://{cluster_id"}, "unbalanced braces"),
        (
            {
                "CCE_EXPORTER_ENDPOINT": "http://127.0.0.1:8080",
                "CCE_EXPORTER_KUBERNETES_ENABLED": "true",
            },
            "KUBERNETES_ENDPOINT (kubernetes.endpoint) is required",
        ),
    ],
)
def test_bad_values_get_a_clear_error_naming_the_setting(
    env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env=BASE_ENV | env)
    text = str(info.value)
    assert expected in text
    assert "CCE_EXPORTER_KUBERNETES_" in text
    assert BASE_ENV["CCE_EXPORTER_SK"] not in text


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("kubernetes: {enable: true}\n", "unknown key 'enable' in the config file (did you mean"),
        ("kubernetes: {clusters: {name: [a]}}\n", "kubernetes.clusters.name"),
        ("kubernetes: {clusters: {names: ['']}}\n", "has an empty entry"),
        ("kubernetes: {clusters: {names: [[nested]]}}\n", "kubernetes.clusters.names"),
        ("kubernetes: {max_objects_per_cluster: true}\n", "whole number"),
        ("kubernetes: {max_objects_per_cluster: 2.5}\n", "whole number"),
        ("kubernetes: [jobs]\n", "must be a mapping"),
        ("kubernetes: {namespaces: 7}\n", "kubernetes.namespaces"),
    ],
)
def test_hostile_file_values_are_refused(tmp_path: Path, yaml_text: str, expected: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_settings(config, BASE_ENV)
    assert expected in str(info.value)


def test_an_ip_endpoint_with_an_explicit_template_is_fine() -> None:
    env = BASE_ENV | {
        "CCE_EXPORTER_ENDPOINT": "http://127.0.0.1:8080",
        "CCE_EXPORTER_KUBERNETES_ENABLED": "true",
        "CCE_EXPORTER_KUBERNETES_ENDPOINT": "http://127.0.0.1:8080/kubernetes/{cluster_id}/",
    }
    kube = load_settings(env=env).targets[0].kubernetes
    assert kube.endpoint == "http://127.0.0.1:8080/kubernetes/{cluster_id}"


# --- models ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10", 10.0),
        ("500m", 0.5),
        ("2Gi", 2.0 * 2**30),
        ("1.5k", 1500.0),
        ("1e3", 1000.0),
        ("128974848", 128974848.0),
        ("129M", 129e6),
        ("123Mi", 123.0 * 2**20),
        ("100n", 1e-7),
        (7, 7.0),
        ("", None),
        ("lots", None),
        ("1Qi", None),
        (True, None),
        (None, None),
        ("9" * 70, None),
        (float("inf"), None),
    ],
)
def test_quantities(raw: Any, expected: float | None) -> None:
    got = parse_quantity(raw)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_lists_are_parsed_tolerantly() -> None:
    body = (
        b'{"kind":"JobList","metadata":{"continue":"abc","remainingItemCount":3},"items":['
        b'{"metadata":{"name":"ok","namespace":"n"},"status":{"active":"one","startTime":7,'
        b'"conditions":[{"type":"Failed","status":"True"},"junk",{"type":5}]},'
        b'"spec":{"activeDeadlineSeconds":true}},'
        b'{"metadata":{"namespace":"n"}},"a string",null,'
        b'{"metadata":{"name":"x","ownerReferences":[{"kind":"CronJob","name":"c"}]}}]}'
    )
    page = parse_list("jobs", body, endpoint="/apis/batch/v1/jobs")
    assert [j.name for j in page.items] == ["ok", "x"]
    ok, x = page.items
    assert ok.active is None and ok.active_deadline_seconds is None
    assert ok.start_time is None  # Kubernetes times are RFC 3339 text; a number is not one
    assert ok.conditions == (("Failed", "True"),)
    assert ok.finished
    assert (x.namespace, x.owner_kind, x.owner_name) == ("default", "CronJob", "c")
    assert (page.continue_token, page.remaining, page.skipped) == ("abc", 3, 3)
    assert parse_list("jobs", b'{"items":null}', endpoint="e").items == ()


@pytest.mark.parametrize(
    "body", [b"not json", b"[1,2]", b'{"items":{"a":1}}', b"\xff\xfe", b'"text"']
)
def test_a_body_that_is_not_a_list_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ResponseParseError):
        parse_list("cronjobs", body, endpoint="/apis/batch/v1/cronjobs")


def test_a_job_without_completion_time_finishes_with_its_condition() -> None:
    job = parse_job(
        {
            "metadata": {"name": "j"},
            "status": {
                "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Failed", "status": "True"}],
            },
        }
    )
    assert job is not None and job.finished
    assert job.finished_at == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    # With the condition's transition time, that is when it finished (the retention counts
    # from there, not from a start a day earlier).
    failed = parse_job(
        {
            "metadata": {"name": "j"},
            "status": {
                "startTime": "2026-01-01T00:00:00Z",
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "lastTransitionTime": "2026-01-02T03:00:00Z",
                    }
                ],
            },
        }
    )
    assert failed is not None
    assert failed.finished_at == datetime(2026, 1, 2, 3, tzinfo=UTC).timestamp()


def test_next_fire_honours_the_time_zone_and_the_cron_tz_prefix() -> None:
    after = datetime(2026, 3, 2, 8, 0, tzinfo=UTC).timestamp()
    # 02:00 in Shanghai (UTC+8) is 18:00 UTC the day before; the next one after 08:00 UTC.
    assert (
        next_fire("0 2 * * *", "Asia/Shanghai", after)
        == datetime(2026, 3, 2, 18, 0, tzinfo=UTC).timestamp()
    )
    assert next_fire("CRON_TZ=Asia/Shanghai 0 2 * * *", None, after) == next_fire(
        "0 2 * * *", "Asia/Shanghai", after
    )
    assert next_fire("0 2 * * *", None, after) == datetime(2026, 3, 3, 2, tzinfo=UTC).timestamp()
    assert next_fire("not a schedule", None, after) is None
    assert next_fire("0 2 * * *", "Mars/Olympus_Mons", after) is None
    assert next_fire("0 2 * * *", "../../etc/passwd", after) is None


# --- the client against the simulator -----------------------------------------------------------


def _settings(sim: Simulator, **extra: str) -> Any:
    env = dict(sim.settings)
    env["CCE_EXPORTER_KUBERNETES_ENABLED"] = "true"
    env.update({f"CCE_EXPORTER_{k.upper()}": v for k, v in extra.items()})
    return load_settings(env=env)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(clusters=8, nodes_per_cluster=1, seed=11, kube_jobs=32) as s:
        yield s


def _available(sim: Simulator) -> list[Any]:
    now = sim.clock.now_ns()
    return [c for c in sim.world.clusters.values() if c.segment(now).phase == "Available"]


def _new_and_old(sim: Simulator) -> tuple[Any, Any]:
    live = _available(sim)
    new = next(c for c in live if not c.version.startswith("v1.23"))
    old = next(c for c in live if c.version.startswith("v1.23"))
    return new, old


async def test_lists_are_paged_and_the_cap_stops_paging(sim: Simulator) -> None:
    settings = _settings(sim)
    cce = build_client(settings.targets[0], _api_metrics(), sim.credentials.project_id)
    try:
        client = KubeClient(fetcher_for(cce), settings.targets[0].kubernetes.endpoint, page_size=5)
        uid = _available(sim)[0].uid
        before = sim.app.requests["kube_list"]
        listing = await client.list(uid, "jobs", max_items=1000)
        assert sim.app.requests["kube_list"] - before == listing.pages == 7  # 32 jobs, 5 a page
        assert len({j.name for j in listing.items}) == 32 and listing.dropped == 0
        capped = await client.list(uid, "jobs", max_items=7)
        assert (len(capped.items), capped.pages, capped.dropped) == (7, 2, 25)
    finally:
        await cce.aclose()


async def test_an_expired_continue_token_restarts_the_list_once(sim: Simulator) -> None:
    settings = _settings(sim)
    cce = build_client(settings.targets[0], _api_metrics(), sim.credentials.project_id)
    real = fetcher_for(cce)
    spoil = {"left": 1}

    async def fetch(
        template: str, url: str, parse: Any, params: dict[str, str] | None, memo: Any = None
    ) -> Any:
        if params and "continue" in params and spoil["left"] > 0:
            spoil["left"] -= 1
            params = {**params, "continue": "expired-token"}
        return await real(template, url, parse, params, memo)

    try:
        client = KubeClient(fetch, settings.targets[0].kubernetes.endpoint, page_size=5)
        uid = _available(sim)[0].uid
        listing = await client.list(uid, "jobs", max_items=1000)
        assert len(listing.items) == 32
        spoil["left"] = 2
        with pytest.raises(APIError) as info:
            await client.list(uid, "jobs", max_items=1000)
        assert info.value.status_code == 410
    finally:
        await cce.aclose()


async def test_cronjob_versions_are_discovered_per_cluster_and_cached(sim: Simulator) -> None:
    settings = _settings(sim)
    cce = build_client(settings.targets[0], _api_metrics(), sim.credentials.project_id)
    try:
        client = KubeClient(fetcher_for(cce), settings.targets[0].kubernetes.endpoint)
        new, old = _new_and_old(sim)
        assert await client.cronjob_version(new.uid) == "v1"
        assert await client.cronjob_version(old.uid) == "v1beta1"
        asked = sim.app.requests["kube_batch"]
        for cluster in (new, old):
            listing = await client.list(cluster.uid, "cronjobs", max_items=100)
            assert {c.name for c in listing.items} == {
                "every-five",
                "nightly",
                "office-hours",
                "hourly-sync",
            }
        assert sim.app.requests["kube_batch"] == asked  # the discovery was cached
        new_items = (await client.list(new.uid, "cronjobs", max_items=100)).items
        old_items = (await client.list(old.uid, "cronjobs", max_items=100)).items
        # lastSuccessfulTime exists from batch/v1 only.
        assert all(c.last_successful is not None for c in new_items)
        assert all(c.last_successful is None for c in old_items)
    finally:
        await cce.aclose()


async def test_the_simulator_serves_the_cluster_host_layout(sim: Simulator) -> None:
    uid = _available(sim)[0].uid
    host = f"{uid}.cce.sim.local:{sim.port}"
    url = f"http://{host}/api/v1/resourcequotas"
    date = signing.sdk_date(datetime.now(UTC))
    headers = {"Host": host, "X-Sdk-Date": date, "Content-Type": "application/json"}
    headers["Authorization"] = signing.sign(
        "GET", url, headers, b"", sim.credentials.ak, sim.credentials.sk
    )
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{sim.base_url}/api/v1/resourcequotas", headers=headers)
    assert answer.status_code == 200
    assert answer.json()["kind"] == "ResourceQuotaList"


# --- the service ----------------------------------------------------------------------------------


def _api_metrics() -> Any:
    from prometheus_client import CollectorRegistry

    from exporter.cce.instrumentation import ApiMetrics

    return ApiMetrics(CollectorRegistry())


def _series(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out.append((dict(s.labels), s.value))
    return out


async def _collect(sim: Simulator, **extra: str) -> tuple[ExporterService, str]:
    service = ExporterService(
        _settings(sim, **extra), build_targets=TargetBuilder(), clock=lambda: sim.clock.now()
    )
    await service.setup()
    results = await service.collect_all()
    assert results["default/kubernetes"] is True
    exposition = service.exposition()
    assert exposition is not None
    return service, exposition.text.decode()


async def test_only_available_selected_clusters_are_listed_and_nothing_is_an_error(
    sim: Simulator,
) -> None:
    service, text = await _collect(sim)
    try:
        available = {c.uid for c in _available(sim)}
        others = set(sim.world.clusters) - available
        assert others, "the simulated world should have clusters that are not Available"
        listed = {labels["cluster_id"] for labels, _ in _series(text, "cce_kube_job_info")}
        assert listed == available
        quota_clusters = {
            labels["cluster_id"] for labels, _ in _series(text, "cce_kube_resourcequota")
        }
        assert quota_clusters == available
        assert not [
            labels
            for labels, _ in _series(text, "cce_exporter_collect_errors_total")
            if labels["resource"] == "kubernetes"
        ]
        success = [
            v
            for labels, v in _series(text, "cce_exporter_collect_success")
            if labels["resource"] == "kubernetes"
        ]
        assert success == [1.0]
        # The retention left out the Jobs that finished three days ago (every eighth one).
        per_cluster = {
            uid: sum(
                1 for labels, _ in _series(text, "cce_kube_job_info") if labels["cluster_id"] == uid
            )
            for uid in available
        }
        assert set(per_cluster.values()) == {32 - 4}
    finally:
        await service.close()


async def test_clusters_and_namespaces_are_selected_as_configured(sim: Simulator) -> None:
    live = sorted(_available(sim), key=lambda c: c.name)
    chosen, excluded = live[0], live[1]
    service, text = await _collect(
        sim,
        kubernetes_clusters_names=f"{chosen.name[:-1]}*",
        kubernetes_clusters_ids=excluded.uid,
        kubernetes_clusters_exclude=excluded.name,
        kubernetes_namespaces_include="batch,team-*",
        kubernetes_namespaces_exclude="team-b",
        kubernetes_resources="jobs,resourcequotas",
    )
    try:
        names = {c.name for c in live if c.name.startswith(chosen.name[:-1])} - {excluded.name}
        seen = {labels["cluster"] for labels, _ in _series(text, "cce_kube_job_info")}
        assert seen == names
        namespaces = {labels["namespace"] for labels, _ in _series(text, "cce_kube_job_info")}
        assert namespaces == {"batch", "team-a"}
        assert not _series(text, "cce_kube_cronjob_info")
    finally:
        await service.close()


async def test_the_cap_counts_what_it_drops(sim: Simulator) -> None:
    service, text = await _collect(sim, kubernetes_max_objects_per_cluster="5")
    try:
        live = {c.uid for c in _available(sim)}
        jobs = _series(text, "cce_kube_job_info")
        for uid in live:
            assert sum(1 for labels, _ in jobs if labels["cluster_id"] == uid) == 5
        dropped = {
            (labels["cluster_id"], labels["kind"]): v
            for labels, v in _series(text, "cce_exporter_kube_objects_dropped_total")
        }
        # 32 jobs, four past the retention, five kept.
        assert {k: v for k, v in dropped.items() if k[1] == "jobs"} == {
            (uid, "jobs"): 23.0 for uid in live
        }
        # Running and failed jobs are kept first.
        active = [v for _, v in _series(text, "cce_kube_job_status_active")]
        assert sum(active) == 5 * len(live)
    finally:
        await service.close()


async def test_a_hibernated_cluster_disappears_and_a_broken_one_keeps_its_data(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    service, text = await _collect(sim)
    try:
        live = sorted(_available(sim), key=lambda c: c.name)
        asleep, broken = live[0], live[1]
        before = {
            labels["job_name"]
            for labels, _ in _series(text, "cce_kube_job_info")
            if labels["cluster_id"] == broken.uid
        }
        sim.world.hibernate(asleep.uid)
        sim.advance(3600)
        sim.faults.add("http_500", rate=1.0, path=f"/kubernetes/{broken.uid}/")
        with caplog.at_level(logging.WARNING):
            results = await service.collect_all()
        assert results["default/kubernetes"] is False
        exposition = service.exposition()
        assert exposition is not None
        text = exposition.text.decode()
        clusters = {labels["cluster_id"] for labels, _ in _series(text, "cce_kube_job_info")}
        assert asleep.uid not in clusters
        after = {
            labels["job_name"]
            for labels, _ in _series(text, "cce_kube_job_info")
            if labels["cluster_id"] == broken.uid
        }
        assert after == before
        assert {c.uid for c in live[2:]} <= clusters
        errors = [
            v
            for labels, v in _series(text, "cce_exporter_collect_errors_total")
            if labels["resource"] == "kubernetes"
        ]
        assert sum(errors) >= 1
        assert broken.uid in caplog.text
        assert sim.credentials.sk not in caplog.text
        # Per cluster: the broken one failed, the others succeeded, the asleep one not asked.
        outcomes = {
            labels["cluster_id"]: v
            for labels, v in _series(text, "cce_exporter_cluster_collect_success")
            if labels["resource"] == "kubernetes"
        }
        now_live = {
            c.id
            for c in service.targets[0].collector.state.clusters
            if c.phase == "Available" and c.id != broken.uid
        }
        assert asleep.uid not in now_live
        assert outcomes == {broken.uid: 0.0} | dict.fromkeys(now_live, 1.0)
    finally:
        await service.close()


# --- golden exposition ----------------------------------------------------------------------------


async def test_golden_exposition_from_simulator_data() -> None:
    async with running_simulator(
        clusters=3,
        nodes_per_cluster=1,
        seed=4,
        clock_start=FROZEN,
        clock_frozen=True,
        kube_jobs=8,
        kube_cronjobs=len(CRON_PATTERNS),
        kube_quotas=2,
    ) as sim:
        service = ExporterService(
            _settings(sim), build_targets=TargetBuilder(), clock=lambda: FROZEN
        )
        await service.setup()
        try:
            await service.collect_all()
            versions = {
                c.version[:5]
                for c in sim.world.clusters.values()
                if c.segment(sim.clock.now_ns()).phase == "Available"
            }
            snapshots = [service.targets[0].collector.snapshot()]
            from exporter.kube.wiring import with_kube

            snapshots = [with_kube(snapshots[0], service.targets[0].kube)]
            fragment = render_group("kube", snapshots, now=FROZEN)
            got = b"".join(inflate(fragment.text)).decode()
        finally:
            await service.close()
    path = GOLDEN / "kube_simulator.prom"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(got)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 and review the diff"
    assert got == path.read_text()
    assert "v1.23" in versions and len(versions) > 1, versions  # both batch versions covered
    # What the golden shows, by meaning: every family has samples.
    for name in (
        "cce_kube_job_info",
        "cce_kube_job_status_condition",
        "cce_kube_job_spec_active_deadline_seconds",
        "cce_kube_job_status_completion_time_seconds",
        "cce_kube_cronjob_next_schedule_time_seconds",
        "cce_kube_cronjob_status_last_successful_time_seconds",
        "cce_kube_resourcequota",
    ):
        assert _series(got, name), name


# --- the benchmark --------------------------------------------------------------------------------


def test_the_benchmark_counts_kubernetes_lists_in_its_own_step() -> None:
    from bench.run import Options, run_size, size_name, table

    result = run_size(
        Options(
            clusters=4,
            nodes_per_cluster=2,
            kube=(30, 5),
            latency_ms=5,
            cycles=1,
            scrapes=5,
            baseline_scrapes=5,
            baseline_seconds=5,
            growth_cycles=3,
            growth_seconds=5,
        )
    )
    kinds = result.requests_by_kind
    # One page of each of the three kinds per Available cluster; the discovery is cached.
    assert kinds["kube_list"] > 0 and kinds["kube_list"] % 3 == 0, kinds
    assert "kube_batch" not in kinds, kinds
    assert result.extra["kube_requests"] == kinds["kube_list"]
    assert result.row["lower_bound_seconds"] >= 4 * 0.005
    assert size_name(result) == "4x2+k30x5"
    assert "| 4x2+k30x5 |" in table([result])


# --- hostile answers ------------------------------------------------------------------------------


async def test_a_server_that_never_stops_paging_is_cut_off() -> None:
    """Every page says there is more: paging stops at the page bound, and what the server says is
    left is counted as dropped rather than fetched."""
    calls = 0

    async def fetch(
        template: str, url: str, parse: Any, params: dict[str, str] | None, memo: Any = None
    ) -> Any:
        nonlocal calls
        calls += 1
        item = b'{"metadata":{"name":"j%d","namespace":"n"}}' % calls
        body = b'{"metadata":{"continue":"more","remainingItemCount":1000000},"items":[%s]}' % item
        return parse(body)

    client = KubeClient(fetch, "https://{cluster_id}.cce.example.com", max_pages=7)
    listing = await client.list("c0ffee", "jobs", max_items=100)
    assert calls == listing.pages == 7
    assert len(listing.items) == 7 and listing.dropped == 1_000_000


@pytest.mark.parametrize("cluster_id", ["../etc", "a.b", "", "x" * 64, "evil.example.com/"])
async def test_a_cluster_id_that_is_not_a_host_label_is_refused(cluster_id: str) -> None:
    from exporter.cce.errors import CCEError

    async def fetch(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no request may be sent")

    client = KubeClient(fetch, "https://{cluster_id}.cce.example.com")
    with pytest.raises(CCEError):
        await client.list(cluster_id, "jobs", max_items=10)


@pytest.mark.parametrize("kind", ["malformed_json", "truncated_json", "http_503"])
async def test_a_broken_answer_fails_one_cluster_only(sim: Simulator, kind: str) -> None:
    live = sorted(_available(sim), key=lambda c: c.name)
    broken = live[0]
    sim.faults.add(kind, rate=1.0, path=f"/kubernetes/{broken.uid}/apis/batch/v1/jobs")
    service = ExporterService(
        _settings(sim), build_targets=TargetBuilder(), clock=lambda: sim.clock.now()
    )
    await service.setup()
    try:
        results = await service.collect_all()
        assert results["default/kubernetes"] is False
        exposition = service.exposition()
        assert exposition is not None
        text = exposition.text.decode()
        clusters = {labels["cluster_id"] for labels, _ in _series(text, "cce_kube_job_info")}
        assert clusters == {c.uid for c in live[1:]}
        errors = {
            labels["error"]
            for labels, _ in _series(text, "cce_exporter_collect_errors_total")
            if labels["resource"] == "kubernetes"
        }
        assert errors
    finally:
        await service.close()


def test_the_effective_configuration_loads_again(tmp_path: Path) -> None:
    import yaml

    from exporter.config import render_effective_config

    env = BASE_ENV | {
        "CCE_EXPORTER_KUBERNETES_ENABLED": "true",
        "CCE_EXPORTER_KUBERNETES_NAMESPACES_EXCLUDE": "kube-*",
        "CCE_EXPORTER_KUBERNETES_FINISHED_JOB_RETENTION": "6h",
    }
    settings = load_settings(env=env)
    text = render_effective_config(settings)
    assert BASE_ENV["CCE_EXPORTER_SK"] not in text
    target = yaml.safe_load(text)["targets"][0]
    target["sk"] = BASE_ENV["CCE_EXPORTER_SK"]
    config = tmp_path / "effective.yaml"
    config.write_text(yaml.safe_dump({"targets": [target]}))
    again = load_settings(config, {})
    assert again.targets[0].kubernetes == settings.targets[0].kubernetes


async def test_nothing_is_listed_before_the_first_cluster_listing(sim: Simulator) -> None:
    service = ExporterService(
        _settings(sim), build_targets=TargetBuilder(), clock=lambda: sim.clock.now()
    )
    await service.setup()
    try:
        kube = service.targets[0].kube
        assert kube is not None
        asked = sim.app.requests["kube_list"]
        assert await kube.collect() is False
        assert not kube.health.attempted
        assert sim.app.requests["kube_list"] == asked
        assert await service.collect_kube(service.targets[0]) is False
        exposition = service.exposition()
        assert exposition is not None
        assert 'resource="kubernetes"' not in exposition.text.decode()
    finally:
        await service.close()


async def test_kubernetes_off_builds_nothing_and_sends_nothing(sim: Simulator) -> None:
    env = dict(sim.settings)
    service = ExporterService(
        load_settings(env=env), build_targets=TargetBuilder(), clock=lambda: sim.clock.now()
    )
    await service.setup()
    try:
        assert service.targets[0].kube is None
        results = await service.collect_all()
        assert "default/kubernetes" not in results
        assert sim.app.requests["kube_list"] == sim.app.requests["kube_batch"] == 0
    finally:
        await service.close()


async def test_a_server_ignoring_the_limit_gets_only_max_items_parsed() -> None:
    async def fetch(
        template: str, url: str, parse: Any, params: dict[str, str] | None, memo: Any = None
    ) -> Any:
        items = b",".join(b'{"metadata":{"name":"j%d","namespace":"n"}}' % i for i in range(5000))
        page = parse(b'{"items":[%s]}' % items)
        assert len(page.items) == 40 and page.unparsed == 4960  # not parsed, only counted
        return page

    client = KubeClient(fetch, "https://{cluster_id}.cce.example.com")
    listing = await client.list("c0ffee", "jobs", max_items=40)
    assert (len(listing.items), listing.dropped, listing.pages) == (40, 4960, 1)


def test_a_lone_surrogate_never_reaches_the_exposition() -> None:
    from exporter.limits import counts

    before = counts()[1].get("/apis/batch/v1/jobs", 0)
    body = (
        b'{"items":[{"metadata":{"name":"bad\\ud800","namespace":"n"}},'
        b'{"metadata":{"name":"ok","namespace":"n\\udfff"},'
        b'"metadata2":1,"status":{"conditions":[{"type":"Failed\\ud800","status":"True"}]}}]}'
    )
    page = parse_list("jobs", body, endpoint="/apis/batch/v1/jobs")
    assert [(j.namespace, j.name) for j in page.items] == [("default", "ok")]
    assert page.items[0].conditions == ()
    assert counts()[1]["/apis/batch/v1/jobs"] == before + 1
    quotas = parse_list(
        "resourcequotas",
        b'{"items":[{"metadata":{"name":"q"},"status":{"hard":{"pods\\ud800":"1","cpu":"2"}}}]}',
        endpoint="/api/v1/resourcequotas",
    )
    assert quotas.items[0].hard == (("cpu", 2.0),)
