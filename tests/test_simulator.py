"""The simulator over real HTTP on loopback: settings, auth, shapes, determinism, time, faults."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from exporter.cce import models
from exporter.cce.errors import ResponseParseError
from exporter.cce.models import parse_response
from exporter.simulator import FAULT_KINDS, Simulator, SimulatorConfig, running_simulator
from tests.conftest import SignAuth, SimProcess, signed_client, stop_process

SETTING_NAMES = (
    "CCE_EXPORTER_ENDPOINT",
    "CCE_EXPORTER_IAM_ENDPOINT",
    "CCE_EXPORTER_ADDON_ENDPOINT",
    "CCE_EXPORTER_KUBERNETES_ENDPOINT",
    "CCE_EXPORTER_PROJECT_ID",
    "CCE_EXPORTER_AUTH_METHOD",
    "CCE_EXPORTER_AK",
    "CCE_EXPORTER_SK",
    "CCE_EXPORTER_USERNAME",
    "CCE_EXPORTER_PASSWORD",
    "CCE_EXPORTER_DOMAIN",
)


def project_path(sim: Simulator, rest: str = "") -> str:
    return f"/api/v3/projects/{sim.settings['CCE_EXPORTER_PROJECT_ID']}{rest}"


async def get_json(client: httpx.AsyncClient, url: str, **kwargs: Any) -> Any:
    response = await client.get(url, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


async def clusters_by_phase(client: httpx.AsyncClient, sim: Simulator) -> dict[str, list[str]]:
    body = await get_json(client, project_path(sim, "/clusters"), params={"errorStatus": "true"})
    out: dict[str, list[str]] = {}
    for item in body["items"]:
        out.setdefault(item["status"]["phase"], []).append(item["metadata"]["uid"])
    return out


async def cluster_status(client: httpx.AsyncClient, sim: Simulator, uid: str) -> dict[str, Any]:
    body = await get_json(
        client, project_path(sim, f"/clusters/{uid}"), params={"errorStatus": "1"}
    )
    status: dict[str, Any] = body["status"]
    return status


# --- the command ---------------------------------------------------------------------------------


def test_simulate_process_prints_settings_then_ready_and_stops_on_sigterm(
    start_simulator: Callable[..., SimProcess],
) -> None:
    proc = start_simulator("--clusters", "4", "--nodes-per-cluster", "2", "--seed", "9")
    assert proc.lines[-1] == "READY"
    assert [line.split("=", 1)[0] for line in proc.lines[:-1]] == list(SETTING_NAMES)
    base = proc.settings["CCE_EXPORTER_ENDPOINT"]
    assert base.startswith("http://127.0.0.1:") and int(base.rsplit(":", 1)[1]) > 0
    assert proc.settings["CCE_EXPORTER_IAM_ENDPOINT"] == base
    assert proc.settings["CCE_EXPORTER_ADDON_ENDPOINT"] == base
    assert proc.settings["CCE_EXPORTER_KUBERNETES_ENDPOINT"] == base + "/kubernetes/{cluster_id}"
    assert proc.settings["CCE_EXPORTER_AUTH_METHOD"] == "aksk"
    signer = SignAuth(proc.settings["CCE_EXPORTER_AK"], proc.settings["CCE_EXPORTER_SK"])
    project = proc.settings["CCE_EXPORTER_PROJECT_ID"]
    with httpx.Client(base_url=base, auth=signer, timeout=10) as client:
        response = client.get(f"/api/v3/projects/{project}/clusters")
    assert response.status_code == 200
    assert len(response.json()["items"]) == 4
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.process.wait(15) == 0
    assert stop_process(proc.process) == 0


def test_same_seed_prints_same_credentials(start_simulator: Callable[..., SimProcess]) -> None:
    first = start_simulator("--clusters", "1", "--seed", "3")
    second = start_simulator("--clusters", "1", "--seed", "3")
    for name in SETTING_NAMES[4:]:
        assert first.settings[name] == second.settings[name]
    assert first.base_url != second.base_url


# --- authentication ------------------------------------------------------------------------------


class _Creds:
    def __init__(self, ak: str, sk: str) -> None:
        self.ak = ak
        self.sk = sk


def official_request(
    sim: Simulator,
    path: str,
    *,
    sk: str | None = None,
    query: list[tuple[str, Any]] | None = None,
    date: str | None = None,
) -> httpx.Request:
    """A request signed by the official SDK's signer, turned into an httpx request."""
    headers = {"Content-Type": "application/json"}
    if date is not None:
        headers["X-Sdk-Date"] = date
    host = sim.base_url.removeprefix("http://")
    sdk_request = SdkRequest(
        method="GET",
        schema="http",
        host=host,
        resource_path=path,
        query_params=list(query or []),
        header_params=headers,
        body="",
    )
    creds = _Creds(sim.settings["CCE_EXPORTER_AK"], sk or sim.settings["CCE_EXPORTER_SK"])
    signed = Signer(creds).sign(sdk_request)
    return httpx.Request("GET", f"{sim.base_url}{signed.uri}", headers=signed.header_params)


