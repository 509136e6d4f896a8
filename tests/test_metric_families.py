"""One focused check per metric family: its full label set and its value, object by object.

The golden snapshots in ``test_metrics.py`` hold the whole exposition at once, so a careless
regeneration could hide a renamed label or a value read from the wrong field. Here every family of
the metric tables (``exporter.metrics.catalog.GROUP_TABLES``, so a new family is picked up by
itself) is rendered from a simulated world, and its series are compared with what an independent
*oracle* computes from the API's JSON: field names as the API spells them, state-set values as the
contract (``tests/test_metrics_docs.py``) lists them.

A family without an oracle still gets the checks the tables allow (it renders, its labels are its
table's, its values are numbers) and is then reported as skipped, naming the oracle to add.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.cce.models import (
    AddonList,
    AddonTemplateList,
    ClusterList,
    Job,
    NodePoolList,
    QuotaList,
    addon_upgrade_available,
    parse_node_summaries,
    parse_response,
    parse_timestamp,
)
from exporter.config import RESERVED_LABELS
from exporter.kube.models import KubeClusterData, parse_list
from exporter.metrics import (
    GROUPS,
    ResourceHealth,
    TargetData,
    TrackedJob,
    assemble,
    render_group,
)
from exporter.metrics.catalog import GROUP_TABLES
from exporter.simulator import Simulator, SimulatorConfig
from tests.test_metrics_docs import STATE_SETS

Raw = dict[str, Any]
Series = dict[frozenset[tuple[str, str]], float]
STATIC = {"env": "family-test"}


def field(obj: Raw, path: str) -> Any:
    """``obj["a"]["b"]`` for ``"a.b"``; None where any step is missing."""
    for step in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(step)  # type: ignore[assignment]
    return obj


def ts(value: Any) -> float | None:
    moment = parse_timestamp(value)
    return None if moment is None else moment.timestamp()


@dataclass
class World:
    """A simulated project: its API answers (raw JSON) and the snapshot the renderer gets."""

    now: float
    project: str
    clusters: list[Raw]
    nodes: dict[str, list[Raw]]
    pools: dict[str, list[Raw]]
    addons: dict[str, list[Raw]]
    jobs: list[tuple[str, Raw]]  # (cluster id, job)
    quotas: list[Raw]
    upgrades: dict[str, list[str]]  # cluster id -> upgradeinfo's targetVersions
    templates: list[Raw]  # the add-on templates
    since: dict[str, float]
    health: list[ResourceHealth]
    target: TargetData
    #: cluster id -> kind (jobs, cronjobs, resourcequotas) -> the Kubernetes API's items
    kube: dict[str, dict[str, list[Raw]]]


@cache
def world() -> World:
    sim = Simulator(
        SimulatorConfig(
            clusters=30, nodes_per_cluster=3, seed=11, clock_start=1.8e9, clock_frozen=True
        )
    )
    w = sim.world
    now = sim.clock.now()
    project = sim.credentials.project_id
    # What the collector asks for: the plain listing, the default pool included.
    listing = w.cluster_list_bytes()
    clusters = json.loads(listing)["items"]
    models = parse_response(ClusterList, listing).items
    nodes, pools, addons = {}, {}, {}
    node_models, pool_models, addon_models = {}, {}, {}
    jobs: list[tuple[str, Raw]] = []
    job_models: list[TrackedJob] = []
    since: dict[str, float] = {}
    for c in clusters:
        cid = c["metadata"]["uid"]
        since[f"cluster/{cid}"] = now - 10 - len(since)
        if c["status"]["phase"] in ("Creating", "Deleting", "Error", "Empty"):
            continue  # no nodes to list, as the collector skips them
        body = w.node_list_bytes(cid)
        nodes[cid] = json.loads(body)["items"]
        node_models[cid] = parse_node_summaries(body)
        body = w.nodepool_list_bytes(cid, show_default=True)
        pools[cid] = json.loads(body)["items"]
        pool_models[cid] = parse_response(NodePoolList, body).items
        body = w.addon_list_bytes(cid)
        addons[cid] = json.loads(body)["items"]
        addon_models[cid] = parse_response(AddonList, body).items
        for kind, items in (("node", nodes[cid]), ("nodepool", pools[cid]), ("addon", addons[cid])):
            for item in items:
                # Pools by cluster and pool: default pool IDs repeat across clusters.
                scope = f"{cid}/" if kind == "nodepool" else ""
                since[f"{kind}/{scope}{item['metadata']['uid']}"] = now - 10 - len(since)
    job_ids = [
        (c["metadata"]["uid"], jid)
        for c in clusters
        for owner in [c, *nodes.get(c["metadata"]["uid"], [])]
        if (jid := field(owner, "status.jobID"))
    ]
    # Half the jobs read while they run, the other half an hour later, finished.
    for index, (cid, jid) in enumerate(job_ids):
        if index == len(job_ids) // 2:
            sim.advance(3600)
        body = w.job_bytes(jid)
        jobs.append((cid, json.loads(body)))
        job_models.append(TrackedJob(project, cid, parse_response(Job, body)))
    now = sim.clock.now()
    phases = {field(j, "status.phase") for _, j in jobs}
    assert {"Running", "Success"} <= phases, f"pick another seed: jobs only {phases}"
    quotas_body = w.quotas_bytes()
    upgrades = {
        cid: json.loads(w.upgradeinfo_bytes(cid))["spec"]["versionInfo"]["targetVersions"]
        for cid in nodes
    }
    templates_body = w.addontemplates_bytes()
    templates = {
        t.name: t for t in parse_response(AddonTemplateList, templates_body).items if t.name
    }
    by_id = {c.id: c for c in models}
    addon_upgrades = {
        a.id: up
        for cid, items in addon_models.items()
        for a in items
        if a.id and (up := addon_upgrade_available(a, by_id[cid], templates)) is not None
    }
    kube_raw, kube_models = _kube_world(sim, clusters)
    health = [
        ResourceHealth("clusters", True, 0.25, now - 5),
        ResourceHealth("nodes", False, 1.5, now - 300),
        ResourceHealth("quotas", False, None, None),
    ]
    target = TargetData(
        project_id=project,
        labels=STATIC,
        clusters=models,
        nodes=node_models,
        nodepools=pool_models,
        addons=addon_models,
        jobs=job_models,
        quotas=parse_response(QuotaList, quotas_body).quotas,
        phase_since=since,
        health=health,
        cluster_success={"nodes": {cid: index % 4 != 1 for index, cid in enumerate(nodes)}},
        upgrades=upgrades,
        addon_upgrades=addon_upgrades,
        kube=kube_models,
    )
    return World(
        now,
        project,
        clusters,
        nodes,
        pools,
        addons,
        jobs,
        json.loads(quotas_body)["quotas"],
        upgrades,
        json.loads(templates_body)["items"],
        since,
        health,
        target,
        kube_raw,
    )


class _KubeRequest:
    def __init__(self, cluster_id: str, kind: str, version: str) -> None:
        self.params = {"kube_cluster": cluster_id, "kind": kind, "version": version}
        self.query: dict[str, str] = {}
        self.headers: dict[str, str] = {}


def _kube_world(
    sim: Simulator, clusters: list[Raw]
) -> tuple[dict[str, dict[str, list[Raw]]], dict[str, KubeClusterData]]:
    """Each Available cluster's Kubernetes lists, as the simulator answers them."""
    raw: dict[str, dict[str, list[Raw]]] = {}
    models: dict[str, KubeClusterData] = {}
    for c in clusters:
        cid = c["metadata"]["uid"]
        version = "v1" if _numbers(c["spec"].get("version", ""))[:2] >= [1, 25] else "v1beta1"
        lists = {}
        for kind, group_version in (
            ("jobs", "v1"),
            ("cronjobs", version),
            ("resourcequotas", "v1"),
        ):
            body, status = sim.app.kube.listing(_KubeRequest(cid, kind, group_version))
            if status != 200:
                break
            lists[kind] = body
        else:
            raw[cid] = {kind: json.loads(body)["items"] for kind, body in lists.items()}
            parsed = {k: parse_list(k, b, endpoint=k).items for k, b in lists.items()}
            models[cid] = KubeClusterData(
                cid,
                c["metadata"].get("name") or "",
                parsed["jobs"],
                parsed["cronjobs"],
                parsed["resourcequotas"],
            )
    assert raw, "pick another seed: no Available cluster"
    return raw, models


