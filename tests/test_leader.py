"""One hibernation leader: file-lock election with two exporters on the simulator, and the Lease
algorithm against a fake Kubernetes API at the transport level (``httpx.MockTransport``).

No test sleeps: the electors' clocks and sleeps are injected, and a small virtual-time scheduler
wakes the campaigns' sleeps in time order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from lightkube import AsyncClient, Client, KubeConfig
from lightkube.config.models import Cluster as KubeCluster
from lightkube.config.models import User as KubeUser

from exporter.assemble import TargetBuilder
from exporter.cce.models import Cluster
from exporter.collect.service import ExporterService
from exporter.config import load_settings
from exporter.ha.leader import (
    STATE_ANNOTATION,
    FileLockElector,
    LeaderGate,
    LeaseElector,
    LeaseStateStore,
    NotLeaderError,
    SharedFileStateStore,
    StateStoreError,
    elector_from_settings,
    fence_targets,
    format_microtime,
)
from exporter.hibernation.controller import (
    ControllerTarget,
    HibernationController,
    targets_from_service,
)
from exporter.hibernation.hooks import build_hook_routes
from exporter.hibernation.policy import parse_policy_file
from exporter.simulator import Simulator, running_simulator
from exporter.web import Server, build_app

NS, NAME = "monitoring", "cce-exporter-hibernation"
MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
LEASE_PATH = re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/([^/]+)/leases(?:/([^/]+))?$")
T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


# --- a fake Kubernetes API ------------------------------------------------------------------------


def fake_config() -> KubeConfig:
    return KubeConfig.from_one(
        cluster=KubeCluster(server="https://kubernetes.test"), user=KubeUser(token="test-token")
    )


def _status(code: int, reason: str, message: str) -> httpx.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return httpx.Response(code, json=body)


@dataclass
class FakeKube:
    """Leases in memory with the API server's optimistic concurrency and MicroTime parsing.
    ``down`` names clients cut off from it; ``fail`` queues statuses for the next requests."""

    leases: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    version: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    down: set[str] = field(default_factory=set)
    fail: list[int] = field(default_factory=list)
    log: list[tuple[str, str, str]] = field(default_factory=list)
    before_write: Callable[[], None] | None = None

    def transport(self, client: str) -> httpx.MockTransport:
        return httpx.MockTransport(lambda request: self.handle(client, request))

    def bump(self, key: tuple[str, str] = (NS, NAME), **spec: Any) -> None:
        """Another writer changes the lease."""
        lease = self.leases[key]
        lease["spec"].update(spec)
        lease["metadata"]["resourceVersion"] = str(next(self.version))

    def spec(self) -> dict[str, Any]:
        result: dict[str, Any] = self.leases[(NS, NAME)]["spec"]
        return result

    def handle(self, client: str, request: httpx.Request) -> httpx.Response:
        self.log.append((client, request.method, request.url.path))
        if client in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.fail:
            code = self.fail.pop(0)
            return _status(code, "InternalError", "injected failure")
        match = LEASE_PATH.match(request.url.path)
        if match is None:
            return _status(404, "NotFound", "no such path")
        key = (match.group(1), match.group(2) or "")
        if request.method == "GET":
            if key not in self.leases:
                return _status(404, "NotFound", f'leases "{key[1]}" not found')
            return httpx.Response(200, json=self.leases[key])
        body = json.loads(request.content)
        spec = body.get("spec") or {}
        for name in ("acquireTime", "renewTime"):
            if name in spec and not MICROTIME.match(str(spec[name])):
                return _status(400, "BadRequest", f"{name}: not a MicroTime: {spec[name]!r}")
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook()
        if request.method == "POST":
            key = (match.group(1), body["metadata"]["name"])
            if key in self.leases:
                return _status(409, "AlreadyExists", f'leases "{key[1]}" already exists')
        elif request.method == "PUT":
            if key not in self.leases:
                return _status(404, "NotFound", f'leases "{key[1]}" not found')
            given = body["metadata"].get("resourceVersion")
            if given != self.leases[key]["metadata"]["resourceVersion"]:
                return _status(409, "Conflict", "the object has been modified")
        else:
            return _status(405, "MethodNotAllowed", request.method)
        body["metadata"]["resourceVersion"] = str(next(self.version))
        body["metadata"]["namespace"] = key[0]
        self.leases[key] = body
        return httpx.Response(201 if request.method == "POST" else 200, json=body)


class VirtualTime:
    """A clock and a ``sleep`` for the electors: sleeps wake in time order when ``run`` moves
    time forward; ``settle`` lets the woken tasks run until they sleep again."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.now + seconds, next(self._seq), future))
        await future

    @staticmethod
    async def settle() -> None:
        for _ in range(200):  # in-memory transport: every await completes without real I/O
            await asyncio.sleep(0)

    async def run(self, until: float, check: Callable[[], None] | None = None) -> None:
        await self.settle()
        while self._heap and self._heap[0][0] <= until:
            wake, _, future = heapq.heappop(self._heap)
            self.now = wake
            if not future.done():
                future.set_result(None)
            await self.settle()
            if check is not None:
                check()
        self.now = until


