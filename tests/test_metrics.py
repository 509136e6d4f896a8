"""The metric layer: exposition text from model snapshots, golden files, and the contract.

Golden files live in ``tests/golden``; regenerate them with ``UPDATE_GOLDEN=1`` and read the diff.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import re
import shutil
import subprocess
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.cce.models import (
    ADDON_STATUSES,
    CLUSTER_PHASES,
    JOB_PHASES,
    NODE_PHASES,
    NODEPOOL_PHASES,
    Addon,
    AddonList,
    Cluster,
    ClusterList,
    Job,
    Node,
    NodeList,
    NodePool,
    NodePoolList,
    Quota,
    QuotaList,
    parse_response,
)
from exporter.kube.models import KubeClusterData, KubeCronJob, KubeJob, KubeQuota
from exporter.metrics import (
    CONTENT_TYPE_OPENMETRICS,
    CONTENT_TYPE_TEXT,
    GROUPS,
    JobDurationHistogram,
    ResourceHealth,
    TargetData,
    TrackedJob,
    assemble,
    render_group,
)
from exporter.metrics.render import _headers, inflate
from exporter.metrics.spec import format_value
from tests.test_metrics_docs import EXPECTED

# The reference's example responses, kept inside the repository (tests/fixtures).
EXAMPLES = Path(__file__).resolve().parent / "fixtures" / "cce-api" / "examples"
GOLDEN = Path(__file__).parent / "golden"
NOW = 1_700_000_000.0
PROJECT = "0605767ef300d5762f7bc00a8e0b5b5b"
EXAMPLE_CLUSTER = "4d1ecb2c-229a-11e8-9c75-0255ac100ceb"

# --- fixtures -----------------------------------------------------------------------------------


def ts(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def cluster(uid: str, name: str | None, phase: str | None, **spec: Any) -> Cluster:
    meta: dict[str, Any] = {"uid": uid, "creationTimestamp": ts(NOW - 86400)}
    if name is not None:
        meta["name"] = name
    return Cluster.model_validate(
        {
            "metadata": meta,
            "spec": {"type": "VirtualMachine", "flavor": "cce.s2.medium", **spec},
            "status": {"phase": phase, "reason": "FREE-TEXT-REASON", "message": "FREE-TEXT-MSG"},
        }
    )


def node(uid: str, phase: str | None, **status: Any) -> Node:
    return Node.model_validate(
        {
            "metadata": {"uid": uid, "name": f"node-{uid}", "creationTimestamp": ts(NOW - 3600)},
            "spec": {"flavor": "c7.large.2", "az": "az1"},
            "status": {"phase": phase, "message": "FREE-TEXT-MSG", **status},
        }
    )


def pool(uid: str, phase: str | None) -> NodePool:
    return NodePool.model_validate(
        {
            "metadata": {"uid": uid, "name": f"pool-{uid}"},
            "spec": {
                "initialNodeCount": 2,
                "nodeTemplate": {"flavor": "c7.large.2", "az": "az1", "os": "EulerOS 2.9"},
                "autoscaling": {"enable": False, "minNodeCount": 1, "maxNodeCount": 5},
            },
            "status": {"currentNode": 2, "phase": phase},
        }
    )


def addon(uid: str, status: str | None) -> Addon:
    return Addon.model_validate(
        {
            "metadata": {"uid": uid, "name": f"addon-{uid}"},
            "spec": {
                "addonTemplateName": "coredns",
                "addonTemplateType": "helm",
                "version": "1.2.3",
                "description": "FREE",
            },
            "status": {"status": status, "Reason": "FREE-TEXT-REASON"},
        }
    )


def job(uid: str, phase: str | None, created: float, updated: float, type_: str) -> Job:
    return Job.model_validate(
        {
            "metadata": {
                "uid": uid,
                "creationTimestamp": ts(created),
                "updateTimestamp": ts(updated),
            },
            "spec": {"type": type_, "resourceID": f"res-{uid}", "resourceName": f"name-{uid}"},
            "status": {"phase": phase, "reason": "FREE-TEXT-REASON"},
        }
    )


def example_target() -> TargetData:
    """The API reference examples, parsed as the client would."""
    clusters = parse_response(ClusterList, (EXAMPLES / "clusters_list.json").read_bytes()).items
    nodes = parse_response(NodeList, (EXAMPLES / "nodes_list.json").read_bytes()).items
    pools = parse_response(NodePoolList, (EXAMPLES / "nodepools_list.json").read_bytes()).items
    addons = parse_response(AddonList, (EXAMPLES / "addons_list.json").read_bytes()).items
    the_job = parse_response(Job, (EXAMPLES / "job_get.json").read_bytes())
    quotas = parse_response(QuotaList, (EXAMPLES / "quotas.json").read_bytes()).quotas
    return TargetData(
        project_id=PROJECT,
        labels={"region": "cn-north-4"},
        clusters=clusters,
        nodes={EXAMPLE_CLUSTER: nodes},
        nodepools={EXAMPLE_CLUSTER: pools},
        addons={EXAMPLE_CLUSTER: addons},
        jobs=[TrackedJob(PROJECT, EXAMPLE_CLUSTER, the_job)],
        quotas=quotas,
        phase_since={f"cluster/{EXAMPLE_CLUSTER}": NOW - 600, f"node/{EXAMPLE_CLUSTER}": NOW - 60},
        health=[
            ResourceHealth("clusters", True, 0.25, NOW - 5),
            ResourceHealth("nodes", False, None, None),
        ],
        cluster_success={"nodes": {EXAMPLE_CLUSTER: True}, "addons": {EXAMPLE_CLUSTER: False}},
    )


def today_cluster(uid: str) -> Cluster:
    """A cluster with today's status: conditions (one free-text reason), a lock, masters."""
    return Cluster.model_validate(
        {
            "metadata": {"uid": uid, "name": f"today-{uid}"},
            "spec": {
                "type": "VirtualMachine",
                "category": "Turbo",
                "flavor": "cce.s3.medium",
                "billingMode": 1,
                "masters": [
                    {"availabilityZone": "az2"},
                    {"availabilityZone": "az1"},
                    {"availabilityZone": "az2"},
                ],
            },
            "status": {
                "phase": "Available",
                "isLocked": True,
                "lockScene": "ARREAR",
                "conditions": [
                    {
                        "type": "ClusterCertificate",
                        "status": "False",
                        "reason": "CertificateExpiringWithin30Days",
                    },
                    {"type": "CertificateRotation", "status": "False", "reason": "RotationFailed"},
                    {"type": "AgencyAvailable", "status": "True"},
                    {"type": "Odd", "status": "Maybe", "reason": "free text, not a word"},
                ],
            },
        }
    )