@cache
def rendered() -> dict[str, Series]:
    """Family -> its series in the text exposition of every group (state sets: all values)."""
    w = world()
    frags = [render_group(g, [w.target], now=w.now, state_sets="all") for g in GROUPS]
    text = assemble(frags).text.decode()
    out: dict[str, Series] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            series = out.setdefault(s.name, {})
            key = frozenset(s.labels.items())
            assert key not in series, f"duplicate series {s.name}{s.labels}"
            series[key] = s.value
    return out


# --- oracles: what each family must say, from the API's JSON --------------------------------------


def _labels(**pairs: Any) -> frozenset[tuple[str, str]]:
    """The label set: the target's static labels, then these; missing or empty values left out."""
    merged = {**STATIC, **{k: v for k, v in pairs.items() if v not in (None, "")}}
    return frozenset((k, str(v)) for k, v in merged.items())


def _cluster_ident(w: World, c: Raw) -> dict[str, Any]:
    return {
        "project_id": w.project,
        "cluster_id": c["metadata"]["uid"],
        "cluster": c["metadata"].get("name"),
    }


def _clusters(w: World) -> Iterator[tuple[dict[str, Any], Raw]]:
    for c in w.clusters:
        yield _cluster_ident(w, c), c


def _nodes(w: World) -> Iterator[tuple[dict[str, Any], Raw]]:
    for c in w.clusters:
        for n in w.nodes.get(c["metadata"]["uid"], []):
            ident = {
                **_cluster_ident(w, c),
                "node_id": n["metadata"]["uid"],
                "node": n["metadata"].get("name"),
            }
            yield ident, n