async def test_official_sdk_signature_lists_clusters(simulator: Simulator) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.send(
            official_request(simulator, project_path(simulator, "/clusters"))
        )
        assert response.status_code == 200, response.text
        clusters = parse_response(models.ClusterList, response.content)
        assert len(clusters.items) == 30
        uid = clusters.items[0].id
        assert uid is not None
        detail = official_request(
            simulator,
            project_path(simulator, f"/clusters/{uid}"),
            query=[("detail", "true"), ("errorStatus", "true")],
        )
        response = await client.send(detail)
        assert response.status_code == 200, response.text
        assert parse_response(models.Cluster, response.content).total_nodes is not None


async def test_wrong_sk_stale_date_and_missing_auth_get_401(simulator: Simulator) -> None:
    path = project_path(simulator, "/clusters")
    stale = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y%m%dT%H%M%SZ")
    async with httpx.AsyncClient(timeout=10) as client:
        for request in (
            official_request(simulator, path, sk="x" * 40),
            official_request(simulator, path, date=stale),
            httpx.Request("GET", simulator.base_url + path),
        ):
            response = await client.send(request)
            assert response.status_code == 401
            body = response.json()
            assert body["error_code"].startswith("APIGW.")
            assert simulator.settings["CCE_EXPORTER_SK"] not in response.text


async def test_project_in_path_must_be_the_simulators(sim_client: httpx.AsyncClient) -> None:
    response = await sim_client.get("/api/v3/projects/" + "f" * 32 + "/clusters")
    assert response.status_code == 403
    assert set(response.json()) == {"error_code", "error_msg"}


async def iam_token(sim: Simulator, client: httpx.AsyncClient, **overrides: Any) -> httpx.Response:
    user = {
        "name": sim.settings["CCE_EXPORTER_USERNAME"],
        "password": sim.settings["CCE_EXPORTER_PASSWORD"],
        "domain": {"name": sim.settings["CCE_EXPORTER_DOMAIN"]},
    }
    user.update(overrides)
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": user}},
            "scope": {"project": {"name": sim.credentials.project_name}},
        }
    }
    return await client.post(sim.base_url + "/v3/auth/tokens", json=body)