def today_pool(uid: str) -> NodePool:
    """A node pool with today's status: counts, conditions, a scale group."""
    return NodePool.model_validate(
        {
            "metadata": {"uid": uid, "name": f"pool-{uid}"},
            "spec": {"nodeTemplate": {"flavor": "c7.large.2"}},
            "status": {
                "currentNode": 4,
                "activeNode": 2,
                "creatingNode": 1,
                "deletingNode": 0,
                "repairingNode": 0,
                "repairFailedNode": 1,
                "configurationSyncedNodeCount": 3,
                "phase": "",
                "conditions": [
                    {"type": "Scalable", "status": "False", "reason": "QuotaInsufficient"},
                    {"type": "QuotaInsufficient", "status": "True", "reason": "ECS.quota"},
                ],
                "scaleGroupStatuses": [
                    {
                        "name": "default",
                        "desiredNodeCount": 5,
                        "existingNodeCount": {"total": 4, "postPaid": 4},
                        "upcomingNodeCount": {"total": 1},
                    }
                ],
            },
        }
    )


def every_value_target() -> TargetData:
    """Hand-made models: one object per known phase/status, one unknown value, one missing."""
    cid = "c-every"
    clusters = [cluster(f"c-{i:02d}", f"c{i}", p) for i, p in enumerate(CLUSTER_PHASES)]
    clusters += [
        cluster("c-zz-unknown", "weird", "Exploding"),
        cluster(cid, 'tricky "name"\\x\n', "Available", version="v1.28"),
        today_cluster("c-today"),
    ]
    nodes = [node(f"n-{i:02d}", p, privateIP=f"10.0.0.{i}") for i, p in enumerate(NODE_PHASES)]
    nodes += [node("n-zz-unknown", "Melting"), node("n-zz-missing", None)]
    nodes += [
        node(
            "n-today",
            "Active",
            lastProbeTime="2023-11-14 22:10:00 +0000 UTC",
            configurationUpToDate=False,
        )
    ]
    pools = [pool(f"p-{i:02d}", p) for i, p in enumerate(NODEPOOL_PHASES)]
    pools += [pool("p-empty", ""), pool("p-zz-unknown", "Sideways"), today_pool("p-today")]
    addons = [addon(f"a-{i:02d}", s) for i, s in enumerate(ADDON_STATUSES)]
    addons.append(addon("a-zz-unknown", "confused"))
    addons.append(addon("a-zz-sdk-unknown", "unknown"))
    jobs = [
        TrackedJob("p2", cid, job(f"j-{i}", p, NOW - 1000, NOW - 100, "CreateCluster"))
        for i, p in enumerate(JOB_PHASES)
    ]
    jobs.append(TrackedJob("p2", cid, job("j-zz-unknown", "Pondering", NOW - 50, NOW, "Other")))
    quotas = [
        Quota.model_validate(
            {"quotaKey": "cluster", "quotaLimit": 20, "used": 3, "regionId": "cn-south-1"}
        ),
        Quota.model_validate({"quotaKey": "node", "quotaLimit": 500, "unit": "count"}),
    ]
    return TargetData(
        project_id="p2",
        labels={"env": "prod", "cluster": "must-not-override", "region": "cn-north-4"},
        clusters=clusters,
        nodes={cid: nodes, "gone-cluster": [node("n-leftover", "Active")]},
        nodepools={cid: pools, "gone-cluster": [pool("p-leftover", "")]},
        addons={cid: addons, "gone-cluster": [addon("a-leftover", "running")]},
        jobs=jobs,
        quotas=quotas,
        phase_since={f"cluster/{cid}": NOW - 7200, "node/n-05": NOW - 30.5},
        health=[ResourceHealth("quotas", True, 1.5, NOW - 1)],
        # A cluster no longer listed has no per-cluster outcome series.
        cluster_success={"nodes": {cid: False, "gone-cluster": True}},
        upgrades={cid: ["v1.29.1-r0", "v1.30.2-r0"], "c-today": []},
        addon_upgrades={"a-00": True, "a-01": False},
    )