def wall(offset: float = 0.0, vt: VirtualTime | None = None) -> Callable[[], datetime]:
    """A wall clock ``offset`` seconds off, moving with the virtual time."""
    return lambda: T0 + timedelta(seconds=(vt.now if vt else 0.0) + offset + 0.25)


@asynccontextmanager
async def elector(
    kube: FakeKube, identity: str, vt: VirtualTime, *, skew: float = 0.0, **kwargs: Any
) -> AsyncIterator[LeaseElector]:
    client = AsyncClient(
        fake_config(),
        namespace=NS,
        transport=kube.transport(identity),
    )
    e = LeaseElector(
        NS,
        NAME,
        identity,
        client=client,
        clock=vt.clock,
        wall_clock=wall(skew, vt),
        sleep=vt.sleep,
        jitter=lambda: 0.0,
        **kwargs,
    )
    try:
        yield e
    finally:
        await e.stop()
        await client.close()


# --- the Lease algorithm --------------------------------------------------------------------------


async def test_acquire_creates_the_lease_then_renews_it() -> None:
    kube, vt = FakeKube(), VirtualTime()
    async with elector(kube, "pod-a", vt) as a:
        assert await a.try_acquire_or_renew()
        spec = kube.spec()
        assert spec["holderIdentity"] == "pod-a"
        assert spec["leaseDurationSeconds"] == 15
        assert spec["leaseTransitions"] == 0
        assert MICROTIME.match(spec["renewTime"]) and spec["acquireTime"] == spec["renewTime"]
        version = kube.leases[(NS, NAME)]["metadata"]["resourceVersion"]
        vt.now = 2.0
        assert await a.try_acquire_or_renew()
        renewed = kube.spec()
        assert renewed["renewTime"] > spec["renewTime"]
        assert renewed["acquireTime"] == spec["acquireTime"]
        assert renewed["leaseTransitions"] == 0
        assert kube.leases[(NS, NAME)]["metadata"]["resourceVersion"] != version
        assert [m for _, m, _ in kube.log] == ["GET", "POST", "GET", "PUT"]


def test_microtime_always_has_six_digits() -> None:
    assert format_microtime(datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)) == (
        "2027-01-02T03:04:05.000000Z"
    )