async def test_token_auth_and_expiry(simulator: Simulator) -> None:
    path = simulator.base_url + project_path(simulator, "/clusters")
    async with httpx.AsyncClient(timeout=10) as client:
        wrong = await iam_token(simulator, client, password="not-it")
        assert wrong.status_code == 401
        assert set(wrong.json()) == {"error_code", "error_msg"}
        assert "x-subject-token" not in wrong.headers

        issued = await iam_token(simulator, client)
        assert issued.status_code == 201
        token = issued.headers["X-Subject-Token"]
        body = parse_response(models.TokenBody, issued.content)
        assert body.token.expires_at is not None and body.token.issued_at is not None
        assert body.token.expires_at - body.token.issued_at == timedelta(hours=24)
        assert (
            issued.json()["token"]["project"]["id"] == simulator.settings["CCE_EXPORTER_PROJECT_ID"]
        )

        ok = await client.get(path, headers={"X-Auth-Token": token})
        assert ok.status_code == 200
        projects = await client.get(
            simulator.base_url + "/v3/projects",
            params={"name": simulator.credentials.project_name},
            headers={"X-Auth-Token": token},
        )
        parsed = parse_response(models.ProjectList, projects.content)
        assert [p.id for p in parsed.projects] == [simulator.settings["CCE_EXPORTER_PROJECT_ID"]]
        bogus = await client.get(path, headers={"X-Auth-Token": "MIIbogus"})
        assert bogus.status_code == 401

        expired = await client.post(simulator.base_url + "/_sim/tokens/expire")
        assert expired.json() == {"expired": 1}
        refused = await client.get(path, headers={"X-Auth-Token": token})
        assert refused.status_code == 401
        assert refused.json()["error_code"] == "APIGW.0307"

        # A fresh token dies when the simulated clock passes its 24 hours.
        fresh = (await iam_token(simulator, client)).headers["X-Subject-Token"]
        assert (await client.get(path, headers={"X-Auth-Token": fresh})).status_code == 200
        await client.post(simulator.base_url + "/_sim/clock/advance", json={"seconds": 86401})
        assert (await client.get(path, headers={"X-Auth-Token": fresh})).status_code == 401


# --- shapes --------------------------------------------------------------------------------------


async def test_every_endpoint_parses(simulator: Simulator, sim_client: httpx.AsyncClient) -> None:
    c = sim_client
    clusters = parse_response(
        models.ClusterList, (await c.get(project_path(simulator, "/clusters"))).content
    )
    assert clusters.kind == "Cluster"
    available = [cl for cl in clusters.items if cl.phase == "Available"]
    cid = available[0].id
    assert cid is not None
    detail = await c.get(project_path(simulator, f"/clusters/{cid}"), params={"detail": "true"})
    cluster = parse_response(models.Cluster, detail.content)
    annotations = detail.json()["metadata"]["annotations"]
    assert all(isinstance(v, str) for v in annotations.values())
    assert set(annotations) == {
        "totalNodesNumber",
        "activeNodesNumber",
        "totalNodesCPU",
        "totalNodesMemory",
        "installedAddonInstances",
    }
    nodes_raw = await c.get(project_path(simulator, f"/clusters/{cid}/nodes"))
    nodes = parse_response(models.NodeList, nodes_raw.content)
    assert nodes.kind == "Node"
    assert cluster.total_nodes == len(nodes.items) == 6
    assert cluster.active_nodes == sum(1 for n in nodes.items if n.phase == "Active")
    assert json.loads(annotations["installedAddonInstances"])[0]["addonTemplateName"]
    node_id = nodes.items[0].id
    node = parse_response(
        models.Node,
        (await c.get(project_path(simulator, f"/clusters/{cid}/nodes/{node_id}"))).content,
    )
    assert node.id == node_id and node.nodepool_id

    pools_path = project_path(simulator, f"/clusters/{cid}/nodepools")
    pools = parse_response(models.NodePoolList, (await c.get(pools_path)).content)
    with_default = parse_response(
        models.NodePoolList,
        (await c.get(pools_path, params={"showDefaultNodePool": "true"})).content,
    )
    assert len(with_default.items) == len(pools.items) + 1
    default = next(p for p in with_default.items if p not in pools.items)
    assert default.id == default.name and default.id is not None and default.id.count("#") == 2
    assert sum(p.status.current_node or 0 for p in with_default.items) == len(nodes.items)
    for pool in with_default.items:
        # The default pool's ID holds '#' and spaces: it must be quoted in the path.
        got = await c.get(f"{pools_path}/{quote(pool.id or '', safe='')}")
        assert parse_response(models.NodePool, got.content).id == pool.id

    quotas = parse_response(
        models.QuotaList, (await c.get(project_path(simulator, "/quotas"))).content
    )
    keyed = {(q.quota_key, q.availability_zone_id): q for q in quotas.quotas}
    assert keyed["cluster", None].used == 30 and keyed["cluster", None].quota_limit == 32
    assert keyed["nodepool", None].used == keyed["nodepool", None].quota_limit

    addons = parse_response(
        models.AddonList, (await c.get("/api/v3/addons", params={"cluster_id": cid})).content
    )
    assert addons.kind == "Addon" and addons.items
    raw_addons = (await c.get("/api/v3/addons", params={"cluster_id": cid})).json()
    assert "Reason" in raw_addons["items"][0]["status"]
    addon = addons.items[0]
    got_addon = await c.get(f"/api/v3/addons/{addon.id}", params={"cluster_id": cid})
    assert parse_response(models.Addon, got_addon.content).id == addon.id
    templates = await c.get("/api/v3/addontemplates")
    assert len(parse_response(models.AddonList, templates.content).items) >= 5
    one = await c.get("/api/v3/addontemplates", params={"addon_template_name": "coredns"})
    assert [t.name for t in parse_response(models.AddonList, one.content).items] == ["coredns"]
    # The add-on manager's own host form: {cluster_id}.<endpoint>, no cluster_id query.
    host = simulator.base_url.removeprefix("http://")
    by_host = await c.get("/api/v3/addons", headers={"Host": f"{cid}.{host}"})
    assert by_host.status_code == 200 and by_host.json()["items"] == raw_addons["items"]

    projects = parse_response(models.ProjectList, (await c.get("/v3/auth/projects")).content)
    assert projects.projects[0].name == simulator.credentials.project_name