def render_all(
    targets: Sequence[TargetData],
    state_sets: Any = "all",
    registries: Sequence[CollectorRegistry] = (),
) -> tuple[str, str]:
    frags = [render_group(g, targets, now=NOW, state_sets=state_sets) for g in GROUPS]
    exp = assemble(frags, registries)
    return exp.text.decode(), exp.openmetrics.decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for fam in parse_text(text):
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def series(text: str, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples(text) if n == name]


def value(text: str, name: str, **labels: str) -> float | None:
    found = [v for (n, ls), v in samples(text).items() if n == name and set(labels.items()) <= ls]
    assert len(found) <= 1, f"{name} {labels}: {len(found)} matches"
    return found[0] if found else None


# --- golden files -------------------------------------------------------------------------------

GOLDEN_CASES = {
    "examples_all": ([example_target], "all"),
    "every_value_all": ([every_value_target], "all"),
    "every_value_current": ([every_value_target], "current"),
}


def _render_case(case: str) -> tuple[str, str]:
    builders, mode = GOLDEN_CASES[case]
    return render_all([b() for b in builders], mode)


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden(case: str) -> None:
    text, om = _render_case(case)
    for path, got in ((GOLDEN / f"{case}.prom", text), (GOLDEN / f"{case}.om.txt", om)):
        if os.environ.get("UPDATE_GOLDEN") == "1":
            path.parent.mkdir(exist_ok=True)
            path.write_text(got)
        assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 and review the diff"
        expected = path.read_text()
        # Output is deterministic, so compare exactly; the sorted comparison gives a readable diff.
        assert sorted(got.splitlines()) == sorted(expected.splitlines())
        assert got == expected


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_passes_promtool(case: str) -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(promtool).exists():
        pytest.skip("promtool is not installed")
    data = (GOLDEN / f"{case}.prom").read_bytes()
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=data, capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout + proc.stderr == b""


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_both_formats_parse_and_agree(case: str) -> None:
    text, om = _render_case(case)
    text_samples = samples(text)
    om_samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for fam in parse_openmetrics(om):
        for s in fam.samples:
            om_samples[(s.name, frozenset(s.labels.items()))] = s.value
    assert om.endswith("# EOF\n") and om.count("# EOF") == 1
    assert om_samples.keys() == text_samples.keys()
    for key, v in text_samples.items():
        assert om_samples[key] == v or (math.isnan(v) and math.isnan(om_samples[key]))