def _pools(w: World) -> Iterator[tuple[dict[str, Any], Raw]]:
    for c in w.clusters:
        for p in w.pools.get(c["metadata"]["uid"], []):
            meta = p["metadata"]
            ident = {
                **_cluster_ident(w, c),
                "nodepool_id": meta.get("uid") or meta.get("name"),
                "nodepool": meta.get("name") or meta.get("uid"),
            }
            yield ident, p


def _addons(w: World) -> Iterator[tuple[dict[str, Any], Raw]]:
    for c in w.clusters:
        for a in w.addons.get(c["metadata"]["uid"], []):
            ident = {
                **_cluster_ident(w, c),
                "addon_id": a["metadata"]["uid"],
                "addon": field(a, "spec.addonTemplateName") or a["metadata"].get("name"),
            }
            yield ident, a


def _jobs(w: World) -> Iterator[tuple[dict[str, Any], Raw]]:
    for cid, j in w.jobs:
        yield {"project_id": w.project, "cluster_id": cid, "job_id": j["metadata"]["uid"]}, j


Objects = Callable[[World], Iterator[tuple[dict[str, Any], Raw]]]


def gauge(objects: Objects, value: Callable[[World, Raw], Any]) -> Callable[[World], Series]:
    def oracle(w: World) -> Series:
        out: Series = {}
        for ident, obj in objects(w):
            v = value(w, obj)
            if v is not None:
                out[_labels(**ident)] = float(v)
        return out

    return oracle


def info(objects: Objects, **paths: Callable[[Raw], Any]) -> Callable[[World], Series]:
    def oracle(w: World) -> Series:
        return {
            _labels(**ident, **{k: get(obj) for k, get in paths.items()}): 1.0
            for ident, obj in objects(w)
        }

    return oracle


def state_set(
    objects: Objects, family: str, label: str, current: Callable[[Raw], Any]
) -> Callable[[World], Series]:
    known = STATE_SETS[family].split(", ")

    def oracle(w: World) -> Series:
        out: Series = {}
        for ident, obj in objects(w):
            now = current(obj)
            now = now if now in known else "unknown"
            for value in known:
                out[_labels(**ident, **{label: value})] = float(value == now)
        return out

    return oracle