async def test_not_found_bodies(simulator: Simulator, sim_client: httpx.AsyncClient) -> None:
    missing = await sim_client.get(project_path(simulator, "/clusters/nope"))
    assert missing.status_code == 404 and set(missing.json()) == {"error_code", "error_msg"}
    for path in ("/nodes/nope", "/nodepools/nope"):
        cid = (await clusters_by_phase(sim_client, simulator))["Available"][0]
        response = await sim_client.get(project_path(simulator, f"/clusters/{cid}{path}"))
        assert response.status_code == 404 and "error_code" in response.json()
    job = await sim_client.get(project_path(simulator, "/jobs/nope"))
    assert job.status_code == 404 and "error_code" in job.json()
    addon = await sim_client.get("/api/v3/addons/nope", params={"cluster_id": "nope"})
    assert addon.status_code == 404 and {"code", "message"} <= set(addon.json())


async def test_timestamps_follow_the_two_families(
    simulator: Simulator, sim_client: httpx.AsyncClient
) -> None:
    body = await get_json(sim_client, project_path(simulator, "/clusters"))
    stamps = [i["metadata"]["creationTimestamp"] for i in body["items"]]
    assert all(s.endswith(" +0000 UTC") for s in stamps)
    digits = {len(s.split(" ")[1].partition(".")[2]) for s in stamps}
    assert len(digits) >= 3  # trailing zeros trimmed: the fraction length varies
    cid = body["items"][0]["metadata"]["uid"]
    addons = await get_json(sim_client, "/api/v3/addons", params={"cluster_id": cid})
    assert all(a["metadata"]["creationTimestamp"].endswith("Z") for a in addons["items"])


# --- determinism and coverage --------------------------------------------------------------------


def _snapshot(seed: int) -> list[bytes]:
    sim = Simulator(
        SimulatorConfig(
            clusters=20, nodes_per_cluster=5, seed=seed, clock_start=1.7e9, clock_frozen=True
        )
    )
    world = sim.world
    out = [world.cluster_list_bytes(), world.quotas_bytes(), world.addontemplates_bytes()]
    for uid in world.clusters:
        out += [
            world.cluster_bytes(uid, detail=True, error_status=False),
            world.node_list_bytes(uid),
            world.nodepool_list_bytes(uid, show_default=True),
            world.addon_list_bytes(uid),
        ]
    out += [world.job_bytes(uid) for uid in sorted(world.jobs)]
    out.append(repr(sorted(vars(sim.credentials).items())).encode())
    return out


def test_same_seed_same_bytes() -> None:
    first, second = _snapshot(4), _snapshot(4)
    assert first == second
    assert _snapshot(5) != first