# --- the contract -------------------------------------------------------------------------------

#: Families of METRICS.md registered outside the metric tables (stateful prometheus_client
#: objects: hibernation, API self-metrics, sharding, the job histogram).
STATEFUL = frozenset(
    {
        "cce_hibernation_policy_info",
        "cce_hibernation_desired_state",
        "cce_hibernation_next_transition_timestamp_seconds",
        "cce_hibernation_override_until_timestamp_seconds",
        "cce_hibernation_actions_total",
        "cce_hibernation_action_duration_seconds",
        "cce_hibernation_estimated_savings_total",
        "cce_cluster_hibernated_seconds_total",
        "cce_exporter_api_requests_total",
        "cce_exporter_api_request_duration_seconds",
        "cce_exporter_api_retries_total",
        "cce_exporter_auth_refreshes_total",
        "cce_exporter_shard_ordinal",
        "cce_exporter_total_shards",
        "cce_job_completed_duration_seconds",
        "cce_exporter_kube_objects_dropped_total",
    }
)
#: The resource and self-metric tables of METRICS.md, as produced by render_group: the contract
#: kept in test_metrics_docs (one copy), less the stateful families.
CONTRACT: dict[str, tuple[str, tuple[str, ...]]] = {
    name: spec for name, spec in EXPECTED.items() if name not in STATEFUL
}


def full_kube_cluster() -> KubeClusterData:
    """Kubernetes objects with every optional field given."""
    return KubeClusterData(
        "c1",
        "one",
        jobs=(
            KubeJob(
                "batch",
                "nightly-1",
                "CronJob",
                "nightly",
                0,
                1,
                0,
                NOW - 100,
                NOW - 10,
                (("Complete", "True"),),
                3600,
                NOW - 101,
            ),
        ),
        cronjobs=(
            KubeCronJob(
                "batch",
                "nightly",
                "0 2 * * *",
                "Asia/Shanghai",
                False,
                NOW - 100,
                NOW - 10,
                NOW - 86400,
            ),
        ),
        quotas=(KubeQuota("batch", "q", (("pods", 10.0),), (("pods", 4.0),)),),
    )


def test_every_contract_family_is_rendered_with_its_type_and_labels() -> None:
    full = TargetData(
        project_id="p",
        labels={},
        clusters=[
            Cluster.model_validate(
                {
                    **cluster(
                        "c1",
                        "one",
                        "Available",
                        containerNetwork={"mode": "vpc-router"},
                        version="v1.28",
                        category="CCE",
                        billingMode=0,
                        masters=[{"availabilityZone": "az1"}],
                    ).model_dump(by_alias=True),
                    "status": {
                        "phase": "Available",
                        "isLocked": True,
                        "lockScene": "ARREAR",
                        "lockSource": "CBC",
                        "conditions": today_cluster("x").status.model_dump(by_alias=True)[
                            "conditions"
                        ],
                    },
                }
            )
        ],
        nodes={
            "c1": [
                *parse_response(NodeList, (EXAMPLES / "nodes_list.json").read_bytes()).items,
                node("n-today", "Active", lastProbeTime=ts(NOW), configurationUpToDate=True),
            ]
        },
        nodepools={"c1": [pool("p1", ""), today_pool("p2")]},
        addons={"c1": [addon("a1", "running")]},
        upgrades={"c1": ["v1.29.1-r0"]},
        addon_upgrades={"a1": True},
        jobs=[TrackedJob("p", "c1", job("j1", "Success", NOW - 100, NOW - 10, "CreateNode"))],
        quotas=[
            Quota.model_validate(
                {
                    "quotaKey": "cluster",
                    "quotaLimit": 5,
                    "used": 1,
                    "unit": "count",
                    "regionId": "r",
                    "availabilityZoneId": "az1",
                }
            )
        ],
        phase_since={"cluster/c1": NOW, f"node/{EXAMPLE_CLUSTER}": NOW},
        health=[ResourceHealth("nodes", True, 0.1, NOW)],
        cluster_success={"nodes": {"c1": True}},
        kube={"c1": full_kube_cluster()},
    )
    text, _ = render_all([full])
    types = {fam.name: fam.type for fam in parse_text(text)}
    # Every label of the contract shows up on at least one series of the family (optional ones
    # included, since the fixture gives every optional field), and no other label does.
    for name, (mtype, labels) in CONTRACT.items():
        assert types.get(name) == mtype, name
        seen = series(text, name)
        assert seen, f"{name}: no series"
        names = set().union(*(s.keys() for s in seen))
        assert names == set(labels), (name, names ^ set(labels))