def since(kind: str, objects: Objects) -> Callable[[World], Series]:
    return gauge(objects, lambda w, o: w.since.get(f"{kind}/{o['metadata']['uid']}"))


def _pool_since(w: World) -> Series:
    out: Series = {}
    for ident, p in _pools(w):
        value = w.since.get(f"nodepool/{ident['cluster_id']}/{p['metadata']['uid']}")
        if value is not None:
            out[_labels(**ident)] = float(value)
    return out


def conditions(objects: Objects, reasons: bool) -> Callable[[World], Series]:
    """status.conditions: a true/false/unknown state set per type, or 1 per type's reason."""

    def oracle(w: World) -> Series:
        out: Series = {}
        for ident, obj in objects(w):
            for cond in field(obj, "status.conditions") or []:
                kind, reason = cond.get("type"), cond.get("reason")
                state = str(cond.get("status", "")).lower()
                if reasons:
                    if reason:
                        out[_labels(**ident, condition=kind, reason=reason)] = 1.0
                    continue
                for value in ("true", "false", "unknown"):
                    out[_labels(**ident, condition=kind, status=value)] = float(value == state)
        return out

    return oracle


def _locked(w: World) -> Series:
    return {
        _labels(
            **ident,
            lock_scene=field(c, "status.lockScene"),
            lock_source=field(c, "status.lockSource"),
        ): float(bool(field(c, "status.isLocked")))
        for ident, c in _clusters(w)
        if field(c, "status.isLocked") is not None
    }


def _control_plane_azs(w: World) -> Series:
    out: Series = {}
    for ident, c in _clusters(w):
        zones = {m.get("availabilityZone") for m in field(c, "spec.masters") or []} - {None}
        for zone in zones or {field(c, "spec.extendParam.clusterAZ")}:
            if zone:
                out[_labels(**ident, az=zone)] = 1.0
    return out


def _upgrade_available(w: World) -> Series:
    return {
        _labels(**ident): float(bool(w.upgrades[c["metadata"]["uid"]]))
        for ident, c in _clusters(w)
        if c["metadata"]["uid"] in w.upgrades
    }


def _upgrade_targets(w: World) -> Series:
    return {
        _labels(**ident, target_version=version): 1.0
        for ident, c in _clusters(w)
        for version in w.upgrades.get(c["metadata"]["uid"], [])
    }


def _numbers(version: str) -> list[int]:
    return [int(n) for n in "".join(ch if ch.isdigit() else " " for ch in version).split()]


def _addon_upgrade(w: World) -> Series:
    """1 where a template lists a stable version newer than the installed one (the simulator's
    templates support every cluster type and version)."""
    versions = {
        field(t, "metadata.name"): [v["version"] for v in field(t, "spec.versions")]
        for t in w.templates
    }
    out: Series = {}
    for ident, a in _addons(w):
        installed = field(a, "spec.version")
        offered = versions.get(field(a, "spec.addonTemplateName"), [])
        newer = any(_numbers(v) > _numbers(installed) for v in offered)
        out[_labels(**ident)] = float(newer)
    return out


def _pool_states(w: World) -> Series:
    keys = {
        "active": "activeNode",
        "creating": "creatingNode",
        "deleting": "deletingNode",
        "repairing": "repairingNode",
        "repair_failed": "repairFailedNode",
    }
    return {
        _labels(**ident, state=state): float(field(p, f"status.{key}"))
        for ident, p in _pools(w)
        for state, key in keys.items()
        if field(p, f"status.{key}") is not None
    }


def _scalegroups(w: World) -> Series:
    out: Series = {}
    for ident, p in _pools(w):
        for group in field(p, "status.scaleGroupStatuses") or []:
            for state, value in (
                ("desired", group.get("desiredNodeCount")),
                ("existing", field(group, "existingNodeCount.total")),
                ("upcoming", field(group, "upcomingNodeCount.total")),
            ):
                if value is not None:
                    out[_labels(**ident, scalegroup=group["name"], state=state)] = float(value)
    return out


def _path(path: str) -> Callable[[Raw], Any]:
    return lambda obj: field(obj, path)