async def test_every_phase_and_status_is_present(
    simulator: Simulator, sim_client: httpx.AsyncClient
) -> None:
    phases = await clusters_by_phase(sim_client, simulator)
    assert set(phases) == set(models.CLUSTER_PHASES)
    assert len(phases["Available"]) > 15  # most clusters are fine
    masked = await get_json(sim_client, project_path(simulator, "/clusters"))
    assert "Error" not in {i["status"]["phase"] for i in masked["items"]}

    node_phases: set[str] = set()
    pool_phases: set[str] = set()
    addon_statuses: set[str] = set()
    job_ids: set[str] = set()
    for cluster in masked["items"]:
        cid = cluster["metadata"]["uid"]
        if "jobID" in cluster["status"]:
            job_ids.add(cluster["status"]["jobID"])
        nodes = await get_json(sim_client, project_path(simulator, f"/clusters/{cid}/nodes"))
        for node in nodes["items"]:
            node_phases.add(node["status"]["phase"])
            if "jobID" in node["status"]:
                job_ids.add(node["status"]["jobID"])
        pools = await sim_client.get(
            project_path(simulator, f"/clusters/{cid}/nodepools"),
            params={"showDefaultNodePool": "true"},
        )
        pool_phases |= {p.phase for p in parse_response(models.NodePoolList, pools.content).items}
        addons = await get_json(sim_client, "/api/v3/addons", params={"cluster_id": cid})
        addon_statuses |= {a["status"]["status"] for a in addons["items"]}
    assert node_phases == set(models.NODE_PHASES)
    assert pool_phases == set(models.NODEPOOL_PHASES)
    assert addon_statuses == set(models.ADDON_STATUSES)

    async def job_phases() -> set[str]:
        seen = set()
        for job_id in job_ids:
            body = await sim_client.get(project_path(simulator, f"/jobs/{job_id}"))
            seen.add(parse_response(models.Job, body.content).phase)
        return seen

    assert await job_phases() == {"Initializing", "Running"}
    simulator.advance(3600)
    # An hour on, the jobs are done (some failed) except the stuck one.
    assert await job_phases() == {"Running", "Success", "Failed"}


async def test_quota_near_and_at_limit(simulator: Simulator, sim_client: httpx.AsyncClient) -> None:
    body = await get_json(sim_client, project_path(simulator, "/quotas"))
    ratios = [q["used"] / q["quotaLimit"] for q in body["quotas"] if q["quotaLimit"]]
    assert any(r == 1 for r in ratios)
    assert any(0.85 < r < 1 for r in ratios)


@pytest.mark.simulator(clusters=18)
async def test_eighteen_clusters_is_eighteen_of_twenty(
    simulator: Simulator, sim_client: httpx.AsyncClient
) -> None:
    body = await get_json(sim_client, project_path(simulator, "/quotas"))
    cluster_quota = next(q for q in body["quotas"] if q["quotaKey"] == "cluster")
    assert (cluster_quota["used"], cluster_quota["quotaLimit"]) == (18, 20)


# --- time: jobs ----------------------------------------------------------------------------------


async def test_jobs_move_with_the_clock(
    simulator: Simulator, sim_client: httpx.AsyncClient
) -> None:
    phases = await clusters_by_phase(sim_client, simulator)
    creating = phases["Creating"][0]
    status = await cluster_status(sim_client, simulator, creating)
    job_path = project_path(simulator, f"/jobs/{status['jobID']}")
    job = parse_response(models.Job, (await sim_client.get(job_path)).content)
    assert job.phase in ("Initializing", "Running") and job.spec.type == "CreateCluster"
    assert len(job.spec.sub_jobs) == 3 and not job.finished

    simulator.advance(3600)
    job = parse_response(models.Job, (await sim_client.get(job_path)).content)
    assert job.phase == "Success" and all(s.phase == "Success" for s in job.spec.sub_jobs)
    status = await cluster_status(sim_client, simulator, creating)
    assert status["phase"] == "Available" and "jobID" not in status

    # The stuck upgrade is still running an hour later, and hours after it began.
    upgrading = phases["Upgrading"][0]
    stuck = await cluster_status(sim_client, simulator, upgrading)
    stuck_job = parse_response(
        models.Job,
        (await sim_client.get(project_path(simulator, f"/jobs/{stuck['jobID']}"))).content,
    )
    assert stuck_job.phase == "Running"
    created = stuck_job.metadata.creation_timestamp
    assert created is not None
    assert datetime.fromtimestamp(simulator.clock.now(), UTC) - created > timedelta(hours=3)