def test_contract_matches_metrics_md() -> None:
    md = Path(__file__).resolve().parent / "fixtures" / "METRICS.md"
    text = md.read_text()
    documented: set[str] = set()
    for section in ("## Resource metrics", "## Inside the clusters", "## Exporter self-metrics"):
        body = text.split(section, 1)[1].split("\n## ", 1)[0]
        for line in body.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) < 2 or not cells[0].startswith("`"):
                continue
            names = re.findall(r"`([^`]+)`", cells[0])
            for n in names:
                documented.add(n if n.startswith("cce_") else names[0][: -len(n)] + n)
    # Stateful families (histograms, API counters, sharding) are registered elsewhere.
    external = {name for name in STATEFUL if "hibernat" not in name}
    assert documented - external == set(CONTRACT)


# --- behaviour ----------------------------------------------------------------------------------


def test_state_sets_all_have_every_value_and_one_current() -> None:
    text, _ = render_all([every_value_target()])
    for name, label, known, ident in (
        ("cce_cluster_status_phase", "phase", CLUSTER_PHASES, "cluster_id"),
        ("cce_node_status_phase", "phase", NODE_PHASES, "node_id"),
        ("cce_nodepool_status_phase", "phase", NODEPOOL_PHASES, "nodepool_id"),
        ("cce_addon_status", "status", ADDON_STATUSES, "addon_id"),
        ("cce_job_status_phase", "phase", JOB_PHASES, "job_id"),
    ):
        by_object: dict[str, dict[str, float]] = {}
        for (n, labels), v in samples(text).items():
            if n == name:
                d = dict(labels)
                by_object.setdefault(d[ident], {})[d[label]] = v
        for obj, states in by_object.items():
            assert set(states) == {*known, "unknown"}, (name, obj)
            assert sum(states.values()) == 1, (name, obj)
        # Each known value is the current one of the object made for it.
        currents = {next(s for s, v in st.items() if v == 1) for st in by_object.values()}
        assert currents == {*known, "unknown"}, name


def test_state_sets_current_only_emits_value_one() -> None:
    text, _ = render_all([every_value_target()], "current")
    all_text, _ = render_all([every_value_target()], "all")
    for name in (
        "cce_cluster_status_phase",
        "cce_node_status_phase",
        "cce_nodepool_status_phase",
        "cce_addon_status",
        "cce_job_status_phase",
    ):
        current = {k: v for k, v in samples(text).items() if k[0] == name}
        ones = {k: v for k, v in samples(all_text).items() if k[0] == name and v == 1}
        assert current and current == ones
    assert value(text, "cce_node_status_phase", node_id="n-zz-unknown", phase="unknown") == 1
    assert value(text, "cce_node_status_phase", node_id="n-zz-unknown", phase="Active") is None


def test_unknown_values_are_logged_once_per_value(caplog: pytest.LogCaptureFixture) -> None:
    from exporter.metrics import spec

    spec._SEEN_UNKNOWN.clear()
    caplog.set_level(logging.WARNING, logger="exporter.metrics.spec")
    target = every_value_target()
    render_all([target])
    render_all([target], "current")
    msgs = [r.getMessage() for r in caplog.records if r.name == "exporter.metrics.spec"]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    for raw in ("Exploding", "Melting", "Sideways", "confused", "Pondering"):
        assert sum(repr(raw) in m for m in msgs) == 1, raw
    assert sum("<missing>" in m for m in msgs) == 1  # the node without a phase


