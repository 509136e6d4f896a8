"""Huawei's official SDK (``huaweicloudsdkcce``) judges the simulator.

The SDK's ``CceClient`` (v3) makes every read the exporter makes, and hibernate/awake, against the
simulator; each answer is deserialised by the SDK (a type it cannot convert warns, and warnings
fail the tests) and checked strictly against the SDK's models here:

* a key no SDK model documents is a problem (``attribute_map``),
* a value of another JSON type than the model's ``openapi_types`` says is a problem,
* a required field that is missing is a problem: the Python SDK does not mark required fields, so
  ``tests/fixtures/sdk-cce-required.json`` lists them as the SDK's Go models do (a field without
  ``omitempty``; the file names the commit it was read from),
* a value outside the enumeration a field's SDK documentation gives is a problem.

What only the Huawei Cloud Stack reference has is allowed below, each entry with its source.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest

huaweicloudsdkcce = pytest.importorskip("huaweicloudsdkcce")

from huaweicloudsdkcce.v3 import (  # noqa: E402
    AwakeClusterRequest,
    CceClient,
    HibernateClusterRequest,
    ListAddonInstancesRequest,
    ListAddonTemplatesRequest,
    ListClustersRequest,
    ListNodePoolsRequest,
    ListNodesRequest,
    ShowClusterRequest,
    ShowClusterUpgradeInfoRequest,
    ShowJobRequest,
    ShowQuotasRequest,
)
from huaweicloudsdkcce.v3 import model as sdk_model  # noqa: E402
from huaweicloudsdkcore.auth.credentials import BasicCredentials  # noqa: E402
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException  # noqa: E402
from huaweicloudsdkcore.http.http_config import HttpConfig  # noqa: E402

from exporter.simulator import Simulator  # noqa: E402

REQUIRED_FILE = Path(__file__).resolve().parent / "fixtures" / "sdk-cce-required.json"

#: Values the SDK does not document but the Huawei Cloud Stack 8.1.1 reference does:
#: (SDK model, JSON key) -> {value: source}.
STACK_ONLY_VALUES: dict[tuple[str, str], dict[str, str]] = {
    ("NodeStatus", "phase"): {
        "Installed": "HCS 8.1.1 reference, node status (phase Installed)",
        "ShutDown": "HCS 8.1.1 reference, node status (phase ShutDown)",
    },
    ("AddonInstanceStatus", "status"): {
        "unavailable": "HCS 8.1.1 reference, add-on instance status (unavailable)",
    },
}
#: Keys the SDK's model does not have but the Stack reference sends: (SDK model, key) -> source.
STACK_ONLY_KEYS: dict[tuple[str, str], str] = {
    ("NodeStatus", "reason"): "HCS 8.1.1 reference, node status: reason of an abnormal node",
    ("NodeStatus", "message"): "HCS 8.1.1 reference, node status: message of an abnormal node",
    ("NodeTemplate", "extendParam"): "HCS 8.1.1 reference example: a free-form template param",
}
#: Required fields that may be missing: (SDK model, key) -> why, with a predicate on the object.
OPTIONAL_AFTER_ALL: dict[tuple[str, str], tuple[str, Callable[[dict[str, Any]], bool]]] = {
    ("ClusterSpec", "eniNetwork"): (
        "required for CCE Turbo clusters only (SDK ClusterSpec.eni_network)",
        lambda obj: obj.get("category") != "Turbo",
    ),
    ("Volume", "size"): (
        "the default node pool's template has an empty rootVolume (HCS 8.1.1 reference example)",
        lambda obj: obj == {},
    ),
    ("Volume", "volumetype"): (
        "the default node pool's template has an empty rootVolume (HCS 8.1.1 reference example)",
        lambda obj: obj == {},
    ),
}
#: Fields whose SDK documentation enumerates their values: (SDK model, attribute).
ENUMERATED: tuple[tuple[str, str], ...] = (
    ("ClusterStatus", "phase"),
    ("ClusterSpec", "category"),
    ("ClusterSpec", "type"),
    ("ClusterSpec", "flavor"),
    ("ClusterCondition", "type"),
    ("ClusterCondition", "status"),
    ("NodeStatus", "phase"),
    ("NodePoolStatus", "phase"),
    ("NodePoolCondition", "type"),
    ("NodePoolCondition", "status"),
    ("ScaleGroupStatus", "phase"),
    ("AddonInstanceStatus", "status"),
    ("JobStatus", "phase"),
)
#: ClusterCondition.reason is enumerated for the certificate condition types only.
CERTIFICATE_CONDITIONS = frozenset(
    {"ClusterCertificate", "ClusterCustomCertificate", "CertificateRotation"}
)


@cache
def required_fields() -> dict[str, list[str]]:
    data = json.loads(REQUIRED_FILE.read_text())
    assert "huaweicloud-sdk-go-v3@" in data["source"]
    required: dict[str, list[str]] = data["required"]
    return required


#: ``- Value`` then a colon (either width), quoted or not, or ``- [Value: ...](tag:...)``.
_VALUE = re.compile(
    r"-\s*\[?(?:\\?&quot;|\\?\")?([A-Za-z][A-Za-z0-9_.]*)(?:\\?&quot;|\\?\")?(?=\s*[:\uff1a]|\s|$)"
)


@cache
def documented_values(model: str, attribute: str) -> frozenset[str]:
    """The values the SDK's documentation of ``model.attribute`` lists (``- Value: meaning``)."""
    cls = getattr(sdk_model, model)
    doc = getattr(cls, attribute).__doc__ or ""
    values = set(_VALUE.findall(doc))
    if "空值" in doc:  # "empty value": the normal state of a node pool or scale group
        values.add("")
    return frozenset(values)