async def test_a_failing_job_reports_its_failed_sub_job(
    simulator: Simulator, sim_client: httpx.AsyncClient
) -> None:
    scaling_down = (await clusters_by_phase(sim_client, simulator))["ScalingDown"][0]
    job_id = (await cluster_status(sim_client, simulator, scaling_down))["jobID"]
    simulator.advance(3600)
    job = parse_response(
        models.Job, (await sim_client.get(project_path(simulator, f"/jobs/{job_id}"))).content
    )
    assert job.phase == "Failed" and job.status.reason
    assert [s.spec.type for s in job.failed_sub_jobs] == ["ScaleMaster"]


# --- time: hibernation ---------------------------------------------------------------------------


@pytest.mark.simulator(transition_seconds=120)
async def test_hibernate_and_awake(simulator: Simulator, sim_client: httpx.AsyncClient) -> None:
    cid = (await clusters_by_phase(sim_client, simulator))["Available"][0]
    op = project_path(simulator, f"/clusters/{cid}/operation")

    hibernate = await sim_client.post(f"{op}/hibernate")
    assert hibernate.status_code == 200 and hibernate.content == b""
    assert (await cluster_status(sim_client, simulator, cid))["phase"] == "Hibernating"
    again = await sim_client.post(f"{op}/hibernate")
    assert again.status_code == 400 and again.json()["error_code"].startswith("CCE.01400")
    simulator.advance(119)
    assert (await cluster_status(sim_client, simulator, cid))["phase"] == "Hibernating"
    simulator.advance(1)
    assert (await cluster_status(sim_client, simulator, cid))["phase"] == "Hibernation"

    awake = await sim_client.post(f"{op}/awake")
    assert awake.status_code == 200 and awake.content == b""
    assert (await cluster_status(sim_client, simulator, cid))["phase"] == "Awaking"
    simulator.advance(120)
    assert (await cluster_status(sim_client, simulator, cid))["phase"] == "Available"
    wrong = await sim_client.post(f"{op}/awake")
    assert wrong.status_code == 400
    assert set(wrong.json()) == {"error_code", "error_msg"}


async def test_injected_wakeup_failure_returns_to_hibernation(
    simulator: Simulator, sim_client: httpx.AsyncClient
) -> None:
    cid = (await clusters_by_phase(sim_client, simulator))["Hibernation"][0]
    control = await sim_client.post(f"/_sim/clusters/{cid}/fail-next-wakeup")
    assert control.status_code == 200
    op = project_path(simulator, f"/clusters/{cid}/operation/awake")
    assert (await sim_client.post(op)).status_code == 200
    assert (await cluster_status(sim_client, simulator, cid))["phase"] == "Awaking"
    simulator.advance(60)
    status = await cluster_status(sim_client, simulator, cid)
    assert status["phase"] == "Hibernation"
    assert status["reason"] == "AwakeFailed" and "insufficient" in status["message"]
    assert simulator.state()["world"]["wakeup_failures"] == 1
    # Only the next wake-up fails.
    assert (await sim_client.post(op)).status_code == 200
    simulator.advance(60)
    assert (await cluster_status(sim_client, simulator, cid))["phase"] == "Available"


# --- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_each_fault_kind_is_observable(
    kind: str, simulator: Simulator, sim_client: httpx.AsyncClient
) -> None:
    path = project_path(simulator, "/clusters")
    rule: dict[str, Any] = {"kind": kind, "count": 1, "path": "/clusters$"}
    rule |= {"latency_ms": 300, "hang_seconds": 30, "retry_after": 7}
    added = await sim_client.post("/_sim/faults", json=rule)
    assert added.status_code == 201, added.text
    # The control API is never faulted, and does not use up the rule.
    assert (await sim_client.get("/_sim/state")).json()["faults"]["injected"] == {}

    started = time.monotonic()
    if kind == "hang":
        with pytest.raises(httpx.ReadTimeout):
            await sim_client.get(path, timeout=0.5)
    else:
        response = await sim_client.get(path)
        elapsed = time.monotonic() - started
        if kind == "latency":
            assert response.status_code == 200 and elapsed >= 0.3
        elif kind == "http_429":
            assert response.status_code == 429 and response.headers["Retry-After"] == "7"
        elif kind.startswith("http_"):
            assert response.status_code == int(kind[5:])
            assert "error_code" in response.json()
        elif kind in ("malformed_json", "truncated_json"):
            assert response.status_code == 200
            with pytest.raises(ResponseParseError):
                parse_response(models.ClusterList, response.content)
        else:
            assert response.status_code == 401
            assert response.json()["error_code"] == "APIGW.0307"
    state = (await sim_client.get("/_sim/state")).json()["faults"]
    assert state["injected"] == {kind: 1} and state["rules"] == []
    # The next request is served normally again.
    assert (await sim_client.get(path)).status_code == 200