async def test_a_held_lease_is_taken_only_after_it_expires_on_the_local_clock() -> None:
    kube, vt = FakeKube(), VirtualTime()
    # pod-a's clock is an hour slow: its renewTime always looks long expired to a naive reader.
    async with elector(kube, "pod-a", vt, skew=-3600) as a, elector(kube, "pod-b", vt) as b:
        assert await a.try_acquire_or_renew()
        for step in range(30):
            vt.now = 2.0 * step
            assert await a.try_acquire_or_renew()
            assert not await b.try_acquire_or_renew()
            assert b.leader_identity == "pod-a"
        # pod-a dies without releasing; pod-b saw its last renewal at t=58.
        last_seen = vt.now
        vt.now = last_seen + 14.9
        assert not await b.try_acquire_or_renew()
        vt.now = last_seen + 15.0
        assert await b.try_acquire_or_renew()
        spec = kube.spec()
        assert spec["holderIdentity"] == "pod-b"
        assert spec["leaseTransitions"] == 1
        assert spec["acquireTime"] == spec["renewTime"]


async def test_a_renew_time_in_the_future_does_not_delay_a_take_over() -> None:
    kube, vt = FakeKube(), VirtualTime()
    async with elector(kube, "pod-a", vt, skew=+3600) as a, elector(kube, "pod-b", vt) as b:
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
        vt.now = 15.0
        assert await b.try_acquire_or_renew()
        assert kube.spec()["holderIdentity"] == "pod-b"


async def test_of_two_candidates_the_conflicting_write_loses() -> None:
    kube, vt = FakeKube(), VirtualTime()
    async with elector(kube, "pod-a", vt) as a, elector(kube, "pod-b", vt) as b:
        assert await a.try_acquire_or_renew()
        vt.now = 20.0  # pod-a stopped renewing: the lease is free for the taking
        assert not await b.try_acquire_or_renew()  # first sighting of this record
        vt.now = 40.0
        # Between pod-b's read and its write, pod-a renews: pod-b's write carries a stale
        # resourceVersion and gets 409.
        kube.before_write = lambda: kube.bump(
            renewTime=format_microtime(T0), holderIdentity="pod-a"
        )
        assert not await b.try_acquire_or_renew()
        assert kube.spec()["holderIdentity"] == "pod-a"
        assert not b.is_leader


async def test_the_leader_steps_down_before_anyone_can_take_over() -> None:
    kube, vt = FakeKube(), VirtualTime()
    changes: list[tuple[float, str, bool]] = []
    async with (
        elector(kube, "pod-a", vt) as a,
        elector(kube, "pod-b", vt) as b,
    ):
        a.add_listener(lambda leading: changes.append((vt.now, "pod-a", leading)))
        b.add_listener(lambda leading: changes.append((vt.now, "pod-b", leading)))

        def never_two() -> None:
            assert not (a.is_leader and b.is_leader), f"two leaders at t={vt.now}"

        await a.start()
        await vt.settle()
        assert a.is_leader
        await b.start()
        await vt.run(30.0, never_two)
        assert a.is_leader and not b.is_leader
        # pod-a is cut off from the API server (and pod-b is not).
        kube.down.add("pod-a")
        cut = vt.now
        await vt.run(cut + 60.0, never_two)
        assert b.is_leader and not a.is_leader
        down_at = next(t for t, who, leading in changes if who == "pod-a" and not leading)
        up_at = next(t for t, who, leading in changes if who == "pod-b" and leading)
        # pod-a renewed last at most one retry period before the cut, and stopped leading
        # renew_deadline (10 s) after that; pod-b waited lease_duration (15 s) after seeing it.
        assert cut - 2.0 <= down_at - 10.0 <= cut
        assert up_at - down_at >= 15.0 - 10.0
        assert kube.spec()["holderIdentity"] == "pod-b"
        assert kube.spec()["leaseTransitions"] == 1


async def test_api_errors_past_the_renew_deadline_step_down() -> None:
    kube, vt = FakeKube(), VirtualTime()
    async with elector(kube, "pod-a", vt) as a:
        lost: list[float] = []
        a.on_change = lambda leading: None if leading else lost.append(vt.now)
        await a.start()
        await vt.run(4.0)
        assert a.is_leader
        renewed = vt.now
        kube.fail.extend([500, 503, 500, 429, 500, 500, 500])
        await vt.run(renewed + 9.9)
        assert a.is_leader  # failures for less than the deadline are tolerated
        await vt.run(renewed + 10.0)
        assert not a.is_leader
        assert lost == [renewed + 10.0]
        # The API recovers: the lease is still pod-a's (holder unchanged), it leads again.
        await vt.run(renewed + 20.0)
        assert a.is_leader and a.term == 2


