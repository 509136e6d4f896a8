"""The models against the API reference's examples, its quirks, and arbitrary input.

Every example response shipped with the reference parses; each quirk of reference sections 9, 11
and 14 is pinned by a case; and a property test feeds arbitrary JSON, and arbitrary mutations of
the examples, to every parser: the answer is a model or the project's own ``ResponseParseError``,
never any other exception.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from exporter.cce.errors import ResponseParseError
from exporter.cce.models import (
    Addon,
    AddonList,
    Cluster,
    ClusterList,
    Job,
    Node,
    NodeList,
    NodePool,
    NodePoolList,
    ProjectList,
    QuotaList,
    TokenBody,
    extract_job_id,
    flavor_max_nodes,
    parse_response,
    parse_timestamp,
)

#: The reference's example responses, kept inside the repository (tests/fixtures).
EXAMPLES = Path(__file__).resolve().parent / "fixtures" / "cce-api" / "examples"

#: Which model reads each example response (request bodies and error bodies are not responses).
EXAMPLE_MODELS: dict[str, type[BaseModel]] = {
    "clusters_list.json": ClusterList,
    "cluster_get.json": Cluster,
    "cluster_get_detail.json": Cluster,
    "cluster_create_response.json": Cluster,
    "cluster_update_response.json": Cluster,
    "cluster_delete.json": Cluster,
    "nodes_list.json": NodeList,
    "node_get.json": Node,
    "node_create_response.json": Node,
    "node_update_response.json": Node,
    "node_delete.json": Node,
    "nodepools_list.json": NodePoolList,
    "nodepool_get.json": NodePool,
    "nodepool_update_response.json": NodePool,
    "nodepool_delete.json": NodePool,
    "job_get.json": Job,
    "addons_list.json": AddonList,
    "addon_get.json": Addon,
    "quotas.json": QuotaList,
    "iam_projects.json": ProjectList,
}
NOT_RESPONSES = {
    "iam_token_request_body.json",  # a request body
    "error_iam.json",  # error bodies: parsed by exporter.cce.errors
    "error_addon_500.json",
    "error_addontemplates_500.json",
    "addon_delete_response.json",  # a placeholder {"string": "string"}
    "addontemplates_list.json",  # templates are not collected
    "node_delete_all_response.json",  # {"jobID": ...}: see test_job_ids_in_every_spelling
    "nodes_add_or_reset_response.json",
}
PARSERS: tuple[type[BaseModel], ...] = (
    ClusterList,
    Cluster,
    NodeList,
    Node,
    NodePoolList,
    NodePool,
    Job,
    AddonList,
    Addon,
    QuotaList,
    ProjectList,
    TokenBody,
)


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def test_every_example_file_is_accounted_for() -> None:
    files = {p.name for p in EXAMPLES.glob("*.json")}
    assert files == set(EXAMPLE_MODELS) | NOT_RESPONSES


@pytest.mark.parametrize("name", sorted(EXAMPLE_MODELS))
def test_every_example_parses(name: str) -> None:
    model = parse_response(EXAMPLE_MODELS[name], example(name))
    assert isinstance(model, EXAMPLE_MODELS[name])


def test_cluster_examples_carry_what_the_metrics_need() -> None:
    (cluster,) = parse_response(ClusterList, example("clusters_list.json")).items
    assert (cluster.id, cluster.name, cluster.phase) == (
        "4d1ecb2c-229a-11e8-9c75-0255ac100ceb",
        "mycluster",
        "Available",
    )
    assert cluster.spec.flavor == "cce.s1.small" and cluster.max_nodes == 50
    assert cluster.spec.container_network.mode == "overlay_l2"
    assert cluster.metadata.creation_timestamp == datetime(2018, 8, 2, 3, 48, 58, 968214, UTC)
    assert cluster.status.endpoints[0].type == "Internal"
    assert cluster.total_nodes is None  # no detail annotations in a plain list
    detail = parse_response(Cluster, example("cluster_get_detail.json"))
    assert isinstance(detail.total_nodes, int) and isinstance(detail.active_nodes, int)
    deleting = parse_response(Cluster, example("cluster_delete.json"))
    assert deleting.status.job_id  # status.jobID
    assert deleting.metadata.creation_timestamp is not None  # 8 fraction digits


def test_node_examples_and_their_quirks() -> None:
    (node,) = parse_response(NodeList, example("nodes_list.json")).items  # kind "Node"
    assert node.phase == "Active"
    assert node.nodepool_id == "az1.dc1#s1.medium#EulerOS 2.2"
    assert node.status.private_ip == "192.168.1.23"
    assert node.status.server_id == "456789abc-9368-46f3-8f29-d1a95622a568"  # not a UUID
    updated = parse_response(Node, example("node_update_response.json"))
    # RFC 3339 inside the node API, one with a leading space; volumeType/diskSize spelling.
    assert updated.metadata.creation_timestamp == datetime(2017, 8, 20, 21, 11, 9, tzinfo=UTC)
    assert updated.spec.root_volume.volumetype == "SATA" and updated.spec.root_volume.size == 40
    created = parse_response(Node, example("node_create_response.json"))
    assert created.status.job_id and created.phase is None


def test_nodepool_examples() -> None:
    (pool,) = parse_response(NodePoolList, example("nodepools_list.json")).items
    assert pool.id == pool.name == "az1.dc1#s1.large#EulerOS 2.2"
    assert pool.phase == "Normal"  # absent phase
    assert pool.status.current_node == 1
    assert pool.spec.autoscaling.enable is True and pool.spec.autoscaling.max_node_count == 50
    assert parse_response(NodePool, example("nodepool_get.json")).phase == "Normal"  # ""
    assert parse_response(NodePool, example("nodepool_update_response.json")).phase == (
        "Synchronized"
    )
    deleting = parse_response(NodePool, example("nodepool_delete.json"))
    assert deleting.phase == "Deleting" and deleting.status.job_id  # spelled jobId


def test_job_example_with_sub_jobs() -> None:
    job = parse_response(Job, example("job_get.json"))
    assert job.id == "354331b2c-229a-11e8-9c75-0255ac100ceb"
    assert (job.phase, job.finished, job.spec.type) == ("Running", False, "CreateCluster")
    assert [j.spec.type for j in job.spec.sub_jobs] == ["InstallMaster", "CreatePSMCert"]
    assert isinstance(job.spec.extend_param, dict)
    assert job.spec.sub_jobs[1].spec.resource_id is None
    assert job.failed_sub_jobs == []


def test_addon_and_quota_examples() -> None:
    (addon,) = parse_response(AddonList, example("addons_list.json")).items
    assert (addon.name, addon.version, addon.status.status) == (
        "storage-driver",
        "1.0.10",
        "running",
    )
    assert addon.status.reason == "Install complete"  # spelled Reason
    assert addon.metadata.creation_timestamp == datetime(2019, 4, 2, 11, 36, 26, tzinfo=UTC)
    assert parse_response(Addon, example("addon_get.json")).status.status == "installing"
    (quota,) = parse_response(QuotaList, example("quotas.json")).quotas
    assert (quota.quota_key, quota.quota_limit, quota.used, quota.unit) == (
        "cluster",
        20,
        13,
        "count",
    )
    assert quota.region_id is None and quota.availability_zone_id is None
    (project,) = parse_response(ProjectList, example("iam_projects.json")).projects
    assert (project.id, project.name) == ("a4a5d4098fb4474fa22cd05f897d6b99", "cn-north-4")


def test_job_ids_in_every_spelling() -> None:
    assert extract_job_id(json.loads(example("node_delete_all_response.json")))  # jobID
    assert extract_job_id(json.loads(example("nodes_add_or_reset_response.json")))  # jobid
    assert extract_job_id({"status": {"jobId": "x"}}) == "x"
    assert extract_job_id({"JOBID": ""}) is None
    assert extract_job_id(["jobID"]) is None


# --- quirks pinned one by one --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-08-02 03:48:58 +0000 UTC", datetime(2018, 8, 2, 3, 48, 58, tzinfo=UTC)),
        ("2018-08-02 03:48:58.9 +0000 UTC", datetime(2018, 8, 2, 3, 48, 58, 900000, UTC)),
        ("2018-08-01 06:20:28.81667161 +0000 UTC", datetime(2018, 8, 1, 6, 20, 28, 816671, UTC)),
        (
            "2018-08-02 03:48:58.968214406 +0800 CST",
            datetime(2018, 8, 2, 3, 48, 58, 968214, timezone(timedelta(hours=8))),
        ),
        (
            "2018-08-02 03:48:58.968214406 +0000 UTC m=+0.000000001",
            datetime(2018, 8, 2, 3, 48, 58, 968214, UTC),
        ),
        ("2019-04-02T11:36:26Z", datetime(2019, 4, 2, 11, 36, 26, tzinfo=UTC)),
        ("2019-04-02T11:36:26.123Z", datetime(2019, 4, 2, 11, 36, 26, 123000, UTC)),
        (
            "2019-04-02T11:36:26-05:30",
            datetime(2019, 4, 2, 11, 36, 26, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
        ("  2017-08-20T21:11:09Z\n", datetime(2017, 8, 20, 21, 11, 9, tzinfo=UTC)),
        ("2019-04-02T11:36:26", datetime(2019, 4, 2, 11, 36, 26, tzinfo=UTC)),  # no offset: UTC
        (None, None),
        ("", None),
        ("   ", None),
        ("yesterday", None),
        ("2019-13-02T11:36:26Z", None),
        ({"not": "a time"}, None),
    ],
)
def test_both_timestamp_families(text: object, expected: datetime | None) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is not None


def test_objects_where_arrays_are_expected_and_nulls() -> None:
    one = parse_response(ClusterList, b'{"items": {"metadata": {"uid": "c1"}}}')
    assert [c.id for c in one.items] == ["c1"]
    assert parse_response(ClusterList, b'{"items": null}').items == []
    assert parse_response(ClusterList, b"{}").items == []
    cluster = parse_response(
        Cluster, b'{"status": {"endpoints": {"url": "https://x", "type": "External"}}}'
    )
    assert cluster.status.endpoints[0].type == "External"
    job = parse_response(
        Job, b'{"spec": {"subJobs": {"metadata": {"uid": "s"}}, "extendParam": "raw"}}'
    )
    assert [j.id for j in job.spec.sub_jobs] == ["s"] and job.spec.extend_param == "raw"
    addons = parse_response(AddonList, b'{"metadata": "a string", "items": []}')
    assert addons.metadata == {}


def test_keys_matched_case_insensitively() -> None:
    for key in ("jobID", "jobId", "jobid", "JOBID"):
        cluster = parse_response(Cluster, json.dumps({"status": {key: "j1"}}).encode())
        assert cluster.status.job_id == "j1"
    addon = parse_response(Addon, b'{"status": {"Reason": "r1", "status": "abnormal"}}')
    assert addon.status.reason == "r1"
    # The exact spelling wins when both are there.
    both = parse_response(Addon, b'{"status": {"Reason": "upper", "reason": "lower"}}')
    assert both.status.reason == "lower"


def test_unknown_enum_values_are_kept_raw() -> None:
    cluster = parse_response(Cluster, b'{"status": {"phase": "Teleporting"}}')
    assert cluster.phase == "Teleporting"
    pool = parse_response(NodePool, b'{"status": {"phase": "  "}}')
    assert pool.phase == "Normal"


def test_detail_annotations_parse_leniently() -> None:
    cluster = parse_response(
        Cluster,
        b'{"metadata": {"annotations": {"totalNodesNumber": "12", "activeNodesNumber": "7.0",'
        b' "totalNodesMemory": "64Gi", "installedAddonInstances": [{"a": 1}]}}}',
    )
    assert (cluster.total_nodes, cluster.active_nodes) == (12, 7)
    assert cluster.metadata.annotations["installedAddonInstances"] == '[{"a": 1}]'


def test_flavor_limits() -> None:
    assert flavor_max_nodes("cce.s2.xlarge") == 2000
    assert flavor_max_nodes("cce.dec.s1.small") == 50
    assert flavor_max_nodes("cce.s9.galactic") is None
    assert flavor_max_nodes(None) is None


@pytest.mark.parametrize(
    "payload",
    [b"", b"[]", b'"text"', b"42", b"null", b'{"items": [', b"\xff\xfe{}", b"{'single': 1}"],
)
def test_malformed_bodies_raise_the_projects_parse_error(payload: bytes) -> None:
    for model in PARSERS:
        with pytest.raises(ResponseParseError) as info:
            parse_response(model, payload, endpoint="/api/v3/projects/{project_id}/clusters")
        assert "/api/v3/projects/{project_id}/clusters" in str(info.value)


# --- property tests ------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                [
                    "items",
                    "metadata",
                    "spec",
                    "status",
                    "phase",
                    "uid",
                    "name",
                    "jobID",
                    "jobid",
                    "Reason",
                    "creationTimestamp",
                    "annotations",
                    "subJobs",
                    "quotas",
                    "projects",
                    "endpoints",
                    "extendParam",
                    "rootVolume",
                    "dataVolumes",
                    "autoscaling",
                    "token",
                    "expires_at",
                ]
            )
            | st.text(max_size=10),
            children,
            max_size=6,
        )
    ),
    max_leaves=40,
)


def _check(model: type[BaseModel], payload: bytes) -> None:
    try:
        result = parse_response(model, payload)
    except ResponseParseError:
        return
    assert isinstance(result, model)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, model=st.sampled_from(PARSERS))
def test_arbitrary_json_gives_a_model_or_a_parse_error(value: Any, model: type[BaseModel]) -> None:
    _check(model, json.dumps(value).encode())


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200), model=st.sampled_from(PARSERS))
def test_arbitrary_bytes_give_a_model_or_a_parse_error(data: bytes, model: type[BaseModel]) -> None:
    _check(model, data)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out.extend(_paths(child, (*prefix, index)))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if new is _DELETE and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _replace(value[head], rest, new)
        return copy
    copy_list = list(value)
    if new is _DELETE and not rest:
        del copy_list[head]
    else:
        copy_list[head] = _replace(value[head], rest, new)
    return copy_list


_DELETE = object()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_examples_give_a_model_or_a_parse_error(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(EXAMPLE_MODELS)))
    document = json.loads(example(name))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(document)
        path = data.draw(st.sampled_from(paths))
        new = data.draw(json_values | st.just(_DELETE)) if path else data.draw(json_values)
        document = _replace(document, path, new)
    payload = json.dumps(document).encode()
    if data.draw(st.booleans()):
        payload = payload[: data.draw(st.integers(min_value=0, max_value=len(payload)))]
    model = data.draw(st.sampled_from([EXAMPLE_MODELS[name], *PARSERS]))
    _check(model, payload)