@pytest.mark.simulator(fault_rate=1.0, hang_seconds=0.2)
async def test_global_fault_rate_hits_every_api_request(
    simulator: Simulator, sim_client: httpx.AsyncClient
) -> None:
    for _ in range(20):
        try:
            response = await sim_client.get(project_path(simulator, "/clusters"), timeout=5)
        except httpx.HTTPError:
            continue
        assert response.status_code != 200 or response.content  # never a silent success
    state = (await sim_client.get("/_sim/state")).json()
    assert state["faults"]["injected_total"] == 20
    assert len(state["faults"]["injected"]) > 3
    cleared = await sim_client.delete("/_sim/faults")
    assert cleared.json()["rate"] == 0.0
    assert (await sim_client.get(project_path(simulator, "/clusters"))).status_code == 200


async def test_fault_rule_by_rate_and_path(
    simulator: Simulator, sim_client: httpx.AsyncClient
) -> None:
    await sim_client.post("/_sim/faults", json={"kind": "http_503", "rate": 1.0, "path": "/quotas"})
    assert (await sim_client.get(project_path(simulator, "/quotas"))).status_code == 503
    assert (await sim_client.get(project_path(simulator, "/quotas"))).status_code == 503
    assert (await sim_client.get(project_path(simulator, "/clusters"))).status_code == 200
    bad = await sim_client.post("/_sim/faults", json={"kind": "nope", "count": 1})
    assert bad.status_code == 400


# --- control API ---------------------------------------------------------------------------------


async def test_control_api_mutations_show_in_listings(
    simulator: Simulator, sim_client: httpx.AsyncClient
) -> None:
    added = await sim_client.post("/_sim/clusters", json={"name": "added-by-test", "nodes": 3})
    assert added.status_code == 201
    cid = added.json()["uid"]
    listing = await get_json(sim_client, project_path(simulator, "/clusters"))
    assert "added-by-test" in {i["metadata"]["name"] for i in listing["items"]}
    nodes_path = project_path(simulator, f"/clusters/{cid}/nodes")
    nodes = (await get_json(sim_client, nodes_path))["items"]
    assert len(nodes) == 3

    more = await sim_client.post(
        f"/_sim/clusters/{cid}/nodes", json={"count": 2, "phase": "Abnormal"}
    )
    assert len(more.json()["uids"]) == 2
    nodes = (await get_json(sim_client, nodes_path))["items"]
    assert sorted(n["status"]["phase"] for n in nodes) == ["Abnormal"] * 2 + ["Active"] * 3
    gone = nodes[0]["metadata"]["uid"]
    assert (await sim_client.delete(f"/_sim/clusters/{cid}/nodes/{gone}")).status_code == 200
    assert gone not in {
        n["metadata"]["uid"] for n in (await get_json(sim_client, nodes_path))["items"]
    }

    target = nodes[1]["metadata"]["uid"]
    await sim_client.post("/_sim/phase", json={"kind": "node", "id": target, "phase": "ShutDown"})
    node = await get_json(sim_client, f"{nodes_path}/{target}")
    assert node["status"]["phase"] == "ShutDown"

    await sim_client.post("/_sim/phase", json={"kind": "cluster", "id": cid, "phase": "Upgrading"})
    assert (await cluster_status(sim_client, simulator, cid))["phase"] == "Upgrading"

    pools_path = project_path(simulator, f"/clusters/{cid}/nodepools")
    pools = (await get_json(sim_client, pools_path))["items"]
    index = 0
    await sim_client.post(
        "/_sim/phase",
        json={"kind": "nodepool", "id": pools[index]["metadata"]["uid"], "phase": "Normal"},
    )
    assert (await get_json(sim_client, pools_path))["items"][index]["status"]["phase"] == ""
    await sim_client.post(
        "/_sim/phase",
        json={"kind": "nodepool", "id": pools[index]["metadata"]["uid"], "phase": "SoldOut"},
    )
    assert (await get_json(sim_client, pools_path))["items"][index]["status"]["phase"] == "SoldOut"

    addons = await get_json(sim_client, "/api/v3/addons", params={"cluster_id": cid})
    addon_id = addons["items"][0]["metadata"]["uid"]
    await sim_client.post(
        "/_sim/phase", json={"kind": "addon", "id": addon_id, "phase": "abnormal"}
    )
    addon = await get_json(sim_client, f"/api/v3/addons/{addon_id}", params={"cluster_id": cid})
    assert addon["status"]["status"] == "abnormal"

    state = (await sim_client.get("/_sim/state")).json()
    assert state["world"]["clusters"] == 31
    assert (await sim_client.delete(f"/_sim/clusters/{cid}")).status_code == 200
    assert (await sim_client.get(project_path(simulator, f"/clusters/{cid}"))).status_code == 404
    unknown = await sim_client.post(
        "/_sim/phase", json={"kind": "node", "id": "nope", "phase": "x"}
    )
    assert unknown.status_code == 404