def test_nodepool_empty_phase_is_normal() -> None:
    text, _ = render_all([every_value_target()], "current")
    assert value(text, "cce_nodepool_status_phase", nodepool_id="p-empty", phase="Normal") == 1


def test_leftovers_of_deleted_clusters_are_not_emitted() -> None:
    text, _ = render_all([every_value_target()])
    assert "leftover" not in text
    assert "gone-cluster" not in text


def test_free_text_and_empty_values_never_become_labels() -> None:
    text, om = render_all([every_value_target(), example_target()])
    for needle in ("FREE", "Install complete", "awesome cluster", "FlexVolume"):
        assert needle not in text and needle not in om
    assert '=""' not in text
    # A node without privateIP has no private_ip label at all.
    info = [s for s in series(text, "cce_node_info") if s["node_id"] == "n-zz-missing"]
    assert info and "private_ip" not in info[0] and "os" not in info[0]


def test_label_values_are_escaped() -> None:
    text, om = render_all([every_value_target()])
    assert 'cluster="tricky \\"name\\"\\\\x\\n"' in text
    names = {s["cluster"] for s in series(text, "cce_cluster_info") if "cluster" in s}
    assert 'tricky "name"\\x\n' in names
    om_names = {
        s.labels.get("cluster")
        for fam in parse_openmetrics(om)
        if fam.name == "cce_cluster_info"
        for s in fam.samples
    }
    assert 'tricky "name"\\x\n' in om_names


def test_static_labels_added_but_never_override() -> None:
    text, _ = render_all([every_value_target()])
    for s in series(text, "cce_node_info"):
        assert s["env"] == "prod" and s["region"] == "cn-north-4"
        assert s["cluster"] == 'tricky "name"\\x\n'
    # A static label named like an identity label is left out everywhere, jobs included.
    assert "must-not-override" not in text
    assert all(s["env"] == "prod" for s in series(text, "cce_job_info"))
    # A quota's own region takes the place of the target's.
    assert value(text, "cce_quota_limit", resource="cluster") == 20
    assert series(text, "cce_quota_limit")[0]["region"] in ("cn-south-1", "cn-north-4")
    regions = {s["resource"]: s["region"] for s in series(text, "cce_quota_limit")}
    assert regions == {"cluster": "cn-south-1", "node": "cn-north-4"}
    assert value(text, "cce_quota_used", resource="node") is None  # used not given


def test_cluster_node_counts() -> None:
    target = example_target()
    detail = parse_response(Cluster, (EXAMPLES / "cluster_get_detail.json").read_bytes())
    three = [node("x1", "Active"), node("x2", "Active"), node("x3", "Installing")]
    other = cluster("c-counted", "counted", "Available")
    nolist = cluster("c-nolist", "nolist", "Available")
    t = TargetData(
        target.project_id,
        {},
        [detail, other, nolist],
        {detail.id or "": three, "c-counted": three},
        {},
        {},
        (),
        (),
        {},
        (),
    )
    text, _ = render_all([t])
    # Annotations win over the node list; else counted; else omitted.
    assert value(text, "cce_cluster_nodes", cluster_id=EXAMPLE_CLUSTER) == 1
    assert value(text, "cce_cluster_nodes_active", cluster_id=EXAMPLE_CLUSTER) == 1
    assert value(text, "cce_cluster_nodes", cluster_id="c-counted") == 3
    assert value(text, "cce_cluster_nodes_active", cluster_id="c-counted") == 2
    assert value(text, "cce_cluster_nodes", cluster_id="c-nolist") is None
    assert value(text, "cce_cluster_nodes_active", cluster_id="c-nolist") is None
    assert value(text, "cce_cluster_max_nodes", cluster_id="c-nolist") == 200


