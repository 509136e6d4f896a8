"""The simulated resources (jobs, nodes, node pools, add-ons, clusters) and how each renders
as the API's JSON."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from exporter.simulator.catalog import (
    _NODE_COUNT_STATES,
    _PROBE_MARK,
    AZS,
    K8S_VERSIONS,
    NODE_FLAVORS,
    AddonTemplate,
)
from exporter.simulator.formats import go_time, rfc3339
from exporter.simulator.timeline import Horizon, Segment, Timeline

# --- resources ----------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Job:
    uid: str
    type: str
    cluster_uid: str
    created: int
    started: int
    finished: int
    failed: bool = False
    resource_id: str | None = None
    resource_name: str | None = None
    extend_param: dict[str, str] | None = None
    fail_reason: str = ""
    sub_jobs: list[Job] = field(default_factory=list)

    def phase(self, now: int) -> str:
        if now < self.started:
            return "Initializing"
        if now < self.finished:
            return "Running"
        return "Failed" if self.failed else "Success"

    def next_change(self, now: int) -> int | None:
        for instant in (self.started, self.finished):
            if instant > now:
                return instant
        return None

    def render(self, now: int, horizon: Horizon) -> dict[str, Any]:
        horizon.note(self.next_change(now))
        phase = self.phase(now)
        updated = self.created
        for instant in (self.started, self.finished):
            if instant <= now:
                updated = instant
        spec: dict[str, Any] = {"type": self.type, "clusterUID": self.cluster_uid}
        if self.resource_id is not None:
            spec["resourceID"] = self.resource_id
        if self.resource_name is not None:
            spec["resourceName"] = self.resource_name
        if self.extend_param is not None:
            spec["extendParam"] = dict(self.extend_param)
        if self.sub_jobs:
            spec["subJobs"] = [j.render(now, horizon) for j in self.sub_jobs]
        status: dict[str, Any] = {"phase": phase}
        status["reason"] = self.fail_reason if phase == "Failed" else ""
        return {
            "kind": "Job",
            "apiVersion": "v3",
            "metadata": {
                "uid": self.uid,
                "creationTimestamp": go_time(self.created),
                "updateTimestamp": go_time(updated),
            },
            "spec": spec,
            "status": status,
        }


@dataclass(eq=False, slots=True)
class Node:
    uid: str
    name: str
    cluster_uid: str
    created: int
    flavor: str
    az: str
    os: str
    pool_id: str
    server_id: str
    private_ip: str
    public_ip: str | None
    timeline: Timeline
    #: ``status.configurationUpToDate``: False once the pool's template moved on.
    config_up_to_date: bool = True
    #: A probe frozen at this instant (a stale status); None: probed with everyone else.
    probe_at: int | None = None

    def render(self, now: int, horizon: Horizon) -> dict[str, Any] | None:
        """The node's JSON object; ``lastProbeTime`` is :data:`_PROBE_MARK` unless frozen (the
        list substitutes the shared probe instant, so that cached nodes stay cached)."""
        seg, nxt = self.timeline.state(now)
        horizon.note(nxt)
        if seg.phase is None:
            return None
        status: dict[str, Any] = {"phase": seg.phase}
        status["lastProbeTime"] = _PROBE_MARK if self.probe_at is None else go_time(self.probe_at)
        if seg.job_id:
            status["jobID"] = seg.job_id
        status["serverId"] = self.server_id
        if self.public_ip:
            status["publicIP"] = self.public_ip
        status["privateIP"] = self.private_ip
        if seg.reason:
            status["reason"] = seg.reason
            status["message"] = seg.message or ""
        status["configurationUpToDate"] = self.config_up_to_date
        return {
            "kind": "Node",
            "apiVersion": "v3",
            "metadata": {
                "name": self.name,
                "uid": self.uid,
                "creationTimestamp": go_time(self.created),
                "updateTimestamp": go_time(max(self.created, seg.at)),
                "annotations": {"kubernetes.io/node-pool.id": self.pool_id},
            },
            "spec": {
                "flavor": self.flavor,
                "az": self.az,
                "os": self.os,
                "login": {"sshKey": "KeyPair-sim"},
                "rootVolume": {"volumetype": "SATA", "size": 40},
                "dataVolumes": [{"volumetype": "SSD", "size": 100}],
                "publicIP": {"eip": {"bandwidth": {}}},
                "billingMode": 0,
            },
            "status": status,
        }


@dataclass(eq=False, slots=True)
class NodePool:
    uid: str
    name: str
    flavor: str
    az: str
    os: str
    phase: str
    initial_nodes: int | None
    autoscaling: dict[str, Any]
    default: bool = False
    #: ``status.conditions`` (SDK ``NodePoolCondition``): type -> (status, reason).
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)

    def render(self, current_nodes: int, counts: Counter[str] | None = None) -> dict[str, Any]:
        template: dict[str, Any] = {
            "flavor": self.flavor,
            "az": self.az,
            "os": self.os,
            # (A pool template's publicIP is the SDK's NodeEIPSpec, not a node's NodePublicIP;
            # an empty userPassword lacks the SDK's required password: both left out.)
            "login": {"sshKey": "KeyPair-sim"},
            "rootVolume": {"volumetype": "SATA", "size": 40} if not self.default else {},
            "billingMode": 0,
        }
        spec: dict[str, Any] = {}
        if not self.default:
            spec["type"] = "vm"
            if self.initial_nodes is not None:
                spec["initialNodeCount"] = self.initial_nodes
            template["dataVolumes"] = [
                {"volumetype": "SATA", "size": 100, "extendParam": {"useType": "docker"}}
            ]
            template["extendParam"] = {
                "alpha.cce/preInstall": "",
                "alpha.cce/postInstall": "",
                "maxPods": 110,
            }
            template["k8sTags"] = {"cce.cloud.com/cce-nodepool": self.name}
        spec["nodeTemplate"] = template
        spec["autoscaling"] = dict(self.autoscaling)
        if not self.default:
            spec["nodeManagement"] = {}
        status: dict[str, Any] = {"currentNode": current_nodes}
        # The default pool leaves the phase out altogether; the others send "" when normal.
        if not self.default:
            status["phase"] = self.phase
            # Today's API (SDK NodePoolStatus): node counts, conditions and scale groups.
            counts = counts if counts is not None else Counter()
            status.update(
                {
                    "creatingNode": counts["creating"],
                    "deletingNode": counts["deleting"],
                    "activeNode": counts["active"],
                    "repairingNode": counts["repairing"],
                    "repairFailedNode": counts["repair_failed"],
                    "configurationSyncedNodeCount": counts["synced"],
                }
            )
            conditions = [
                {"type": kind, "status": state, "reason": reason, "message": ""}
                for kind, (state, reason) in self.conditions.items()
            ]
            status["conditions"] = conditions
            upcoming = counts["creating"]
            status["scaleGroupStatuses"] = [
                {
                    "name": "default",
                    "uid": "default",
                    "phase": self.phase,
                    "desiredNodeCount": current_nodes + upcoming - counts["deleting"],
                    "existingNodeCount": {
                        "postPaid": current_nodes,
                        "prePaid": 0,
                        "total": current_nodes,
                    },
                    "upcomingNodeCount": {"postPaid": upcoming, "prePaid": 0, "total": upcoming},
                    "conditions": conditions,
                }
            ]
        return {
            "kind": "NodePool",
            "apiVersion": "v3",
            "metadata": {"name": self.name, "uid": self.uid},
            "spec": spec,
            "status": status,
        }


@dataclass(eq=False, slots=True)
class Addon:
    uid: str
    cluster_uid: str
    template: AddonTemplate
    created: int
    updated: int
    status: str
    reason: str
    message: str
    #: The installed version when older than the template's (an upgrade is available).
    installed: str = ""

    def render(self) -> dict[str, Any]:
        t = self.template
        version = self.installed or t.version
        return {
            "metadata": {
                "uid": self.uid,
                "name": t.name,
                "creationTimestamp": rfc3339(self.created),
                "updateTimestamp": rfc3339(self.updated),
            },
            "apiVersion": "v3",
            "kind": "Addon",
            "spec": {
                "addonTemplateName": t.name,
                "addonTemplateLogo": "",
                "addonTemplateType": t.type,
                "values": {"flavor": {"replicas": 2}, "basic": {"platform": "linux-amd64"}},
                "description": t.description,
                "addonTemplateLabels": list(t.labels),
                "clusterID": self.cluster_uid,
                "version": version,
            },
            "status": {
                "message": self.message,
                "Reason": self.reason,
                "currentVersion": {
                    "input": {"basic": {}, "parameters": {}},
                    "stable": True,
                    "creationTimestamp": "2024-01-15T08:00:00Z",
                    "version": version,
                    "translate": {"en_US": {"addon": {"changeLog": "", "description": ""}}},
                    "supportVersions": [
                        {"clusterType": "VirtualMachine", "clusterVersion": ["v1.*"]}
                    ],
                    "updateTimestamp": "2024-01-15T08:00:00Z",
                },
                "status": self.status,
            },
        }


@dataclass(eq=False, slots=True)
class Cluster:
    uid: str
    name: str
    created: int
    flavor: str
    version: str
    type: str
    category: str
    description: str
    vpc: str
    subnet: str
    network_mode: str
    container_cidr: str
    az: str
    internal_ip: str
    external_ip: str | None
    timeline: Timeline
    nodes: dict[str, Node] = field(default_factory=dict)
    pools: dict[str, NodePool] = field(default_factory=dict)
    addons: dict[str, Addon] = field(default_factory=dict)
    fail_next_wakeup: bool = False
    #: Today's status (SDK ClusterStatus): the certificate's stage, the last rotation's outcome
    #: (None: never rotated), the agency's state, and a billing lock (scene, source) or None.
    certificate: str = "CertificateValid"
    rotation: str | None = None
    agency: bool = True
    lock: tuple[str, str] | None = None
    masters: int = 1

    def segment(self, now: int) -> Segment:
        return self.timeline.state(now)[0]

    def render(
        self, now: int, horizon: Horizon, *, detail: bool = False, error_status: bool = False
    ) -> dict[str, Any] | None:
        seg, nxt = self.timeline.state(now)
        horizon.note(nxt)
        if seg.phase is None:
            return None
        phase = seg.phase
        # Reference 5.2: without errorStatus the Error phase is masked as Deleting.
        if phase == "Error" and not error_status:
            phase = "Deleting"
        metadata: dict[str, Any] = {
            "name": self.name,
            "uid": self.uid,
            "creationTimestamp": go_time(self.created),
            "updateTimestamp": go_time(max(self.created, seg.at)),
        }
        if detail:
            metadata["annotations"] = self._detail_annotations(now, horizon)
        status: dict[str, Any] = {"phase": phase}
        if seg.job_id:
            status["jobID"] = seg.job_id
        if phase != "Available" and seg.reason:
            status["reason"] = seg.reason
            status["message"] = seg.message or ""
        endpoints = [{"url": f"https://{self.internal_ip}:5443", "type": "Internal"}]
        if self.external_ip:
            endpoints.append({"url": f"https://{self.external_ip}:5443", "type": "External"})
        status["endpoints"] = endpoints
        status["isLocked"] = self.lock is not None
        if self.lock is not None:
            status["lockScene"], status["lockSource"] = self.lock
        status["conditions"] = self._conditions()
        spec_extra: dict[str, Any] = {}
        if self.category == "Turbo":
            # Required for CCE Turbo (SDK ClusterSpec.eniNetwork): the container subnets.
            spec_extra["eniNetwork"] = {"subnets": [{"subnetID": self.subnet}]}
        return {
            "kind": "Cluster",
            "apiVersion": "v3",
            "metadata": metadata,
            "spec": {
                "category": self.category,
                "type": self.type,
                "flavor": self.flavor,
                "version": self.version,
                "description": self.description,
                "hostNetwork": {"vpc": self.vpc, "subnet": self.subnet},
                "containerNetwork": {"mode": self.network_mode, "cidr": self.container_cidr},
                "authentication": {"mode": "rbac", "authenticatingProxy": {}},
                "billingMode": 0,
                "kubernetesSvcIpRange": "10.247.0.0/16",
                "extendParam": {"clusterAZ": self.az},
                "masters": self._masters(),
                **spec_extra,
            },
            "status": status,
        }

    def _masters(self) -> list[dict[str, str]]:
        """The control plane's nodes (SDK ``MasterSpec``): one zone each, spread over the AZs."""
        if self.az in AZS:
            return [{"availabilityZone": self.az} for _ in range(self.masters)]
        return [{"availabilityZone": AZS[i % len(AZS)]} for i in range(self.masters)]

    def _conditions(self) -> list[dict[str, str]]:
        """``status.conditions`` (SDK ``ClusterCondition``)."""
        valid = self.certificate == "CertificateValid"
        out = [
            {
                "type": "ClusterCertificate",
                "status": "True" if valid else "False",
                "reason": self.certificate,
                "message": "",
            },
            {
                "type": "AgencyAvailable",
                "status": "True" if self.agency else "False",
                "reason": "" if self.agency else "AgencyNotFound",
                "message": "",
            },
        ]
        if self.rotation is not None:
            out.append(
                {
                    "type": "CertificateRotation",
                    "status": "False" if self.rotation == "RotationFailed" else "True",
                    "reason": self.rotation,
                    "message": "",
                }
            )
        return out

    def upgrade_targets(self) -> list[str]:
        """Versions this cluster could be upgraded to: the later ones of :data:`K8S_VERSIONS`."""
        if self.version not in K8S_VERSIONS:
            return []
        return list(K8S_VERSIONS[K8S_VERSIONS.index(self.version) + 1 :])

    def _detail_annotations(self, now: int, horizon: Horizon) -> dict[str, str]:
        total = active = cpu = memory = 0
        for node in self.nodes.values():
            seg, nxt = node.timeline.state(now)
            horizon.note(nxt)
            if seg.phase is None:
                continue
            total += 1
            if seg.phase == "Active":
                active += 1
            c, m = NODE_FLAVORS.get(node.flavor, (2, 4))
            cpu += c
            memory += m
        installed = [
            {
                "addonTemplateName": a.template.name,
                "version": a.installed or a.template.version,
                "status": a.status,
            }
            for a in self.addons.values()
        ]
        return {
            "totalNodesNumber": str(total),
            "activeNodesNumber": str(active),
            "totalNodesCPU": str(cpu),
            "totalNodesMemory": str(memory),
            "installedAddonInstances": json.dumps(installed, separators=(",", ":")),
        }

    def pool_counts(self, now: int, horizon: Horizon) -> Counter[str]:
        counts: Counter[str] = Counter()
        for node in self.nodes.values():
            seg, nxt = node.timeline.state(now)
            horizon.note(nxt)
            if seg.phase is not None:
                counts[node.pool_id] += 1
        return counts

    def pool_states(self, now: int, horizon: Horizon) -> dict[str, Counter[str]]:
        """Per pool, its nodes by the SDK's count names (creating, active, synced...)."""
        states: dict[str, Counter[str]] = {}
        for node in self.nodes.values():
            seg, nxt = node.timeline.state(now)
            horizon.note(nxt)
            if seg.phase is None:
                continue
            counts = states.setdefault(node.pool_id, Counter())
            state = _NODE_COUNT_STATES.get(seg.phase)
            if state is not None:
                counts[state] += 1
            if node.config_up_to_date:
                counts["synced"] += 1
        return states