def _inner(type_name: str) -> str:
    return type_name


def check(value: Any, type_name: str, where: str, problems: list[str]) -> None:
    """Append to ``problems`` what the SDK's type ``type_name`` refuses in ``value``."""
    if value is None:
        return
    if type_name.startswith("list["):
        if not isinstance(value, list):
            problems.append(f"{where}: {type(value).__name__} where the SDK has {type_name}")
            return
        for i, item in enumerate(value):
            check(item, type_name[5:-1], f"{where}[{i}]", problems)
        return
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            problems.append(f"{where}: {type(value).__name__} where the SDK has {type_name}")
            return
        inner = re.match(r"dict\(([^,]*), (.*)\)", type_name)
        assert inner is not None
        for key, item in value.items():
            check(item, inner.group(2), f"{where}.{key}", problems)
        return
    primitive = {"str": str, "int": int, "bool": bool, "float": (int, float)}
    if type_name in primitive:
        ok = isinstance(value, primitive[type_name]) and not (
            type_name in ("int", "float") and isinstance(value, bool)
        )
        if not ok:
            problems.append(f"{where}: {value!r} is not the SDK's {type_name}")
        return
    if type_name in ("object", "datetime", "date"):
        return
    cls = getattr(sdk_model, type_name)
    if not isinstance(value, dict):
        problems.append(f"{where}: {type(value).__name__} where the SDK has {type_name}")
        return
    by_key = {key: attr for attr, key in cls.attribute_map.items()}
    for key in required_fields().get(type_name, []):
        if value.get(key) is None:
            allowed = OPTIONAL_AFTER_ALL.get((type_name, key))
            if allowed is None or not allowed[1](value):
                problems.append(f"{where}: required {type_name}.{key} is missing")
    for key, item in value.items():
        attr = by_key.get(key)
        if attr is None:
            if (type_name, key) not in STACK_ONLY_KEYS:
                problems.append(f"{where}.{key}: no field of the SDK's {type_name}")
            continue
        check(item, cls.openapi_types[attr], f"{where}.{key}", problems)
        if (type_name, attr) in ENUMERATED and isinstance(item, str):
            _check_value(type_name, attr, key, item, f"{where}.{key}", problems)
    if type_name == "ClusterCondition" and value.get("type") in CERTIFICATE_CONDITIONS:
        reason = value.get("reason")
        if reason not in documented_values("ClusterCondition", "reason"):
            problems.append(f"{where}.reason: {reason!r} is not a value the SDK documents")


def _check_value(
    model: str, attr: str, key: str, value: str, where: str, problems: list[str]
) -> None:
    if value in documented_values(model, attr):
        return
    if value in STACK_ONLY_VALUES.get((model, key), {}):
        return
    problems.append(f"{where}: {value!r} is not a value the SDK documents")


def judge(response: Any) -> list[str]:
    """Problems of one SDK response's raw body against the response's own SDK model."""
    if not response.raw_content:
        return []
    problems: list[str] = []
    check(json.loads(response.raw_content), type(response).__name__, "$", problems)
    return problems


# --- driving the SDK --------------------------------------------------------------------------