def test_job_duration_and_completion() -> None:
    text, _ = render_all([every_value_target()])
    # Running: now - created; finished: completion - created; completion only when finished.
    assert value(text, "cce_job_duration_seconds", job_id="j-1") == 1000
    assert value(text, "cce_job_duration_seconds", job_id="j-3") == 900
    assert value(text, "cce_job_duration_seconds", job_id="j-2") == 900
    assert value(text, "cce_job_completion_timestamp_seconds", job_id="j-3") == NOW - 100
    assert value(text, "cce_job_completion_timestamp_seconds", job_id="j-2") == NOW - 100
    assert value(text, "cce_job_completion_timestamp_seconds", job_id="j-1") is None
    assert value(text, "cce_job_completion_timestamp_seconds", job_id="j-0") is None
    assert value(text, "cce_job_created_timestamp_seconds", job_id="j-0") == NOW - 1000


def test_phase_since_and_self_metrics() -> None:
    text, _ = render_all([example_target()])
    assert (
        value(text, "cce_cluster_status_phase_since_timestamp_seconds", cluster_id=EXAMPLE_CLUSTER)
        == NOW - 600
    )
    assert value(text, "cce_exporter_collect_success", resource="clusters") == 1
    assert value(text, "cce_exporter_collect_success", resource="nodes") == 0
    assert value(text, "cce_exporter_collect_duration_seconds", resource="clusters") == 0.25
    assert value(text, "cce_exporter_collect_duration_seconds", resource="nodes") is None
    assert value(text, "cce_exporter_last_success_timestamp_seconds", resource="nodes") is None
    build = series(text, "cce_exporter_build_info")
    assert len(build) == 1 and set(build[0]) == {"version", "python_version"}


def test_no_targets_still_renders_headers_and_build_info() -> None:
    text, om = render_all([])
    assert "# TYPE cce_node_status_phase gauge" in text
    assert len(samples(text)) == 1
    assert list(parse_openmetrics(om))


def test_fragments_are_per_group_and_sorted() -> None:
    targets = [every_value_target(), example_target()]
    names_seen: list[str] = []
    for group in GROUPS:
        frag = render_group(group, targets, now=NOW)
        assert frag.group == group
        assert list(frag.families) == sorted(frag.families)
        text = b"".join(inflate(frag.text))
        assert text.count(b"# TYPE ") == len(frag.families)
        names_seen += frag.families
        # Re-rendering gives identical bytes, whatever the input order.
        again = render_group(group, targets[::-1], now=NOW)
        assert again.text == frag.text and again.openmetrics == frag.openmetrics  # same bytes
    assert len(names_seen) == len(set(names_seen))
    with pytest.raises(KeyError):
        render_group("nonsense", targets, now=NOW)


def test_assemble_appends_registries_and_one_eof() -> None:
    registry = CollectorRegistry()
    c = Counter("cce_test_things", "Things.", ["kind"], registry=registry)
    c.labels(kind="a").inc(2)
    hist = JobDurationHistogram()
    hist.observe(job("j-done", "Success", NOW - 700, NOW - 100, "CreateCluster"))
    text, om = render_all([example_target()], registries=[registry, hist.registry])
    assert om.count("# EOF") == 1 and om.endswith("# EOF\n")
    assert value(text, "cce_test_things_total", kind="a") == 2
    om_fams = {f.name: f for f in parse_openmetrics(om)}
    assert om_fams["cce_test_things"].type == "counter"
    bucket = value(
        text, "cce_job_completed_duration_seconds_bucket", type="CreateCluster", le="600.0"
    )
    assert bucket == 1
    assert text.index("cce_cluster_info") < text.index("cce_test_things_total")
    assert CONTENT_TYPE_TEXT == "text/plain; version=0.0.4; charset=utf-8"
    assert CONTENT_TYPE_OPENMETRICS.startswith("application/openmetrics-text; version=1.0.0")


def test_the_four_renderings_round_trip() -> None:
    frags = [render_group(g, [example_target()], now=NOW) for g in GROUPS]
    exp = assemble(frags)
    text = exp.text
    om = exp.openmetrics
    assert text.startswith(b"# HELP ") and om.endswith(b"# EOF\n")
    assert (exp.text_size, exp.openmetrics_size) == (len(text), len(om))
    for openmetrics, plain in ((False, text), (True, om)):
        length, parts = exp.body(openmetrics=openmetrics, gzip=False)
        assert (length, b"".join(parts)) == (len(plain), plain)
        length, parts = exp.body(openmetrics=openmetrics, gzip=True)
        member = b"".join(parts)
        assert length == len(member)
        assert gzip.decompress(member) == plain
        single = zlib.decompressobj(16 + zlib.MAX_WBITS)  # one member, as httpx and curl read it
        assert single.decompress(member) == plain
        assert single.eof and not single.unused_data


