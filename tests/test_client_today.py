"""The client on today's API: node paging, camel-case error bodies, both add-on layouts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from exporter.cce.client import MAX_NODE_PAGES, NODES, CCEClient
from exporter.cce.errors import APIError, NotFound, PagingError
from exporter.cce.instrumentation import ApiMetrics
from exporter.cce.models import flavor_max_nodes
from exporter.simulator import Simulator
from tests.conftest import SignAuth

BASE = "https://cce.test.invalid"
PROJECT = "proj-0a1b2c"
CLUSTER_ID = "c0ffee00-5539-11e9-95f7-0255ac10177e"


def json_response(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode())


def mock_client(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> CCEClient:
    return CCEClient(
        BASE,
        httpx.Auth(),
        PROJECT,
        transport=httpx.MockTransport(handler),
        max_retries=0,
        **kwargs,
    )


def sim_client(sim: Simulator, **kwargs: Any) -> CCEClient:
    return CCEClient(
        sim.base_url,
        SignAuth(sim.settings["CCE_EXPORTER_AK"], sim.settings["CCE_EXPORTER_SK"]),
        sim.credentials.project_id,
        timeout=10,
        **kwargs,
    )


def node(uid: str) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "name": uid}, "status": {"phase": "Active"}}


# --- paging ---------------------------------------------------------------------------------


@pytest.mark.simulator(clusters=1, nodes_per_cluster=0, seed=4)
async def test_4500_nodes_paged_at_2000_are_collected_whole(simulator: Simulator) -> None:
    world = simulator.world
    cid = next(iter(world.clusters))
    world.add_nodes(cid, 4500, phase="Active")
    assert world.node_page_max == 2000
    metrics = ApiMetrics(__import__("prometheus_client").CollectorRegistry())
    async with sim_client(simulator, metrics=metrics) as client:
        summaries = await client.list_node_summaries(cid)
        nodes = await client.list_nodes(cid)
    assert len(summaries) == 4500
    assert {n.id for n in summaries} == set(world.clusters[cid].nodes)
    assert [n.id for n in nodes] == [n.id for n in summaries]
    assert all(n.last_probe is not None for n in summaries)
    # Three pages each: the paging added requests only because the list is big.
    assert simulator.app.requests["nodes"] == 6
    requests = metrics.registry.get_sample_value(
        "cce_exporter_api_requests_total", {"endpoint": NODES, "method": "GET", "code": "200"}
    )
    assert requests == 6


@pytest.mark.simulator(clusters=2, nodes_per_cluster=30, seed=4)
async def test_a_list_of_one_page_costs_one_request(simulator: Simulator) -> None:
    async with sim_client(simulator) as client:
        for cid in simulator.world.clusters:
            await client.list_node_summaries(cid)
    assert simulator.app.requests["nodes"] == 2


@pytest.mark.simulator(clusters=1, nodes_per_cluster=0, seed=4)
async def test_a_smaller_server_page_is_followed_too(simulator: Simulator) -> None:
    world = simulator.world
    cid = next(iter(world.clusters))
    world.add_nodes(cid, 25, phase="Active")
    world.node_page_max = 4
    async with sim_client(simulator) as client:
        assert len(await client.list_node_summaries(cid)) == 25
    assert simulator.app.requests["nodes"] == 7


async def test_a_repeating_marker_stops_with_an_error() -> None:
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        marker = request.url.params.get("marker")
        asked.append(marker)
        # A broken server: the second page points back at itself.
        return json_response(
            200, {"items": [node(f"n-{len(asked)}")], "pageInfo": {"nextMarker": "m-1"}}
        )

    async with mock_client(handler) as client:
        with pytest.raises(PagingError, match="repeated"):
            await client.list_node_summaries(CLUSTER_ID)
        with pytest.raises(PagingError, match="repeated"):
            await client.list_nodes(CLUSTER_ID)
    assert asked == [None, "m-1", None, "m-1"]


async def test_the_page_cap_stops_an_endless_list() -> None:
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        return json_response(
            200, {"items": [node(f"n-{count}")], "pageInfo": {"nextMarker": f"m-{count}"}}
        )

    async with mock_client(handler) as client:
        with pytest.raises(PagingError, match="pages"):
            await client.list_node_summaries(CLUSTER_ID)
    assert count == MAX_NODE_PAGES


@pytest.mark.parametrize(
    "page_info",
    [{"nextMarker": ""}, {"nextMarker": " "}, {"nextMarker": None}, "x", None, {"currentCount": 2}],
    ids=repr,
)
async def test_odd_page_info_ends_the_list(page_info: object) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return json_response(200, {"items": [node("a"), node("b")], "pageInfo": page_info})

    async with mock_client(handler) as client:
        assert [n.id for n in await client.list_node_summaries(CLUSTER_ID)] == ["a", "b"]
        assert [n.id for n in await client.list_nodes(CLUSTER_ID)] == ["a", "b"]
    assert calls == 2


# --- errors and flavors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"errorCode": "CCE.01400001", "errorMessage": "bad marker"},
        {"errorCode": "CCE.01400001", "errorMsg": "bad marker"},
        {"error_code": "CCE.01400001", "error_msg": "bad marker"},
        {"code": "CCE.01400001", "message": "bad marker", "error_code": "CCE.01400001"},
    ],
    ids=lambda b: ",".join(b),
)
async def test_every_error_body_shape_gives_code_and_message(body: dict[str, str]) -> None:
    async with mock_client(lambda request: json_response(400, body)) as client:
        with pytest.raises(APIError) as caught:
            await client.list_node_summaries(CLUSTER_ID)
    assert (caught.value.code, caught.value.message) == ("CCE.01400001", "bad marker")


@pytest.mark.simulator(clusters=1, nodes_per_cluster=2, seed=4)
async def test_the_simulators_camel_case_errors_are_read(simulator: Simulator) -> None:
    simulator.world.features["upgradeinfo"] = False
    cid = next(iter(simulator.world.clusters))
    async with sim_client(simulator) as client:
        with pytest.raises(NotFound) as caught:
            await client.get_upgrade_targets(cid)
    assert caught.value.code == "CCE.01404001"


@pytest.mark.parametrize(
    ("flavor", "limit"),
    [
        ("cce.s3.small", 50),
        ("cce.s3.xlarge", 2000),
        ("cce.dec.s3.large", 1000),
        ("cce.dec.s1.xlarge", 2000),
        ("cce.s2.xlarge", 2000),
        ("cce.s9.small", None),
    ],
)
def test_the_sdks_flavor_table(flavor: str, limit: int | None) -> None:
    assert flavor_max_nodes(flavor) == limit


# --- add-on layouts -------------------------------------------------------------------------


async def test_the_plain_layout_is_tried_first_and_remembered() -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.url.params.get("cluster_id", "")))
        return json_response(200, {"items": []})

    async with mock_client(handler) as client:
        await client.list_addons(CLUSTER_ID)
        await client.list_addons("other-cluster")
    assert seen == [("cce.test.invalid", CLUSTER_ID), ("cce.test.invalid", "other-cluster")]


async def test_a_connection_error_on_the_plain_layout_falls_back() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == "cce.test.invalid":
            raise httpx.ConnectError("refused", request=request)
        return json_response(200, {"items": [{"metadata": {"uid": "a1"}}]})

    async with mock_client(handler) as client:
        assert [a.id for a in await client.list_addons(CLUSTER_ID)] == ["a1"]
        await client.list_addons(CLUSTER_ID)
    on_host = f"{CLUSTER_ID}.cce.test.invalid"
    assert seen == ["cce.test.invalid", on_host, on_host]


async def test_when_neither_layout_answers_nothing_is_remembered() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        return json_response(404, {"code": "SVCSTG.CCE-ADDONMGR.4040000", "message": "no"})

    async with mock_client(handler) as client:
        for _ in range(2):
            with pytest.raises(NotFound):
                await client.list_addons(CLUSTER_ID)
    on_host = f"{CLUSTER_ID}.cce.test.invalid"
    assert seen == ["cce.test.invalid", on_host, "cce.test.invalid", on_host]


async def test_an_explicit_addon_endpoint_wins() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        return json_response(404, {"code": "X", "message": "no"})

    async with mock_client(handler, addon_endpoint="https://addons.test.invalid") as client:
        with pytest.raises(NotFound):
            await client.list_addons(CLUSTER_ID)
    assert seen == ["addons.test.invalid"]


@pytest.mark.simulator(clusters=2, nodes_per_cluster=1, seed=4)
async def test_the_simulators_plain_layout_works_out_of_the_box(simulator: Simulator) -> None:
    cid = next(iter(simulator.world.clusters))
    async with sim_client(simulator) as client:
        addons = await client.list_addons(cid)
    assert {a.id for a in addons} == set(simulator.world.clusters[cid].addons)


# --- hostile answers ----------------------------------------------------------------------------


def test_hostile_todays_fields_parse_and_render_bounded() -> None:
    from exporter.cce.models import ClusterList, NodePoolList, parse_node_page, parse_response
    from exporter.metrics import TargetData, assemble, render_group
    from exporter.metrics.clusters import MAX_PER_OBJECT

    many = [
        {"type": f"T{i}", "status": "True", "reason": "r" * 500 if i % 2 else f"R{i}"}
        for i in range(200)
    ]
    clusters = parse_response(
        ClusterList,
        json.dumps(
            {
                "items": [
                    {
                        "metadata": {"uid": "c1", "name": "one"},
                        "spec": {
                            "masters": [1, "x", {"availabilityZone": ["a"]}, {}],
                            "billingMode": "yearly",
                            "extendParam": {"clusterAZ": {"odd": 1}},
                        },
                        "status": {
                            "phase": "Available",
                            "isLocked": "true",
                            "lockScene": 'quote " and\nnewline',
                            "conditions": [*many, 7, None, {"type": None}, {"type": {"a": 1}}],
                        },
                    }
                ]
            }
        ),
    ).items
    pools = parse_response(
        NodePoolList,
        json.dumps(
            {
                "items": [
                    {
                        "metadata": {"uid": "p1"},
                        "status": {
                            "activeNode": "3",
                            "creatingNode": -1,
                            "repairFailedNode": {"x": 1},
                            "conditions": {"type": "Scalable", "status": "FALSE"},
                            "scaleGroupStatuses": [
                                {"name": f"g{i}", "desiredNodeCount": i, "existingNodeCount": 5}
                                for i in range(100)
                            ],
                        },
                    }
                ]
            }
        ),
    ).items
    nodes, marker = parse_node_page(
        json.dumps(
            {
                "items": [
                    {
                        "metadata": {"uid": "n1"},
                        "status": {"lastProbeTime": "yesterday", "configurationUpToDate": "no"},
                    }
                ],
                "pageInfo": {"nextMarker": ["m"]},
            }
        )
    )
    assert nodes[0].last_probe is None and nodes[0].configuration_up_to_date is False
    assert marker is None
    target = TargetData(
        project_id="p",
        labels={},
        clusters=clusters,
        nodes={"c1": nodes},
        nodepools={"c1": pools},
        addons={},
        jobs=[],
        quotas=[],
        phase_since={},
        health=[],
        upgrades={"c1": [f"v{i}" for i in range(500)] + ["not a version!"]},
    )
    groups = ("clusters", "nodepools", "nodes")
    exposition = assemble(
        [render_group(g, [target], now=0.0, state_sets="all") for g in groups], []
    )
    lines = exposition.text.decode().splitlines()

    def count(prefix: str) -> int:
        return sum(1 for line in lines if line.startswith(prefix + "{"))

    assert count("cce_cluster_status_condition_reason") == MAX_PER_OBJECT
    assert count("cce_cluster_upgrade_target_info") == MAX_PER_OBJECT
    assert count("cce_nodepool_scalegroup_nodes") <= 3 * MAX_PER_OBJECT
    joined = "\n".join(lines)
    assert 'reason="other"' in joined and "r" * 100 not in joined
    assert 'condition="Scalable",status="false"} 1' in joined
    assert 'lock_scene="other"' in joined  # free text never becomes a label value


@pytest.mark.simulator(clusters=3, nodes_per_cluster=4, seed=4)
async def test_a_node_list_that_never_ends_is_a_counted_error_and_keeps_the_last_list(
    simulator: Simulator,
) -> None:
    from tests.test_e2e_exporter import control, running_exporter, sim_env

    async with running_exporter(sim_env(simulator)) as exporter:
        assert await exporter.collect("clusters")
        assert await exporter.collect("nodes")
        before = await exporter.scrape()
        nodes = len(before.values("cce_node_info"))
        assert nodes > 0
        rule = {"kind": "marker_loop", "rate": 1.0, "path": "/nodes$"}
        await control(simulator, "POST", "/_sim/faults", rule)
        assert not await exporter.collect("nodes")
        after = await exporter.scrape()
    errors = after.family("cce_exporter_collect_errors")
    assert any(dict(labels).get("error") == "PagingError" for _, labels in errors), errors
    assert len(after.values("cce_node_info")) == nodes  # the last good lists are kept
    assert simulator.faults.injected["marker_loop"] >= 2


@pytest.mark.simulator(clusters=3, nodes_per_cluster=1, seed=4)
async def test_the_exporter_finds_the_addons_without_an_addon_endpoint(
    simulator: Simulator,
) -> None:
    from exporter.collect.target import SKIP_PHASES
    from tests.test_e2e_exporter import running_exporter, sim_env

    env = sim_env(simulator)
    del env["CCE_EXPORTER_ADDON_ENDPOINT"]
    async with running_exporter(env) as exporter:
        client = exporter.service.targets[0].client
        assert client.addon_endpoint is None  # not configured: both layouts are tried
        assert await exporter.collect("clusters")
        assert await exporter.collect("addons")
        scrape = await exporter.scrape()
        listed = exporter.service.targets[0].collector.state.clusters
    asked = {c.id for c in listed if c.phase not in SKIP_PHASES["addons"]}
    expected = {a for uid in asked for a in simulator.world.clusters[uid or ""].addons}
    assert expected
    assert scrape.label_values("cce_addon_info", "addon_id") == expected