def _node_count(w: World, c: Raw, active: bool) -> int | None:
    annotation = field(
        c, "metadata.annotations." + ("activeNodesNumber" if active else "totalNodesNumber")
    )
    if annotation is not None:
        return int(annotation)
    nodes = w.nodes.get(c["metadata"]["uid"])
    if nodes is None:
        return None
    return sum(1 for n in nodes if not active or field(n, "status.phase") == "Active")


#: The node limit per cluster flavor, from the API reference (12.2), not from the models.
FLAVOR_LIMITS = {"small": 50, "medium": 200, "large": 1000, "xlarge": 2000}


def _max_nodes(w: World, c: Raw) -> int | None:
    return FLAVOR_LIMITS.get(str(field(c, "spec.flavor")).rsplit(".", 1)[-1])


def _finished(j: Raw) -> bool:
    return field(j, "status.phase") in ("Success", "Failed")


def _completion(w: World, j: Raw) -> float | None:
    return ts(field(j, "metadata.updateTimestamp")) if _finished(j) else None


def _duration(w: World, j: Raw) -> float | None:
    created = ts(field(j, "metadata.creationTimestamp"))
    end = _completion(w, j) if _finished(j) else w.now
    return None if created is None or end is None else max(0.0, end - created)


def _quotas(value: str) -> Callable[[World], Series]:
    def oracle(w: World) -> Series:
        return {
            _labels(
                project_id=w.project,
                resource=q.get("quotaKey"),
                unit=q.get("unit"),
                region=q.get("regionId"),
                az=q.get("availabilityZoneId"),
            ): float(q[value])
            for q in w.quotas
            if q.get(value) is not None
        }

    return oracle


def _health(value: Callable[[ResourceHealth], Any]) -> Callable[[World], Series]:
    def oracle(w: World) -> Series:
        out: Series = {}
        for h in w.health:
            v = value(h)
            if v is not None:
                out[_labels(project_id=w.project, resource=h.resource)] = float(v)
        return out

    return oracle


def _cluster_outcomes(w: World) -> Series:
    """The node outcomes the world sets per listed cluster (every fourth one failed), with the
    cluster's identity read from the API's JSON."""
    by_id = {c["metadata"]["uid"]: c for c in w.clusters}
    return {
        _labels(**_cluster_ident(w, by_id[cid]), resource="nodes"): 0.0 if i % 4 == 1 else 1.0
        for i, cid in enumerate(w.nodes)
    }


def _build_info(w: World) -> Series:
    labels = {"version": __version__, "python_version": platform.python_version()}
    return {frozenset(labels.items()): 1.0}


def _pool_phase(p: Raw) -> str:
    raw = field(p, "status.phase")
    return "Normal" if not raw or not str(raw).strip() else raw


# --- Kubernetes objects inside the clusters -------------------------------------------------------

KUBE_CONDITIONS = ("Complete", "Failed", "Suspended", "FailureTarget", "SuccessCriteriaMet")
_UNITS = {"": 1.0, "m": 1e-3, "k": 1e3, "Mi": 2.0**20, "Gi": 2.0**30}


def _amount(text: str) -> float:
    """A quantity as the simulator writes them (plain, milli, Mi, Gi)."""
    number = text.rstrip("kmMGi")
    return float(number) * _UNITS[text[len(number) :]]


def _kube(kind: str, name_label: str) -> Objects:
    def objects(w: World) -> Iterator[tuple[dict[str, Any], Raw]]:
        by_id = {c["metadata"]["uid"]: c for c in w.clusters}
        for cid, kinds in w.kube.items():
            for item in kinds[kind]:
                meta = item["metadata"]
                ident = _cluster_ident(w, by_id[cid])
                ident |= {"namespace": meta.get("namespace", "default"), name_label: meta["name"]}
                yield ident, item

    return objects


_kube_jobs = _kube("jobs", "job_name")
_kube_cronjobs = _kube("cronjobs", "cronjob")


def _kube_owner(j: Raw) -> tuple[str | None, str | None]:
    owners = field(j, "metadata.ownerReferences") or []
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    return (owner.get("kind"), owner.get("name")) if owner else (None, None)