def test_job_histogram_observes_each_finished_job_once() -> None:
    hist = JobDurationHistogram(memory=2)
    done = job("j1", "Failed", NOW - 4000, NOW - 100, "UpgradeCluster")
    assert hist.observe(done) is True
    assert hist.observe(done) is False
    assert hist.observe(job("j2", "Running", NOW - 10, NOW, "CreateNode")) is False
    labels = {"type": "UpgradeCluster", "phase": "Failed"}
    reg = hist.registry
    assert reg.get_sample_value("cce_job_completed_duration_seconds_count", labels) == 1
    assert reg.get_sample_value("cce_job_completed_duration_seconds_sum", labels) == 3900
    le = {**labels, "le": "3600.0"}
    assert reg.get_sample_value("cce_job_completed_duration_seconds_bucket", le) == 0
    le = {**labels, "le": "5400.0"}
    assert reg.get_sample_value("cce_job_completed_duration_seconds_bucket", le) == 1
    # Bounded memory: once forgotten, a job could be observed again; the newest are remembered.
    assert hist.observe(job("j3", "Success", NOW - 40, NOW, "X")) is True
    assert hist.observe(job("j3", "Success", NOW - 40, NOW, "X")) is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1, "1"),
        (0, "0"),
        (True, "1"),
        (1.5, "1.5"),
        (1.5e9, "1500000000.0"),
        (float("nan"), "NaN"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (1e300, "1e+300"),
    ],
)
def test_format_value(raw: float, expected: str) -> None:
    assert format_value(raw) == expected
    assert float(expected.replace("+Inf", "inf")) == float(raw) or math.isnan(float(raw))


def test_headers_escape_help_and_counter_suffix() -> None:
    text, om = _headers("cce_x_total", 'Back\\slash\nand "quotes".', "counter")
    assert text == (
        b'# HELP cce_x_total Back\\\\slash\\nand "quotes".\n# TYPE cce_x_total counter\n'
    )
    assert om == (b'# HELP cce_x Back\\\\slash\\nand \\"quotes\\".\n# TYPE cce_x counter\n')
    body = "cce_x_total 3\n"
    (fam,) = parse_openmetrics(om.decode() + body + "# EOF\n")
    assert fam.name == "cce_x" and fam.samples[0].value == 3
    assert fam.documentation == 'Back\\slash\nand "quotes".'
    (fam,) = parse_text(text.decode() + body)
    assert fam.documentation == 'Back\\slash\nand "quotes".'


@settings(max_examples=100, deadline=None)
@given(
    groups=st.lists(st.lists(st.binary(max_size=3000), max_size=4), max_size=6),
    chunk=st.integers(min_value=1, max_value=5000),
)
def test_packed_pieces_join_into_one_gzip_member(groups: list[list[bytes]], chunk: int) -> None:
    """Fragments compressed separately join into one gzip member any decoder reads whole (its
    CRC combined from theirs), and inflate back in pieces of at most ``chunk`` bytes."""
    from exporter.metrics.render import Exposition, Packed, inflate

    packs = [Packed.of(parts) for parts in groups]
    whole = b"".join(b"".join(parts) for parts in groups)
    exp = Exposition(packs, packs)
    length, pieces = exp.body(openmetrics=False, gzip=True)
    member = b"".join(pieces)
    assert length == len(member)
    assert gzip.decompress(member) == whole
    single = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert single.decompress(member) == whole
    assert single.eof and not single.unused_data
    inflated = list(inflate(packs, chunk))
    assert b"".join(inflated) == whole
    assert all(0 < len(piece) <= chunk for piece in inflated)


@settings(max_examples=200, deadline=None)
@given(a=st.binary(max_size=2000), b=st.binary(max_size=2000), zeros=st.integers(0, 1 << 20))
def test_crc32_combine_matches_zlib(a: bytes, b: bytes, zeros: int) -> None:
    from exporter.metrics.render import crc32_combine

    b = b + bytes(zeros % 5000)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
