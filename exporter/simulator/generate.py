"""Generating the simulated world from a seed: clusters, their nodes, pools, add-ons and jobs."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Callable

from exporter.cce.models import NODE_PHASES
from exporter.simulator.catalog import (
    _ADDON_REASONS,
    _CLUSTER_JOB_TYPES,
    _JOB_SUBTYPES,
    _STATIC_REASONS,
    _TEMPLATE_BY_NAME,
    ADDON_SPECIAL_STATUSES,
    AZS,
    CLUSTER_FLAVORS,
    CLUSTER_SPECIAL_PHASES,
    DAY,
    HOUR,
    K8S_VERSIONS,
    MINUTE,
    NODE_FLAVORS,
    NODE_OSES,
    NODE_PAGE_MAX,
    NODE_SPECIAL_PHASES,
    NODEPOOL_SPECIAL_PHASES,
    older_version,
)
from exporter.simulator.clock import NS
from exporter.simulator.formats import SimError
from exporter.simulator.resources import Addon, Cluster, Job, Node, NodePool
from exporter.simulator.timeline import Segment, Timeline


class WorldGeneration:
    """The world's state and its generation from the seed (see :mod:`exporter.simulator.world`)."""

    def __init__(
        self,
        *,
        seed: int,
        clusters: int,
        nodes_per_cluster: int,
        now_ns: Callable[[], int],
        transition_seconds: float = 60.0,
        project_id: str = "0" * 32,
        region: str = "sim-region-1",
    ) -> None:
        self.seed = seed
        self.now_ns = now_ns
        self.transition_ns = max(1, int(transition_seconds * NS))
        self.project_id = project_id
        self.region = region
        self.clusters: dict[str, Cluster] = {}
        self.jobs: dict[str, Job] = {}
        self.version = 0
        self.wakeup_failures = 0
        self._cache: dict[tuple[object, ...], tuple[int, int | None, bytes]] = {}
        self._node_json: dict[str, tuple[int, Segment, bytes]] = {}
        self._parts_cache: dict[str, tuple[int, int | None, list[tuple[str, bytes]]]] = {}
        #: The largest node page served (the public cloud's is 2,000).
        self.node_page_max = NODE_PAGE_MAX
        #: Optional calls this installation offers (a Stack installation may lack some).
        self.features: dict[str, bool] = {"upgradeinfo": True, "addontemplates": True}
        self._rng = random.Random(seed)
        self._counters: Counter[str] = Counter()
        self._node_seq = 0
        self._pool_seq = 0
        self._addon_seq = 0
        self._job_seq = 0
        self._generate(clusters, nodes_per_cluster)

    # --- ids and helpers ----------------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _past(self, now: int, min_ns: int, max_ns: int) -> int:
        """An instant in the past, quantised at random so fraction digits vary (0 to 9)."""
        value = now - self._rng.randrange(min_ns, max_ns)
        quantum = self._rng.choice((1, 1, 1, 10, 100, 1000, NS))
        return value - value % quantum

    def _new_job(
        self,
        job_type: str,
        cluster_uid: str,
        *,
        created: int,
        init_ns: int,
        run_ns: int,
        failed: bool = False,
        resource_id: str | None = None,
        resource_name: str | None = None,
    ) -> Job:
        started = created + init_ns
        finished = started + run_ns
        job = Job(
            uid=self._uuid(),
            type=job_type,
            cluster_uid=cluster_uid,
            created=created,
            started=started,
            finished=finished,
            failed=failed,
            resource_id=resource_id,
            resource_name=resource_name,
            extend_param={"serverID": self._uuid()} if resource_id else None,
        )
        subtypes = _JOB_SUBTYPES.get(job_type, ("Execute",))
        part = max(1, run_ns // len(subtypes))
        for i, sub_type in enumerate(subtypes):
            sub_failed = failed and i == len(subtypes) - 1
            sub = Job(
                uid=self._uuid(),
                type=sub_type,
                cluster_uid=cluster_uid,
                created=created + (i + 1) * 1_234_567,
                started=started + i * part,
                finished=finished if i == len(subtypes) - 1 else started + (i + 1) * part,
                failed=sub_failed,
                fail_reason=f"{sub_type} failed: insufficient resources" if sub_failed else "",
            )
            job.sub_jobs.append(sub)
            self.jobs[sub.uid] = sub
        if failed:
            job.fail_reason = f"sub-job {subtypes[-1]} failed"
        self.jobs[job.uid] = job
        self._job_seq += 1
        return job

    def cluster(self, uid: str) -> Cluster:
        cluster = self.clusters.get(uid)
        if cluster is None or cluster.segment(self.now_ns()).phase is None:
            raise SimError(404, "CCE.01404001", f"cluster {uid} not found")
        return cluster

    def _changed(self) -> None:
        self.version += 1

    def add_nodes(
        self, cluster_uid: str, count: int, *, phase: str | None = None, generated: bool = False
    ) -> list[Node]:
        now = self.now_ns()
        cluster = self.clusters[cluster_uid] if generated else self.cluster(cluster_uid)
        rng = self._rng
        pools = list(cluster.pools.values())
        added: list[Node] = []
        for _ in range(count):
            seq = self._node_seq
            self._node_seq += 1
            node_phase = phase or "Active"
            if phase is None and generated and seq % 13 == 7:
                node_phase = NODE_SPECIAL_PHASES[(seq // 13) % len(NODE_SPECIAL_PHASES)]
            pool = (
                pools[0] if seq % 3 == 0 or len(pools) == 1 else pools[1 + seq % (len(pools) - 1)]
            )
            uid = self._uuid()
            name = f"{pool.name if not pool.default else cluster.name}-{seq:06d}"[-56:].lstrip("-#")
            name = name.replace("#", "-").replace(".", "-").replace(" ", "-").lower()
            if node_phase in ("Build", "Installing"):
                created = now - rng.randrange(10 * NS, 2 * MINUTE)
            else:
                created = max(cluster.created, self._past(now, HOUR, 300 * DAY))
            known = node_phase in NODE_PHASES
            node = Node(
                uid=uid,
                name=name,
                cluster_uid=cluster.uid,
                created=created,
                flavor=pool.flavor,
                az=pool.az,
                os=pool.os,
                pool_id=pool.uid,
                server_id=self._uuid(),
                private_ip=f"10.{seq // 65536 % 256}.{seq // 256 % 256}.{seq % 256}",
                public_ip=f"100.96.{seq // 256 % 256}.{seq % 256}" if seq % 10 == 0 else None,
                timeline=(
                    self._node_timeline(now, cluster, uid, name, created, node_phase)
                    if known
                    else Timeline(Segment(created, node_phase))
                ),
            )
            if generated and seq % 11 == 4:
                node.config_up_to_date = False  # the pool's template changed since
            if generated and seq % 97 == 50:
                node.probe_at = now - 20 * MINUTE  # a status that stopped being refreshed
            cluster.nodes[uid] = node
            added.append(node)
        if not generated:
            self._changed()
        return added

    # --- generation ---------------------------------------------------------------------------

    def _generate(self, n_clusters: int, nodes_per_cluster: int) -> None:
        now = self.now_ns()
        specials = list(CLUSTER_SPECIAL_PHASES[: max(0, n_clusters // 2)])
        # Deterministic positions for the special phases; cluster 0 always stays Available.
        positions = list(range(1, n_clusters))
        self._rng.shuffle(positions)
        phase_of = {pos: phase for pos, phase in zip(positions, specials, strict=False)}
        for i in range(n_clusters):
            self._add_cluster(
                now,
                name=f"sim-cluster-{i:03d}",
                phase=phase_of.get(i, "Available"),
                nodes=nodes_per_cluster,
                generated=True,
            )

    def _cluster_timeline(
        self, now: int, uid: str, name: str, created: int, phase: str
    ) -> Timeline:
        t = self.transition_ns
        if phase == "Available":
            return Timeline(Segment(created, "Available"))
        if phase in _STATIC_REASONS:
            reason, message = _STATIC_REASONS[phase]
            since = max(created, now - self._rng.randrange(MINUTE, DAY))
            return Timeline(Segment(created, "Available"), Segment(since, phase, reason, message))
        if phase == "Hibernation":
            since = max(created, now - self._rng.randrange(HOUR, 3 * DAY))
            return Timeline(Segment(created, "Available"), Segment(since, "Hibernation"))
        if phase == "Hibernating":
            return Timeline(
                Segment(created, "Available"),
                Segment(now, "Hibernating"),
                Segment(now + t, "Hibernation"),
            )
        if phase == "Awaking":
            return Timeline(
                Segment(created, "Hibernation"),
                Segment(now, "Awaking"),
                Segment(now + t, "Available"),
            )
        job_type = _CLUSTER_JOB_TYPES[phase]
        if phase == "Upgrading":
            # The stuck job: running for hours, finishing only after a long while.
            job = self._new_job(
                job_type,
                uid,
                created=now - 3 * HOUR,
                init_ns=20 * NS,
                run_ns=8 * HOUR,
                resource_id=uid,
                resource_name=name,
            )
        else:
            job = self._new_job(
                job_type,
                uid,
                created=now - self._rng.randrange(MINUTE, 5 * MINUTE),
                init_ns=30 * NS,
                run_ns=self._rng.randrange(10 * MINUTE, 30 * MINUTE),
                failed=phase == "ScalingDown",
                resource_id=uid,
                resource_name=name,
            )
        start = job.created if phase != "Creating" else created
        if phase == "Creating":
            after: str | None = "Unavailable" if job.failed else "Available"
        elif phase == "Deleting":
            after = None
        else:
            after = "Available"
        segments = [Segment(start, phase, job_id=job.uid)]
        if phase != "Creating":
            segments.insert(0, Segment(created, "Available"))
        segments.append(Segment(job.finished, after))
        return Timeline(*segments)

    def _add_cluster(
        self,
        now: int,
        *,
        name: str,
        phase: str,
        nodes: int,
        generated: bool,
        flavor: str | None = None,
    ) -> Cluster:
        rng = self._rng
        uid = self._uuid()
        if phase == "Creating":
            created = now - rng.randrange(MINUTE, 5 * MINUTE)
        else:
            created = self._past(now, 2 * DAY, 400 * DAY)
        if flavor is None:
            fitting = [f for f, limit in CLUSTER_FLAVORS if limit >= nodes] or [
                CLUSTER_FLAVORS[6][0]
            ]
            flavor = rng.choice(fitting)
        index = len(self.clusters)
        cluster = Cluster(
            uid=uid,
            name=name,
            created=created,
            flavor=flavor,
            version=rng.choice(K8S_VERSIONS),
            type=rng.choice(("VirtualMachine", "VirtualMachine", "VirtualMachine", "ARM64")),
            category=rng.choice(("CCE", "CCE", "Turbo")),
            description=f"simulated cluster {index}",
            vpc=self._uuid(),
            subnet=self._uuid(),
            network_mode=rng.choice(("overlay_l2", "vpc-router")),
            container_cidr=f"172.{16 + index % 16}.0.0/16",
            az=rng.choice((*AZS, "multi_az")),
            internal_ip=f"192.168.{index // 250 % 250}.{index % 250 + 2}",
            external_ip=f"100.64.{index // 250 % 250}.{index % 250 + 2}"
            if index % 3 == 0
            else None,
            timeline=self._cluster_timeline(now, uid, name, created, phase),
        )
        cluster.masters = {"s1": 1, "s2": 3, "s3": 5}.get(flavor.split(".")[-2], 1)
        if index % 10 == 4:
            cluster.certificate = "CertificateExpiringWithin180Days"
        elif index % 15 == 7:
            cluster.certificate = "CertificateExpiringWithin30Days"
        elif index % 30 == 13:
            cluster.certificate = "CertificateExpired"
        if index % 30 == 22:
            cluster.rotation = "RotationFailed"
        elif index % 5 == 1:
            cluster.rotation = "RotationSucceeded"
        if index % 30 == 17:
            cluster.lock = ("ARREAR", "CBC")
        self.clusters[uid] = cluster
        self._add_pools(cluster)
        if phase not in ("Creating", "Empty"):
            self.add_nodes(uid, nodes, generated=generated)
        self._add_addons(now, cluster)
        return cluster

    def _add_pools(self, cluster: Cluster) -> None:
        rng = self._rng
        az, flavor, os_name = (
            rng.choice(AZS),
            rng.choice(tuple(NODE_FLAVORS)),
            rng.choice(NODE_OSES),
        )
        key = f"{az}#{flavor}#{os_name}"
        cluster.pools[key] = NodePool(
            uid=key,
            name=key,
            flavor=flavor,
            az=az,
            os=os_name,
            phase="",
            initial_nodes=None,
            autoscaling={"enable": False, "maxNodeCount": 50},
            default=True,
        )
        for j in range(rng.choice((1, 2, 2, 3))):
            seq = self._pool_seq
            self._pool_seq += 1
            phase = ""
            if seq % 4 == 3:
                phase = NODEPOOL_SPECIAL_PHASES[(seq // 4) % len(NODEPOOL_SPECIAL_PHASES)]
            conditions = {"Scalable": ("True", "")}
            if phase == "SoldOut":
                # What replaces SoldOut today: not scalable, and why.
                conditions = {
                    "Scalable": ("False", "ResourceInsufficient"),
                    "ResourceInsufficient": ("True", "FlavorSoldOut"),
                }
            elif phase == "Error":
                conditions = {"Scalable": ("False", "Error"), "Error": ("True", "DeleteFailed")}
            elif seq % 9 == 5:
                conditions = {
                    "Scalable": ("False", "QuotaInsufficient"),
                    "QuotaInsufficient": ("True", "ECSQuotaInsufficient"),
                }
            minimum = rng.choice((0, 1, 2))
            pool = NodePool(
                uid=self._uuid(),
                name=f"{cluster.name}-pool-{j}",
                flavor=rng.choice(tuple(NODE_FLAVORS)),
                az=rng.choice(AZS),
                os=rng.choice(NODE_OSES),
                phase=phase,
                initial_nodes=rng.choice((1, 2, 3, 5)),
                autoscaling=(
                    {"enable": True, "minNodeCount": minimum, "maxNodeCount": minimum + 50}
                    if seq % 2 == 0
                    else {"maxNodeCount": 20}
                ),
                conditions=conditions,
            )
            cluster.pools[pool.uid] = pool

    def _add_addons(self, now: int, cluster: Cluster) -> None:
        rng = self._rng
        names = ["coredns", "storage-driver", "metrics-server"]
        names += [n for n in ("autoscaler", "gpu-beta", "web-terminal") if rng.random() < 0.4]
        for name in names:
            seq = self._addon_seq
            self._addon_seq += 1
            status = "running"
            if seq % 5 == 2:
                status = ADDON_SPECIAL_STATUSES[(seq // 5) % len(ADDON_SPECIAL_STATUSES)]
            reason, message = _ADDON_REASONS[status]
            created = max(cluster.created, self._past(now, HOUR, 300 * DAY))
            addon = Addon(
                uid=self._uuid(),
                cluster_uid=cluster.uid,
                template=_TEMPLATE_BY_NAME[name],
                created=created,
                updated=max(created, self._past(now, MINUTE, HOUR)),
                status=status,
                reason=reason,
                message=message,
            )
            if seq % 4 == 1:
                addon.installed = older_version(addon.template.version)
            cluster.addons[addon.uid] = addon

    def _node_timeline(
        self, now: int, cluster: Cluster, uid: str, name: str, created: int, phase: str
    ) -> Timeline:
        rng = self._rng
        if phase == "Active":
            return Timeline(Segment(created, "Active"))
        if phase in ("ShutDown", "Abnormal", "Error", "Repairing", "RepairFailed"):
            since = max(created, now - rng.randrange(MINUTE, DAY))
            reason = {
                "ShutDown": None,
                "Abnormal": "NodeNotReady",
                "Error": "NodeError",
                "Repairing": "NodeRestarting",
                "RepairFailed": "NodeRestartFailed",
            }[phase]
            message = None if reason is None else "kubelet stopped posting node status"
            return Timeline(Segment(created, "Active"), Segment(since, phase, reason, message))
        if phase == "Installed":
            return Timeline(Segment(created, "Installed"), Segment(now + 2 * MINUTE, "Active"))
        if phase in ("Build", "Installing"):
            self._counters["node_create_jobs"] += 1
            failed = self._counters["node_create_jobs"] % 3 == 0
            job = self._new_job(
                "CreateNode",
                cluster.uid,
                created=created,
                # The first Build node's job is still initialising at start.
                init_ns=(3 * MINUTE if phase == "Build" else 20 * NS),
                run_ns=rng.randrange(5 * MINUTE, 15 * MINUTE),
                failed=failed,
                resource_id=uid,
                resource_name=name,
            )
            segs = [Segment(created, phase, job_id=job.uid)]
            if phase == "Build":
                segs.append(Segment(job.started + MINUTE, "Installing", job_id=job.uid))
            end = (
                Segment(job.finished, "Error", "InstallFailed", job.fail_reason) if failed else None
            )
            segs.append(end or Segment(job.finished, "Active"))
            return Timeline(*segs)
        job_type = {"Upgrading": "UpgradeNode", "Deleting": "DeleteNode"}[phase]
        job = self._new_job(
            job_type,
            cluster.uid,
            created=now - rng.randrange(MINUTE, 4 * MINUTE),
            init_ns=15 * NS,
            run_ns=rng.randrange(5 * MINUTE, 20 * MINUTE),
            resource_id=uid,
            resource_name=name,
        )
        return Timeline(
            Segment(created, "Active"),
            Segment(job.created, phase, job_id=job.uid),
            Segment(job.finished, None if phase == "Deleting" else "Active"),
        )