def _kube_job_conditions(w: World) -> Series:
    out: Series = {}
    for ident, j in _kube_jobs(w):
        for cond in field(j, "status.conditions") or []:
            if cond["type"] not in KUBE_CONDITIONS:
                continue
            for label, raw in (("true", "True"), ("false", "False"), ("unknown", "Unknown")):
                key = _labels(**ident, condition=cond["type"], status=label)
                out[key] = 1.0 if cond["status"] == raw else 0.0
    return out


def _kube_next_schedule(w: World, c: Raw) -> float | None:
    from zoneinfo import ZoneInfo

    from croniter import croniter

    base = ts(field(c, "status.lastScheduleTime")) or ts(field(c, "metadata.creationTimestamp"))
    if base is None:
        return None
    zone = field(c, "spec.timeZone")
    start = datetime.fromtimestamp(base, ZoneInfo(zone) if zone else UTC)
    return float(croniter(c["spec"]["schedule"], start).get_next(float))


def _kube_quotas(w: World) -> Series:
    out: Series = {}
    for ident, q in _kube("resourcequotas", "resourcequota")(w):
        for kind in ("hard", "used"):
            for resource, text in (field(q, f"status.{kind}") or {}).items():
                out[_labels(**ident, resource=resource, type=kind)] = _amount(text)
    return out


KUBE_ORACLES: dict[str, Callable[[World], Series]] = {
    "cce_kube_job_info": info(
        _kube_jobs,
        owner_kind=lambda j: _kube_owner(j)[0],
        owner_name=lambda j: _kube_owner(j)[1],
    ),
    "cce_kube_job_status_active": gauge(_kube_jobs, lambda w, j: field(j, "status.active") or 0),
    "cce_kube_job_status_succeeded": gauge(
        _kube_jobs, lambda w, j: field(j, "status.succeeded") or 0
    ),
    "cce_kube_job_status_failed": gauge(_kube_jobs, lambda w, j: field(j, "status.failed") or 0),
    "cce_kube_job_status_start_time_seconds": gauge(
        _kube_jobs, lambda w, j: ts(field(j, "status.startTime"))
    ),
    "cce_kube_job_status_completion_time_seconds": gauge(
        _kube_jobs, lambda w, j: ts(field(j, "status.completionTime"))
    ),
    "cce_kube_job_status_condition": _kube_job_conditions,
    "cce_kube_job_spec_active_deadline_seconds": gauge(
        _kube_jobs, lambda w, j: field(j, "spec.activeDeadlineSeconds")
    ),
    "cce_kube_cronjob_info": info(
        _kube_cronjobs, schedule=_path("spec.schedule"), timezone=_path("spec.timeZone")
    ),
    "cce_kube_cronjob_spec_suspend": gauge(
        _kube_cronjobs, lambda w, c: 1 if field(c, "spec.suspend") else 0
    ),
    "cce_kube_cronjob_status_last_schedule_time_seconds": gauge(
        _kube_cronjobs, lambda w, c: ts(field(c, "status.lastScheduleTime"))
    ),
    "cce_kube_cronjob_status_last_successful_time_seconds": gauge(
        _kube_cronjobs, lambda w, c: ts(field(c, "status.lastSuccessfulTime"))
    ),
    "cce_kube_cronjob_next_schedule_time_seconds": gauge(_kube_cronjobs, _kube_next_schedule),
    "cce_kube_resourcequota": _kube_quotas,
}