async def test_clock_advance_through_control_api(
    simulator: Simulator, sim_client: httpx.AsyncClient
) -> None:
    before = simulator.clock.now()
    response = await sim_client.post("/_sim/clock/advance", json={"seconds": 7200})
    assert response.status_code == 200
    assert simulator.clock.now() - before >= 7200
    assert (await sim_client.get("/_sim/state")).json()["clock_offset_seconds"] == 7200
    assert (await sim_client.post("/_sim/clock/advance", json={"seconds": -1})).status_code == 400


async def test_in_process_api_accepts_keyword_overrides() -> None:
    async with (
        running_simulator(clusters=2, nodes_per_cluster=1, seed=11) as sim,
        signed_client(sim, timeout=10) as client,
    ):
        body = await get_json(client, project_path(sim, "/clusters"))
    assert len(body["items"]) == 2
    assert sim.config.seed == 11
    assert "sk=" not in repr(sim.credentials).lower()


async def test_node_lists_follow_the_clock_and_mutations(
    simulator: Simulator, sim_client: httpx.AsyncClient
) -> None:
    """The cached node-list bytes change exactly when a transition instant passes or state moves."""
    by_phase: dict[str, list[tuple[str, str]]] = {}
    for cid in (await clusters_by_phase(sim_client, simulator))["Available"]:
        nodes = await get_json(sim_client, project_path(simulator, f"/clusters/{cid}/nodes"))
        for node in nodes["items"]:
            by_phase.setdefault(node["status"]["phase"], []).append((cid, node["metadata"]["uid"]))
    build_cluster, build_node = by_phase["Build"][0]
    deleting_cluster, deleting_node = by_phase["Deleting"][0]
    path = project_path(simulator, f"/clusters/{build_cluster}/nodes")
    first = (await sim_client.get(path)).content
    assert (await sim_client.get(path)).content == first
    build = await get_json(sim_client, f"{path}/{build_node}")
    assert build["status"]["jobID"]

    simulator.advance(3600)
    later = await get_json(sim_client, f"{path}/{build_node}")
    assert later["status"]["phase"] in ("Active", "Error") and "jobID" not in later["status"]
    assert (await sim_client.get(path)).content != first
    gone = await sim_client.get(
        project_path(simulator, f"/clusters/{deleting_cluster}/nodes/{deleting_node}")
    )
    assert gone.status_code == 404

    before = (await sim_client.get(path)).content
    await sim_client.post(f"/_sim/clusters/{build_cluster}/nodes", json={"count": 1})
    assert len((await sim_client.get(path)).content) > len(before)