def sdk_client(sim: Simulator) -> CceClient:
    settings = sim.settings
    config = HttpConfig.get_default_config()
    config.retry_times = 0
    config.timeout = (5, 30)
    credentials = BasicCredentials(
        settings["CCE_EXPORTER_AK"], settings["CCE_EXPORTER_SK"], sim.credentials.project_id
    )
    return (
        CceClient.new_builder()
        .with_http_config(config)
        .with_credentials(credentials)
        .with_endpoints([sim.base_url])
        .build()
    )


async def call(method: Callable[[Any], Any], request: Any) -> Any:
    """An SDK call (blocking, on the requests library) off the loop that serves the simulator."""
    return await asyncio.to_thread(method, request)


async def every_read(sim: Simulator) -> dict[str, list[str]]:
    """Every read the exporter makes, through the SDK: request name -> problems found."""
    client = sdk_client(sim)
    found: dict[str, list[str]] = {}

    def note(name: str, response: Any) -> None:
        problems = judge(response)
        if problems:
            found[name] = problems[:20]

    clusters = await call(
        client.list_clusters, ListClustersRequest(detail="true", status=None, type=None)
    )
    note("ListClusters", clusters)
    assert clusters.items, "the world has clusters"
    job_ids: set[str] = set()
    for cluster in clusters.items:
        cid = cluster.metadata.uid
        if cluster.status.job_id:
            job_ids.add(cluster.status.job_id)
        note(f"ShowCluster {cid}", await call(client.show_cluster, ShowClusterRequest(cid, "true")))
        if cluster.status.phase in ("Creating",):
            continue
        marker = None
        while True:
            nodes = await call(
                client.list_nodes, ListNodesRequest(cluster_id=cid, limit=5, marker=marker)
            )
            note(f"ListNodes {cid}", nodes)
            job_ids |= {n.status.job_id for n in nodes.items or [] if n.status.job_id}
            marker = nodes.page_info.next_marker if nodes.page_info else None
            if not marker:
                break
        note(
            f"ListNodePools {cid}",
            await call(
                client.list_node_pools,
                ListNodePoolsRequest(cluster_id=cid, show_default_node_pool="true"),
            ),
        )
        note(
            f"ListAddonInstances {cid}",
            await call(client.list_addon_instances, ListAddonInstancesRequest(cluster_id=cid)),
        )
        note(
            f"ShowClusterUpgradeInfo {cid}",
            await call(
                client.show_cluster_upgrade_info, ShowClusterUpgradeInfoRequest(cluster_id=cid)
            ),
        )
    for job_id in sorted(job_ids):
        note(f"ShowJob {job_id}", await call(client.show_job, ShowJobRequest(job_id)))
    note("ShowQuotas", await call(client.show_quotas, ShowQuotasRequest()))
    note("ListAddonTemplates", await call(client.list_addon_templates, ListAddonTemplatesRequest()))
    return found


WORLDS = [
    pytest.param({"clusters": 30, "nodes_per_cluster": 6, "seed": 1}, id="test-default"),
    pytest.param({"clusters": 3, "nodes_per_cluster": 2, "seed": 5}, id="small"),
    pytest.param({"clusters": 12, "nodes_per_cluster": 14, "seed": 7}, id="seed-7"),
]


@pytest.mark.parametrize("simulator", WORLDS, indirect=True)
async def test_the_sdk_accepts_every_read_of_every_world(simulator: Simulator) -> None:
    assert await every_read(simulator) == {}


async def test_the_sdk_accepts_every_state_the_control_api_sets(
    simulator: Simulator, sim_client: httpx.AsyncClient
) -> None:
    world = simulator.world
    cluster = next(
        c for c in world.clusters.values() if c.segment(world.now_ns()).phase == "Available"
    )
    cid = cluster.uid
    for certificate in ("CertificateExpiringWithin30Days", "CertificateExpired"):
        body = {"certificate": certificate, "rotation": "RotationFailed"}
        assert (await sim_client.post(f"/_sim/clusters/{cid}/status", json=body)).is_success
    lock = {"lock": {"scene": "ARREAR", "source": "CBC"}, "agency": False}
    assert (await sim_client.post(f"/_sim/clusters/{cid}/status", json=lock)).is_success
    node_id = next(iter(cluster.nodes))
    status = {"probe_age_seconds": 1200, "configuration_up_to_date": False}
    path = f"/_sim/clusters/{cid}/nodes/{node_id}/status"
    assert (await sim_client.post(path, json=status)).is_success
    for phase in ("Repairing", "RepairFailed"):
        body = {"kind": "node", "id": node_id, "phase": phase}
        assert (await sim_client.post("/_sim/phase", json=body)).is_success
    pool_id = next(p.uid for p in cluster.pools.values() if not p.default)
    conditions = {"conditions": [{"type": "LockedByOrder", "status": "True", "reason": "order"}]}
    path = f"/_sim/clusters/{cid}/nodepools/{pool_id}/conditions"
    assert (await sim_client.post(path, json=conditions)).is_success
    addon_id = next(iter(cluster.addons))
    for status_value in ("rollbackFailed", "unknown"):
        body = {"kind": "addon", "id": addon_id, "phase": status_value}
        assert (await sim_client.post("/_sim/phase", json=body)).is_success
    assert await every_read(simulator) == {}