ORACLES: dict[str, Callable[[World], Series]] = {
    "cce_cluster_info": info(
        _clusters,
        type=_path("spec.type"),
        flavor=_path("spec.flavor"),
        version=_path("spec.version"),
        container_network_mode=_path("spec.containerNetwork.mode"),
        category=_path("spec.category"),
        billing_mode=_path("spec.billingMode"),
    ),
    "cce_cluster_status_condition": conditions(_clusters, reasons=False),
    "cce_cluster_status_condition_reason": conditions(_clusters, reasons=True),
    "cce_cluster_locked": _locked,
    "cce_cluster_control_plane_az_info": _control_plane_azs,
    "cce_cluster_upgrade_available": _upgrade_available,
    "cce_cluster_upgrade_target_info": _upgrade_targets,
    "cce_node_status_last_probe_timestamp_seconds": gauge(
        _nodes, lambda w, n: ts(field(n, "status.lastProbeTime"))
    ),
    "cce_node_configuration_up_to_date": gauge(
        _nodes, lambda w, n: field(n, "status.configurationUpToDate")
    ),
    "cce_nodepool_status_condition": conditions(_pools, reasons=False),
    "cce_nodepool_status_condition_reason": conditions(_pools, reasons=True),
    "cce_nodepool_status_nodes": _pool_states,
    "cce_nodepool_status_configuration_synced_nodes": gauge(
        _pools, lambda w, p: field(p, "status.configurationSyncedNodeCount")
    ),
    "cce_nodepool_scalegroup_nodes": _scalegroups,
    "cce_addon_upgrade_available": _addon_upgrade,
    "cce_cluster_status_phase": state_set(
        _clusters, "cce_cluster_status_phase", "phase", _path("status.phase")
    ),
    "cce_cluster_status_phase_since_timestamp_seconds": since("cluster", _clusters),
    "cce_cluster_created_timestamp_seconds": gauge(
        _clusters, lambda w, c: ts(field(c, "metadata.creationTimestamp"))
    ),
    "cce_cluster_nodes": gauge(_clusters, lambda w, c: _node_count(w, c, active=False)),
    "cce_cluster_nodes_active": gauge(_clusters, lambda w, c: _node_count(w, c, active=True)),
    "cce_cluster_max_nodes": gauge(_clusters, _max_nodes),
    "cce_node_info": info(
        _nodes,
        flavor=_path("spec.flavor"),
        az=_path("spec.az"),
        os=_path("spec.os"),
        nodepool_id=lambda n: field(n, "metadata.annotations").get("kubernetes.io/node-pool.id"),
        private_ip=_path("status.privateIP"),
    ),
    "cce_node_status_phase": state_set(
        _nodes, "cce_node_status_phase", "phase", _path("status.phase")
    ),
    "cce_node_status_phase_since_timestamp_seconds": since("node", _nodes),
    "cce_node_created_timestamp_seconds": gauge(
        _nodes, lambda w, n: ts(field(n, "metadata.creationTimestamp"))
    ),
    "cce_nodepool_info": info(
        _pools,
        flavor=_path("spec.nodeTemplate.flavor"),
        az=_path("spec.nodeTemplate.az"),
        os=_path("spec.nodeTemplate.os"),
    ),
    "cce_nodepool_nodes": gauge(_pools, lambda w, p: field(p, "status.currentNode")),
    "cce_nodepool_initial_nodes": gauge(_pools, lambda w, p: field(p, "spec.initialNodeCount")),
    "cce_nodepool_autoscaling_enabled": gauge(
        _pools, lambda w, p: 1 if field(p, "spec.autoscaling.enable") else 0
    ),
    "cce_nodepool_autoscaling_min_nodes": gauge(
        _pools, lambda w, p: field(p, "spec.autoscaling.minNodeCount")
    ),
    "cce_nodepool_autoscaling_max_nodes": gauge(
        _pools, lambda w, p: field(p, "spec.autoscaling.maxNodeCount")
    ),
    "cce_nodepool_status_phase": state_set(
        _pools, "cce_nodepool_status_phase", "phase", _pool_phase
    ),
    "cce_nodepool_status_phase_since_timestamp_seconds": _pool_since,
    "cce_addon_info": info(
        _addons,
        version=lambda a: field(a, "spec.version") or field(a, "status.currentVersion.version"),
        type=_path("spec.addonTemplateType"),
    ),
    "cce_addon_status": state_set(_addons, "cce_addon_status", "status", _path("status.status")),
    "cce_addon_status_since_timestamp_seconds": since("addon", _addons),
    "cce_job_info": info(
        _jobs,
        type=_path("spec.type"),
        resource_id=_path("spec.resourceID"),
        resource=_path("spec.resourceName"),
    ),
    "cce_job_status_phase": state_set(
        _jobs, "cce_job_status_phase", "phase", _path("status.phase")
    ),
    "cce_job_created_timestamp_seconds": gauge(
        _jobs, lambda w, j: ts(field(j, "metadata.creationTimestamp"))
    ),
    "cce_job_completion_timestamp_seconds": gauge(_jobs, _completion),
    "cce_job_duration_seconds": gauge(_jobs, _duration),
    "cce_quota_limit": _quotas("quotaLimit"),
    "cce_quota_used": _quotas("used"),
    "cce_exporter_build_info": _build_info,
    "cce_exporter_collect_duration_seconds": _health(lambda h: h.duration_seconds),
    "cce_exporter_collect_success": _health(lambda h: 1 if h.success else 0),
    "cce_exporter_cluster_collect_success": _cluster_outcomes,
    "cce_exporter_last_success_timestamp_seconds": _health(lambda h: h.last_success),
    **KUBE_ORACLES,
}