async def test_is_leader_ends_at_the_deadline_even_with_a_hung_renewal() -> None:
    kube, vt = FakeKube(), VirtualTime()
    async with elector(kube, "pod-a", vt) as a:
        assert await a.try_acquire_or_renew()
        a._set_leading(True)
        vt.now = 9.99
        assert a.is_leader
        vt.now = 10.0  # no renewal came back in time
        assert not a.is_leader


async def test_seeing_another_holder_steps_down_at_once() -> None:
    kube, vt = FakeKube(), VirtualTime()
    async with elector(kube, "pod-a", vt) as a:
        await a.start()
        await vt.run(3.0)
        assert a.is_leader
        kube.bump(holderIdentity="pod-c")
        await vt.run(4.0)
        assert not a.is_leader
        assert a.leader_identity == "pod-c"


async def test_stop_releases_the_lease_for_a_quick_hand_over() -> None:
    kube, vt = FakeKube(), VirtualTime()
    async with elector(kube, "pod-a", vt) as a, elector(kube, "pod-b", vt) as b:
        await a.start()
        await vt.settle()
        assert a.is_leader
        assert not await b.try_acquire_or_renew()
        await a.stop()
        assert not a.is_leader
        assert kube.spec()["holderIdentity"] == ""
        assert kube.spec()["leaseDurationSeconds"] == 1
        assert await b.try_acquire_or_renew()  # no wait for the old lease to expire
        assert kube.spec()["leaseTransitions"] == 1


async def test_in_cluster_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = trustme.CA()
    (tmp_path / "token").write_text("sa-token-1")
    (tmp_path / "namespace").write_text(NS)
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem.bytes())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    kube, vt = FakeKube(), VirtualTime()
    seen: list[httpx.Request] = []

    revoked: set[str] = set()

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("authorization") in revoked:
            return _status(401, "Unauthorized", "token expired")
        return kube.handle("pod-a", request)

    e = LeaseElector(
        NS,
        NAME,
        "pod-a",
        service_account_dir=tmp_path,
        transport=httpx.MockTransport(handle),
        clock=vt.clock,
        wall_clock=wall(),
        sleep=vt.sleep,
    )
    assert await e.try_acquire_or_renew()
    # The kubelet rotates the token; once the old one is refused, the file is read again.
    (tmp_path / "token").write_text("sa-token-2")
    revoked.add("Bearer sa-token-1")
    assert await e.try_acquire_or_renew()
    await e.stop()
    assert {str(r.url.host) for r in seen} == {"10.96.0.1"}
    assert seen[0].url.scheme == "https" and seen[0].url.port in (None, 443)
    assert seen[0].headers["authorization"] == "Bearer sa-token-1"
    assert seen[-1].headers["authorization"] == "Bearer sa-token-2"
    assert "sa-token" not in repr(e)


def test_bad_timings_are_refused() -> None:
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        LeaseElector(NS, NAME, "pod-a", lease_duration=10, renew_deadline=10)


# --- the shared state in the Lease ----------------------------------------------------------------


def state_store(kube: FakeKube, e: LeaseElector | None) -> LeaseStateStore:
    client = Client(
        fake_config(),
        namespace=NS,
        transport=kube.transport("store"),
    )
    return LeaseStateStore(NS, NAME, elector=e, client=client)