@pytest.mark.simulator(clusters=4, nodes_per_cluster=2, seed=3)
async def test_hibernate_and_awake_through_the_sdk(
    simulator: Simulator, sim_client: httpx.AsyncClient
) -> None:
    client = sdk_client(simulator)
    world = simulator.world
    cid = next(
        c.uid for c in world.clusters.values() if c.segment(world.now_ns()).phase == "Available"
    )
    hibernated = await call(client.hibernate_cluster, HibernateClusterRequest(cluster_id=cid))
    assert hibernated.status_code == 200 and judge(hibernated) == []
    await sim_client.post("/_sim/clock/advance", json={"seconds": 3600})
    shown = await call(client.show_cluster, ShowClusterRequest(cid))
    assert shown.status.phase == "Hibernation"
    awoken = await call(client.awake_cluster, AwakeClusterRequest(cluster_id=cid))
    assert awoken.status_code == 200 and judge(awoken) == []


@pytest.mark.simulator(clusters=2, nodes_per_cluster=3, seed=2)
async def test_the_sdk_reads_the_codes_of_every_error_shape(simulator: Simulator) -> None:
    client = sdk_client(simulator)
    cid = next(iter(simulator.world.clusters))
    cases: list[tuple[Callable[[Any], Any], Any, int, str]] = [
        # {"error_code", "error_msg"}
        (client.show_cluster, ShowClusterRequest("no-such-cluster"), 404, "CCE.01404001"),
        # {"errorCode", "errorMessage"}
        (
            client.list_nodes,
            ListNodesRequest(cluster_id=cid, marker="no-such-node"),
            400,
            "CCE.01400001",
        ),
        # {"code", "message"} of the add-on manager, with the error_code the SDK reads
        (
            client.list_addon_instances,
            ListAddonInstancesRequest(cluster_id="no-such-cluster"),
            404,
            "SVCSTG.CCE-ADDONMGR.4040001",
        ),
    ]
    for method, request, status, code in cases:
        with pytest.raises(ClientRequestException) as caught:
            await call(method, request)
        assert (caught.value.status_code, caught.value.error_code) == (status, code)


def test_the_judge_finds_a_dropped_required_field_a_wrong_type_and_an_odd_value() -> None:
    cluster = {
        "kind": "Cluster",
        "apiVersion": "v3",
        "metadata": {"name": "c", "uid": "u"},
        "spec": {
            "flavor": "cce.s1.small",
            "hostNetwork": {"vpc": "v", "subnet": "s"},
            "containerNetwork": {"mode": "overlay_l2"},
        },
        "status": {"phase": "Available"},
    }
    problems: list[str] = []
    check(cluster, "Cluster", "$", problems)
    assert problems == []
    broken = json.loads(json.dumps(cluster))
    del broken["spec"]["hostNetwork"]["vpc"]
    broken["spec"]["billingMode"] = "0"
    broken["status"]["phase"] = "Exploding"
    broken["status"]["surprise"] = 1
    check(broken, "Cluster", "$", problems)
    assert problems == [
        "$.spec.hostNetwork: required HostNetwork.vpc is missing",
        "$.spec.billingMode: '0' is not the SDK's int",
        "$.status.phase: 'Exploding' is not a value the SDK documents",
        "$.status.surprise: no field of the SDK's ClusterStatus",
    ]


def test_documented_values_come_from_the_sdk() -> None:
    assert {"Repairing", "RepairFailed", "Active"} <= documented_values("NodeStatus", "phase")
    assert {"rollbackFailed", "unknown"} <= documented_values("AddonInstanceStatus", "status")
    assert "" in documented_values("NodePoolStatus", "phase")
    assert {"CertificateExpiringWithin30Days", "RotationFailed"} <= documented_values(
        "ClusterCondition", "reason"
    )
    assert {"Scalable", "QuotaInsufficient", "LockedByOrder"} <= documented_values(
        "NodePoolCondition", "type"
    )