#: Every family row of the metric tables, with its table: what the renderer can produce.
TABLE_FAMILIES: dict[str, tuple[Any, Any]] = {
    row.name: (table, row)
    for tables in GROUP_TABLES.values()
    for table in tables
    for row in table.families
}


def _show(series: Mapping[frozenset[tuple[str, str]], float], limit: int = 5) -> str:
    return "\n".join(f"  {dict(sorted(k))} {v}" for k, v in list(series.items())[:limit])


@pytest.mark.parametrize("name", sorted(TABLE_FAMILIES))
def test_family_labels_and_values(name: str) -> None:
    table, row = TABLE_FAMILIES[name]
    got = rendered().get(name, {})
    assert got, f"{name}: no series rendered from the simulated world"
    # What the table itself allows: its identity, its row's labels (a state set's label among
    # them), the target's static labels; finite values.
    allowed = {*table.identity, *row.label_names, *STATIC}
    state_label = getattr(row, "label", None)
    if isinstance(state_label, str):
        allowed.add(state_label)
    for labels, value in got.items():
        assert {k for k, _ in labels} <= allowed, (name, dict(labels))
        assert math.isfinite(value), (name, dict(labels), value)
    oracle = ORACLES.get(name)
    # A new family without its focused check fails here (a skip would let a careless golden
    # regeneration hide a renamed label, which is what this file exists to catch).
    assert oracle is not None, f"{name}: no focused oracle; add one to ORACLES in {__name__}"
    expected = oracle(world())
    missing = {k: v for k, v in expected.items() if k not in got}
    extra = {k: v for k, v in got.items() if k not in expected}
    assert not missing and not extra, (
        f"{name}: series differ\nexpected, not rendered:\n{_show(missing)}\n"
        f"rendered, not expected:\n{_show(extra)}"
    )
    wrong = {k: (got[k], v) for k, v in expected.items() if got[k] != pytest.approx(v)}
    assert not wrong, f"{name}: values differ (rendered, expected): {list(wrong.values())[:5]}"


def test_the_world_exercises_every_state_and_optional_label() -> None:
    """The simulated world is rich enough for the oracles to mean something: more than one
    value of each state set is current somewhere, and every optional label shows up."""
    got = rendered()
    for family in STATE_SETS:
        if family not in got:
            continue
        label = {"cce_addon_status": "status"}.get(family, "phase")
        current = {dict(k)[label] for k, v in got[family].items() if v == 1.0}
        assert len(current) > 1, (family, current)
    seen_labels = {name: {k for labels in s for k, _ in labels} for name, s in got.items()}
    for name, (_, row) in TABLE_FAMILIES.items():
        assert set(row.label_names) <= seen_labels.get(name, set()), name


def test_the_configuration_refuses_every_static_label_a_table_would_leave_out() -> None:
    """A static label a table cannot carry (its identity or a family's own label) is refused
    when the configuration loads, not silently left out of the series."""
    for tables in GROUP_TABLES.values():
        for table in tables:
            missing = sorted(table.reserved_labels - RESERVED_LABELS)
            assert not missing, (table.resource, missing)