async def test_lease_state_store_round_trip_and_renewals_keep_it() -> None:
    kube, vt = FakeKube(), VirtualTime()
    async with elector(kube, "pod-a", vt) as a, elector(kube, "pod-b", vt) as b:
        store = state_store(kube, a)
        assert store.load() is None  # no lease yet
        await a.start()
        await vt.settle()
        state = {"handled": {"t/c1": 1.8e9}, "overrides": {}, "history": {"t/c1": [{"a": 1}]}}
        store.save(state)
        annotation = kube.leases[(NS, NAME)]["metadata"]["annotations"][STATE_ANNOTATION]
        assert "handled" not in annotation  # compressed
        await vt.run(20.0)  # renewals keep the annotation
        assert a.is_leader
        assert STATE_ANNOTATION in kube.leases[(NS, NAME)]["metadata"]["annotations"]
        # A renewal racing the save: the save reads again and writes.
        kube.before_write = lambda: kube.bump(renewTime=format_microtime(T0 + timedelta(1)))
        state["handled"]["t/c2"] = 1.9e9
        store.save(state)
        # The next leader reads it.
        assert state_store(kube, b).load() == state
        # A follower cannot write it.
        state_store(kube, b).save({"handled": {}})
        assert state_store(kube, None).load() == state


async def test_lease_state_store_unreadable_is_an_error() -> None:
    kube = FakeKube()
    kube.fail.append(500)
    with pytest.raises(StateStoreError, match="500"):
        state_store(kube, None).load()
    kube.down.add("store")
    with pytest.raises(StateStoreError, match="cannot read"):
        state_store(kube, None).load()


# --- file lock ------------------------------------------------------------------------------------


async def test_file_lock_one_holder_and_the_kernel_releases_a_dead_one(tmp_path: Path) -> None:
    lock = tmp_path / "leader.lock"
    code = (
        "import sys; from exporter.ha.leader import FileLockElector;"
        f"e = FileLockElector({str(lock)!r}, 'other-process');"
        "assert e.try_acquire(); print('locked', flush=True); sys.stdin.read()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"locked\n"
        mine = FileLockElector(lock, "this-process")
        assert not mine.try_acquire()
        assert mine.leader_identity == "other-process"
        process.kill()  # no clean-up in the holder: the kernel drops its lock
        process.wait(30)
        assert mine.try_acquire()
        assert mine.is_leader and lock.read_text() == "this-process\n"
        await mine.stop()
        assert not mine.is_leader and lock.read_text() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


# --- two exporters on the simulator, one leader ---------------------------------------------------

START = datetime(2027, 3, 1, 6, 0, tzinfo=UTC)  # a Monday, before the first transition
POLICY = """
policies:
  - name: office
    clusters: {names: ["dev-*"]}
    timezone: UTC
    awake: ["Mon-Fri 08:00-20:00"]
controller:
  poll_seconds: 15
  action_timeout_seconds: 900
"""


@dataclass
class Calls:
    """The real client, with every cluster-changing call written down per replica."""

    replica: str
    client: Any
    log: list[tuple[str, float, str, str]]
    clock: Callable[[], float]

    async def list_clusters(self) -> list[Cluster]:
        result: list[Cluster] = await self.client.list_clusters()
        return result

    async def get_cluster(self, cluster_id: str) -> Cluster:
        result: Cluster = await self.client.get_cluster(cluster_id)
        return result

    async def hibernate(self, cluster_id: str) -> str | None:
        self.log.append((self.replica, self.clock(), "hibernate", cluster_id))
        result: str | None = await self.client.hibernate(cluster_id)
        return result

    async def awake(self, cluster_id: str) -> str | None:
        self.log.append((self.replica, self.clock(), "awake", cluster_id))
        result: str | None = await self.client.awake(cluster_id)
        return result


@dataclass
class Replica:
    name: str
    service: ExporterService
    elector: FileLockElector
    controller: HibernationController
    gate: LeaderGate
    retry: asyncio.Event


async def replica(
    name: str, sim: Simulator, tmp: Path, calls: list[tuple[str, float, str, str]]
) -> Replica:
    env = {**sim.settings, "CCE_EXPORTER_MAX_RETRIES": "0", "CCE_EXPORTER_TIMEOUT": "5s"}
    service = ExporterService(
        load_settings(None, env), build_targets=TargetBuilder(), clock=sim.clock.now
    )
    await service.setup()
    retry = asyncio.Event()

    async def wait_for_retry(_: float) -> None:
        await retry.wait()
        retry.clear()

    elector = FileLockElector(tmp / "leader.lock", name, sleep=wait_for_retry)

    async def advance(seconds: float) -> None:
        sim.advance(seconds)
        await asyncio.sleep(0)

    targets = [
        ControllerTarget(t.name, Calls(name, t.client, calls, sim.clock.now), t.project_id)
        for t in targets_from_service(service)
    ]
    controller = HibernationController(
        parse_policy_file(POLICY),
        fence_targets(targets, elector),
        store=SharedFileStateStore(tmp / "hibernation.json", elector=elector),
        clock=sim.clock.now,
        sleep=advance,
    )
    gate = LeaderGate(elector, controller)
    service.after_collect.append(gate.on_collect)
    return Replica(name, service, elector, controller, gate, retry)


async def test_two_exporters_one_acts_and_the_other_takes_over(tmp_path: Path) -> None:
    async with running_simulator(
        clusters=0,
        nodes_per_cluster=0,
        seed=3,
        clock_start=START.timestamp(),
        clock_frozen=True,
        transition_seconds=60,
    ) as sim:
        ids = [
            sim.world.add_cluster(name=n, phase="Available", flavor="cce.s1.small").uid
            for n in ("dev-a", "dev-b")
        ]
        calls: list[tuple[str, float, str, str]] = []
        a = await replica("replica-a", sim, tmp_path, calls)
        b = await replica("replica-b", sim, tmp_path, calls)
        try:
            await a.elector.start()
            await a.elector.wait_campaign()
            await b.elector.start()
            await asyncio.sleep(0)
            assert a.elector.is_leader and not b.elector.is_leader
            assert b.elector.leader_identity == "replica-a"

            stopped_at = (START + timedelta(days=1, hours=15)).timestamp()  # Tuesday 21:00
            end = (START + timedelta(days=3, hours=6)).timestamp()  # Thursday 12:00
            step = START
            while step.timestamp() <= end:
                if step.timestamp() > sim.clock.now():
                    sim.advance(step.timestamp() - sim.clock.now())
                if a.elector.is_leader and step.timestamp() >= stopped_at:
                    await a.elector.stop()  # replica-a goes away
                    await a.controller.wait_idle()
                    b.retry.set()  # replica-b's next attempt
                    await b.elector.wait_campaign()
                    assert b.elector.is_leader
                for r in (a, b):
                    if r is a and step.timestamp() >= stopped_at:
                        continue
                    for target in r.service.targets:
                        await r.service.collect(target, "clusters")
                    await r.controller.wait_idle()
                step += timedelta(hours=1)

            def at(day: int, hour: int) -> float:
                return (START + timedelta(days=day, hours=hour - 6)).timestamp()

            expected = [
                ("replica-a", at(0, 20), "hibernate"),
                ("replica-a", at(1, 8), "awake"),
                ("replica-a", at(1, 20), "hibernate"),
                ("replica-b", at(2, 8), "awake"),
                ("replica-b", at(2, 20), "hibernate"),
                ("replica-b", at(3, 8), "awake"),
            ]
            # Actions on the clusters run one after the other: group the calls by hour.
            got = sorted({(who, t - t % 3600, action) for who, t, action, _ in calls})
            assert got == expected
            # Each transition acted on once per cluster, by exactly one replica.
            assert len(calls) == 2 * len(expected)
            assert sorted({cid for *_, cid in calls}) == sorted(ids)
            # The new leader took over the shared state: it knows what replica-a did.
            history = [e for entries in b.controller.state["history"].values() for e in entries]
            done = [
                (e["action"], e["at"] < stopped_at) for e in history if e["result"] == "success"
            ]
            # 3 actions per cluster by replica-a (read from the shared state), 3 by replica-b.
            assert sorted(done) == sorted(
                [(action, by_a) for _, t, action in expected for by_a in [t < stopped_at]] * 2
            )
            assert all(
                sim.world.cluster(c).segment(sim.clock.now_ns()).phase == "Available" for c in ids
            )
        finally:
            for r in (a, b):
                await r.elector.stop()
                await r.controller.close()
                await r.service.close()


async def test_a_follower_does_not_act_and_its_hooks_name_the_leader(tmp_path: Path) -> None:
    async with running_simulator(
        clusters=0,
        nodes_per_cluster=0,
        seed=3,
        clock_start=START.timestamp(),
        clock_frozen=True,
        transition_seconds=60,
    ) as sim:
        cid = sim.world.add_cluster(name="dev-a", phase="Available", flavor="cce.s1.small").uid
        calls: list[tuple[str, float, str, str]] = []
        a = await replica("replica-a", sim, tmp_path, calls)
        b = await replica("replica-b", sim, tmp_path, calls)
        servers: list[Server] = []
        try:
            assert a.elector.try_acquire() and not b.elector.try_acquire()
            token = "hook-token-for-tests"
            for r in (a, b):
                routes = r.gate.routes(build_hook_routes(r.controller, token), token)
                server = Server(build_app(r.service, extra_routes=routes), "127.0.0.1:0")
                await server.start()
                servers.append(server)
            auth = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(timeout=10.0) as http:
                follower = await http.post(
                    f"{servers[1].url}/hooks/clusters/{cid}/hibernate", headers=auth
                )
                assert follower.status_code == 503
                assert follower.headers.get("location") is None
                assert follower.json()["leader"] == "replica-a"
                unauthorized = await http.post(f"{servers[1].url}/hooks/clusters/{cid}/hibernate")
                assert unauthorized.status_code == 401
                assert "replica-a" not in unauthorized.text
                plan = await http.get(f"{servers[0].url}/hooks/plan", headers=auth)
                assert plan.status_code == 200
                leader = await http.post(
                    f"{servers[0].url}/hooks/clusters/{cid}/hibernate", headers=auth
                )
                assert leader.status_code == 202, leader.text
            await a.controller.wait_idle()
            assert [(who, action) for who, _, action, _ in calls] == [("replica-a", "hibernate")]
            # The fence: the follower's client refuses to change a cluster.
            with pytest.raises(NotLeaderError, match="replica-a"):
                await b.controller.targets["default"].client.awake(cid)
        finally:
            for server in servers:
                await server.stop()
            for r in (a, b):
                await r.elector.stop()
                await r.controller.close()
                await r.service.close()


def test_elector_from_settings(tmp_path: Path) -> None:
    from types import SimpleNamespace

    assert elector_from_settings(SimpleNamespace(), {}) is None
    lock = tmp_path / "leader.lock"
    made = elector_from_settings(
        SimpleNamespace(leader_election="file", leader_election_lock_file=lock), {}
    )
    assert made is not None
    file_elector, store = made
    assert isinstance(file_elector, FileLockElector) and file_elector.path == lock
    assert isinstance(store, SharedFileStateStore) and store.elector is file_elector
    made = elector_from_settings(
        SimpleNamespace(leader_election="lease", leader_election_namespace="monitoring"),
        {"POD_NAME": "cce-exporter-1"},
    )
    assert made is not None
    lease_elector, lease_store = made
    assert isinstance(lease_elector, LeaseElector) and isinstance(lease_store, LeaseStateStore)
    assert (lease_elector.namespace, lease_elector.name, lease_elector.identity) == (
        "monitoring",
        "cce-exporter-hibernation",
        "cce-exporter-1",
    )
    with pytest.raises(ValueError, match="none, file or lease"):
        elector_from_settings(SimpleNamespace(leader_election="zookeeper"), {})
