"""One hibernation leader: leader election, the shared hibernation state, and the gates.

Electors (``Elector``: ``start()``, ``stop()``, ``is_leader``, ``leader_identity``, ``term``,
``on_change``)

``FileLockElector(path, identity)``
    ``fcntl.flock`` on a lock file, for replicas on one host: a non-blocking attempt every
    ``retry_period``; the holder writes its identity into the file (followers read it to name the
    leader). The kernel drops the lock when the holder's process ends, however it ends.
    Not for network file systems, where ``flock`` is not reliable.

``LeaseElector(namespace, name, identity)``
    A ``coordination.k8s.io/v1`` Lease, with client-go's leader-election algorithm:

    * try to acquire or renew every ``retry_period``: read the Lease; a Lease held by another is
      taken only when its record has not changed for ``leaseDurationSeconds`` *on this replica's
      own clock* (the time the record was last seen to change), so a skewed clock elsewhere
      neither shortens nor lengthens a lease; the write carries the ``resourceVersion`` read, so
      of two candidates only one wins (the other gets 409 Conflict);
    * the leader steps down when no renewal has succeeded for ``renew_deadline`` (10 s), counted
      from the moment *before* the last successful request was sent. Another replica can take
      over only after ``lease_duration`` (15 s) since it saw that write, which happened after that
      moment: the two can never act at once. :attr:`is_leader` checks the deadline itself, so a
      renewal stuck in a hung request cannot extend leadership;
    * ``stop()`` releases the Lease (empty holder, duration 1 s) for a quick hand-over.

    In a pod it uses the service account (token, CA and namespace from
    ``/var/run/secrets/kubernetes.io/serviceaccount/``, the API server from
    ``KUBERNETES_SERVICE_HOST``/``_PORT``) through lightkube. Lease times are written as
    MicroTime strings (six fractional digits) by this module, since the API server rejects
    MicroTimes without them.

State stores (the ``StateStore`` interface of ``exporter.hibernation.controller``)

``LeaseStateStore``
    The hibernation state in an annotation of the same Lease (gzip + base64 JSON), so replicas
    that share no disk share it, and one RBAC rule (leases: get, create, update) covers both.
    Writes are conditional on the ``resourceVersion`` and on this replica being the holder.
``SharedFileStateStore``
    A JSON file (written atomically) for replicas on one host.

Both refuse to write while their elector is not the leader: a replica that lost the lead while
an action was running cannot overwrite what the new leader wrote.

Gates

``LeaderGate(elector, controller)``
    ``gate.on_collect`` replaces ``controller.on_collect`` in ``service.after_collect``: it does
    nothing on a follower; on a new leadership term it first reloads the controller's state from
    the shared store (so a new leader knows what its predecessor did); when leadership is lost,
    running actions are cancelled. ``gate.routes(routes, token)`` makes the hook routes answer
    ``503 {"error": ..., "leader": "<identity>"}`` on a follower (after checking the bearer
    token, so the leader's name is only told to callers who may call the hooks).
``fence_targets(targets, elector)``
    Wraps each target's client so that ``hibernate``/``awake`` raise :class:`NotLeaderError`
    unless this replica leads: the last line of defence, at the call that changes a cluster.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import fcntl
import gzip
import hashlib
import hmac
import json
import logging
import os
import random
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from lightkube import ApiError, AsyncClient, Client, KubeConfig
from lightkube.resources.coordination_v1 import Lease
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from exporter.cce.errors import CCEError
from exporter.cce.models import Cluster
from exporter.collect.statefile import clean_hibernation
from exporter.hibernation.controller import ControllerTarget, HibernationController

log = logging.getLogger(__name__)

__all__ = [
    "STATE_ANNOTATION",
    "Elector",
    "FileLockElector",
    "LeaderGate",
    "LeaseElector",
    "LeaseStateStore",
    "NotLeaderError",
    "SharedFileStateStore",
    "StateStoreError",
    "elector_from_settings",
    "fence_targets",
    "format_microtime",
    "reload_state",
]

#: The Lease annotation holding the hibernation state (gzip + base64 of the JSON).
STATE_ANNOTATION = "cce-exporter.io/hibernation-state"
#: The API server limits all annotations of an object to 256 KiB together.
ANNOTATION_LIMIT = 256 * 1024
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: client-go's jitter factor for retries while acquiring.
JITTER = 1.2

Listener = Callable[[bool], None]


class NotLeaderError(CCEError):
    """A cluster-changing call was refused because this replica is not the hibernation leader."""


class StateStoreError(Exception):
    """The shared hibernation state could not be read (acting on an empty state could repeat
    actions already taken, so the caller must not act)."""


def format_microtime(at: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with exactly six fractional digits."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _as_dict(lease: Lease) -> dict[str, Any]:
    """A Lease as the API's JSON, with the raw time strings (lightkube keeps unread fields raw)."""
    data: dict[str, Any] = lease.to_dict()  # type: ignore[no-untyped-call]
    return data


def _lease(body: dict[str, Any]) -> Lease:
    """A Lease whose fields stay the given JSON on the wire (lightkube's lazy ``from_dict``), so
    the MicroTimes keep their six digits."""
    lease: Lease = Lease.from_dict(body)  # type: ignore[no-untyped-call]
    return lease


# --- electors -------------------------------------------------------------------------------------


class Elector(abc.ABC):
    """Leader election. ``on_change(is_leader)`` (and listeners added with :meth:`add_listener`)
    are called on every change; ``term`` counts the leaderships this replica has won."""

    def __init__(self, identity: str, *, on_change: Listener | None = None) -> None:
        if not identity:
            raise ValueError("a leader-election identity is required (e.g. the pod name)")
        self.identity = identity
        self.leader_identity: str | None = None
        self.term = 0
        self._leading = False
        self._listeners: list[Listener] = []
        if on_change is not None:
            self._listeners.append(on_change)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(identity={self.identity!r}, leading={self.is_leader})"

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def on_change(self) -> Listener | None:
        return self._listeners[0] if self._listeners else None

    @on_change.setter
    def on_change(self, callback: Listener | None) -> None:
        self._listeners = [cb for cb in self._listeners[1:]]
        if callback is not None:
            self._listeners.insert(0, callback)

    def add_listener(self, callback: Listener) -> None:
        self._listeners.append(callback)

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        if leading:
            self.term += 1
            self.leader_identity = self.identity
            log.info("leader election: %s is now the hibernation leader", self.identity)
        else:
            if self.leader_identity == self.identity:
                self.leader_identity = None
            log.warning("leader election: %s is no longer the hibernation leader", self.identity)
        for callback in list(self._listeners):
            try:
                callback(leading)
            except Exception:  # a listener's bug must not stop the election
                log.exception("leader election: a leadership listener failed")

    @abc.abstractmethod
    async def start(self) -> None:
        """Start campaigning in the background (returns at once)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop campaigning and release the leadership if held."""


class FileLockElector(Elector):
    """See the module docstring. ``sleep`` is injectable for tests."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        identity: str,
        *,
        retry_period: float = 2.0,
        on_change: Listener | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(identity, on_change=on_change)
        self.path = Path(path)
        self.retry_period = retry_period
        self.sleep = sleep
        self._fd: int | None = None
        self._task: asyncio.Task[None] | None = None

    def try_acquire(self) -> bool:
        """One non-blocking attempt; True while this replica holds the lock."""
        if self._leading:
            return True
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.leader_identity = self._read_holder()
            return False
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{self.identity}\n".encode(), 0)
        os.fsync(self._fd)
        self._set_leading(True)
        return True

    def _read_holder(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    async def _campaign(self) -> None:
        while not self.try_acquire():
            await self.sleep(self.retry_period)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._campaign(), name=f"file-lock-election {self.path}"
            )

    async def wait_campaign(self) -> None:
        """Wait until the campaign ends (this replica leads, or :meth:`stop` was called)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        fd, self._fd = self._fd, None
        if fd is None:
            return
        leading = self._leading
        if leading:
            # Stop acting first, then clear the name and let the lock go.
            self._set_leading(False)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


_SPEC_FIELDS = (
    "holderIdentity",
    "leaseDurationSeconds",
    "acquireTime",
    "renewTime",
    "leaseTransitions",
)


class LeaseElector(Elector):
    """See the module docstring. ``clock`` (monotonic seconds) times everything this replica
    decides; ``wall_clock`` only fills in the Lease's acquire/renew times for humans and other
    clients. Both, and ``sleep``, are injectable."""

    def __init__(
        self,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        client: AsyncClient | None = None,
        service_account_dir: str | os.PathLike[str] = SERVICE_ACCOUNT_DIR,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        on_change: Listener | None = None,
    ) -> None:
        super().__init__(identity, on_change=on_change)
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError(
                "leader election needs lease_duration > renew_deadline > retry_period > 0, got "
                f"{lease_duration:g} / {renew_deadline:g} / {retry_period:g}"
            )
        self.namespace = namespace
        self.name = name
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.wall_clock = wall_clock
        self.sleep = sleep
        self.jitter = jitter
        self._own_client = client is None
        self._client = client
        self._service_account_dir = service_account_dir
        self._transport = transport
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._renewed_at = float("-inf")
        self._lost = False
        self._task: asyncio.Task[None] | None = None

    @property
    def client(self) -> AsyncClient:
        if self._client is None:
            config = KubeConfig.from_service_account(self._service_account_dir)
            # A request may not outlive the renewal deadline it is racing against.
            timeout = httpx.Timeout(max(1.0, self.renew_deadline / 2))
            self._client = AsyncClient(
                config, namespace=self.namespace, timeout=timeout, transport=self._transport
            )
        return self._client

    @property
    def is_leader(self) -> bool:
        return self._leading and self.clock() < self._renewed_at + self.renew_deadline

    def _lease_url(self) -> str:
        return f"leases/{self.namespace}/{self.name}"

    def _observe(self, spec: dict[str, Any], now: float) -> None:
        record = tuple(spec.get(k) for k in _SPEC_FIELDS)
        if record != self._observed:
            self._observed = record
            self._observed_at = now
        self.leader_identity = spec.get("holderIdentity") or None

    async def try_acquire_or_renew(self) -> bool:
        """One round of client-go's ``tryAcquireOrRenew``; True when this replica holds the Lease
        after it."""
        # Taken before any request: the renewal deadline then runs from a moment no later than
        # the write others will see, which is what keeps two leaders apart.
        now = self.clock()
        stamp = format_microtime(self.wall_clock())
        try:
            try:
                current = _as_dict(
                    await self.client.get(Lease, self.name, namespace=self.namespace)
                )
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
                created_spec: dict[str, Any] = {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": round(self.lease_duration),
                    "acquireTime": stamp,
                    "renewTime": stamp,
                    "leaseTransitions": 0,
                }
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": created_spec,
                }
                created = await self.client.create(_lease(body))
                self._observe(_as_dict(created).get("spec") or created_spec, now)
                self._renewed_at = now
                return True
            spec: dict[str, Any] = dict(current.get("spec") or {})
            self._observe(spec, now)
            holder = spec.get("holderIdentity") or ""
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            if holder and holder != self.identity:
                if self._leading:
                    # Someone took it over (this replica's renewals must have stalled): stop at
                    # once rather than fight for it.
                    self._lost = True
                    return False
                if self._observed_at + duration > now:
                    return False
                log.info(
                    "leader election: the lease %s held by %s expired (unchanged for %.0fs)",
                    self._lease_url(),
                    holder,
                    now - self._observed_at,
                )
            transitions = int(spec.get("leaseTransitions") or 0)
            new_spec = {
                **spec,
                "holderIdentity": self.identity,
                "leaseDurationSeconds": round(self.lease_duration),
                "renewTime": stamp,
            }
            if holder != self.identity:
                new_spec["acquireTime"] = stamp
                new_spec["leaseTransitions"] = transitions + 1
            body = {**current, "spec": new_spec}
            # ``metadata.resourceVersion`` rides along: a concurrent write makes this a 409.
            updated = await self.client.replace(_lease(body))
        except ApiError as exc:
            level = logging.INFO if exc.status.code == 409 else logging.WARNING
            log.log(
                level,
                "leader election: %s on %s: %s %s",
                "acquire/renew",
                self._lease_url(),
                exc.status.code,
                exc.status.reason or exc.status.message or "",
            )
            return False
        except (httpx.HTTPError, OSError, ValueError) as exc:
            log.warning("leader election: %s unreachable: %s", self._lease_url(), exc)
            return False
        self._observe(_as_dict(updated).get("spec") or new_spec, now)
        self._renewed_at = now
        self._lost = False
        return True

    async def _campaign(self) -> None:
        while True:
            # Acquire: retry with client-go's jitter, so candidates do not collide in step.
            while not await self.try_acquire_or_renew():
                await self.sleep(self.retry_period * (1 + self.jitter() * (JITTER - 1)))
            self._set_leading(True)
            # Renew every retry_period; step down once renewal has failed for renew_deadline.
            while True:
                await self.sleep(self.retry_period)
                ok = await self.try_acquire_or_renew()
                if self._lost:
                    log.error(
                        "leader election: %s now holds %s; stepping down",
                        self.leader_identity,
                        self._lease_url(),
                    )
                    break
                if not ok and self.clock() >= self._renewed_at + self.renew_deadline:
                    log.error(
                        "leader election: could not renew %s for %.0fs; stepping down",
                        self._lease_url(),
                        self.renew_deadline,
                    )
                    break
            self._lost = False
            self._set_leading(False)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._campaign(), name=f"lease-election {self._lease_url()}"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        was_leading = self._leading
        self._set_leading(False)
        if was_leading:
            await self._release()
        if self._own_client and self._client is not None:
            await self._client.close()
            self._client = None

    async def _release(self) -> None:
        """Give the Lease up (empty holder, 1 s), as client-go's ReleaseOnCancel does."""
        stamp = format_microtime(self.wall_clock())
        try:
            current = _as_dict(await self.client.get(Lease, self.name, namespace=self.namespace))
            spec = dict(current.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return
            spec.update(
                holderIdentity="", leaseDurationSeconds=1, acquireTime=stamp, renewTime=stamp
            )
            await self.client.replace(_lease({**current, "spec": spec}))
            log.info("leader election: released %s", self._lease_url())
        except (ApiError, httpx.HTTPError, OSError, ValueError) as exc:
            # Not fatal: the others take over when the lease expires.
            log.warning("leader election: could not release %s: %s", self._lease_url(), exc)


# --- shared state ---------------------------------------------------------------------------------


def _encode_state(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")


def _decode_state(text: str) -> Any:
    return json.loads(gzip.decompress(base64.b64decode(text)))


class LeaseStateStore:
    """The controller's ``StateStore`` in an annotation of the election Lease (see the module
    docstring). Synchronous, like the interface: the controller saves before it calls the API,
    and a short blocking write is what keeps that promise."""

    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        elector: Elector | None = None,
        client: Client | None = None,
        service_account_dir: str | os.PathLike[str] = SERVICE_ACCOUNT_DIR,
        transport: httpx.BaseTransport | None = None,
        annotation: str = STATE_ANNOTATION,
        attempts: int = 3,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.elector = elector
        self.annotation = annotation
        self.attempts = attempts
        self._client = client
        self._service_account_dir = service_account_dir
        self._transport = transport
        self._refused = False

    @property
    def client(self) -> Client:
        if self._client is None:
            config = KubeConfig.from_service_account(self._service_account_dir)
            self._client = Client(
                config,
                namespace=self.namespace,
                timeout=httpx.Timeout(5.0),
                transport=self._transport,
            )
        return self._client

    def load(self) -> Any:
        """The stored state, None when there is none yet; raises :class:`StateStoreError` when
        the Lease cannot be read."""
        try:
            lease = _as_dict(self.client.get(Lease, self.name, namespace=self.namespace))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise StateStoreError(
                f"cannot read the hibernation state from lease {self.namespace}/{self.name}: "
                f"{exc.status.code} {exc.status.reason or ''}".rstrip()
            ) from None
        except (httpx.HTTPError, OSError) as exc:
            raise StateStoreError(
                f"cannot read the hibernation state from lease {self.namespace}/{self.name}: {exc}"
            ) from None
        text = ((lease.get("metadata") or {}).get("annotations") or {}).get(self.annotation)
        if not text:
            return None
        try:
            return _decode_state(text)
        except (ValueError, OSError) as exc:
            raise StateStoreError(
                f"the hibernation state in lease {self.namespace}/{self.name} is unreadable: {exc}"
            ) from None

    def save(self, value: Any) -> None:
        identity = self.elector.identity if self.elector is not None else None
        if self.elector is not None and not self.elector.is_leader:
            if not self._refused:
                log.warning("hibernation state not written: this replica is not the leader")
            self._refused = True
            return
        self._refused = False
        encoded = _encode_state(value)
        if len(encoded) > ANNOTATION_LIMIT - 4096:
            log.error(
                "hibernation state not written: %d bytes compressed, over the annotation limit",
                len(encoded),
            )
            return
        for _ in range(self.attempts):
            try:
                lease = _as_dict(self.client.get(Lease, self.name, namespace=self.namespace))
                holder = (lease.get("spec") or {}).get("holderIdentity")
                if identity is not None and holder != identity:
                    log.error(
                        "hibernation state not written: lease %s/%s is held by %s",
                        self.namespace,
                        self.name,
                        holder or "nobody",
                    )
                    return
                metadata = dict(lease.get("metadata") or {})
                metadata["annotations"] = {
                    **(metadata.get("annotations") or {}),
                    self.annotation: encoded,
                }
                self.client.replace(_lease({**lease, "metadata": metadata}))
                return
            except ApiError as exc:
                if exc.status.code == 409:
                    continue  # a renewal wrote in between: read again
                log.error("hibernation state not written: %s", exc.status.message or exc)
                return
            except (httpx.HTTPError, OSError) as exc:
                log.error("hibernation state not written: %s", exc)
                return
        log.error("hibernation state not written: %d conflicting writes", self.attempts)


class SharedFileStateStore:
    """The controller's ``StateStore`` as a JSON file shared by replicas on one host."""

    def __init__(self, path: str | os.PathLike[str], *, elector: Elector | None = None) -> None:
        self.path = Path(path)
        self.elector = elector

    def load(self) -> Any:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StateStoreError(f"cannot read the hibernation state {self.path}: {exc}") from None

    def save(self, value: Any) -> None:
        if self.elector is not None and not self.elector.is_leader:
            log.warning("hibernation state not written: this replica is not the leader")
            return
        data = json.dumps(value, indent=1, sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            log.error("could not write the hibernation state %s: %s", self.path, exc)


# --- gates ----------------------------------------------------------------------------------------


def reload_state(controller: HibernationController) -> None:
    """Replace the controller's state with what its store holds now (a new leader's first step).
    Raises :class:`StateStoreError` when the store cannot be read."""
    controller.state = clean_hibernation(controller.store.load(), "shared hibernation state")


class _Fenced:
    """A ``ClusterAPI`` whose cluster-changing calls need the leadership."""

    def __init__(self, client: Any, elector: Elector) -> None:
        self._client = client
        self._elector = elector

    async def list_clusters(self) -> list[Cluster]:
        result: list[Cluster] = await self._client.list_clusters()
        return result

    async def get_cluster(self, cluster_id: str) -> Cluster:
        result: Cluster = await self._client.get_cluster(cluster_id)
        return result

    def _check(self, action: str) -> None:
        if not self._elector.is_leader:
            raise NotLeaderError(
                f"{action} refused: this replica is not the hibernation leader "
                f"(the leader is {self._elector.leader_identity or 'unknown'})"
            )

    async def hibernate(self, cluster_id: str) -> str | None:
        self._check("hibernate")
        result: str | None = await self._client.hibernate(cluster_id)
        return result

    async def awake(self, cluster_id: str) -> str | None:
        self._check("awake")
        result: str | None = await self._client.awake(cluster_id)
        return result


def fence_targets(targets: Sequence[ControllerTarget], elector: Elector) -> list[ControllerTarget]:
    """The targets with clients that refuse ``hibernate``/``awake`` unless this replica leads."""
    return [replace(t, client=_Fenced(t.client, elector)) for t in targets]


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


class LeaderGate:
    """Runs the hibernation controller only on the leader (see the module docstring).

    ``list_all``: tick with a fresh listing of every target's clusters instead of the list just
    collected; needed with sharding, where a replica collects only its shard's clusters but the
    leader governs all of them.
    """

    def __init__(
        self, elector: Elector, controller: HibernationController, *, list_all: bool = False
    ) -> None:
        self.elector = elector
        self.controller = controller
        self.list_all = list_all
        self._term = 0
        elector.add_listener(self._changed)

    def _changed(self, leading: bool) -> None:
        if leading:
            return
        # What was started as leader must not go on calling the API (retries) as a follower.
        tasks: set[asyncio.Task[Any]] = getattr(self.controller, "_tasks", set())
        for task in list(tasks):
            task.cancel()
        if tasks:
            log.warning("hibernation: %d running action(s) cancelled: leadership lost", len(tasks))

    def ready(self) -> bool:
        """Whether the controller may act now: leader, with the state of this term loaded."""
        if not self.elector.is_leader:
            return False
        if self._term != self.elector.term:
            try:
                reload_state(self.controller)
            except StateStoreError as exc:
                log.error("hibernation: not acting until the shared state can be read: %s", exc)
                return False
            self._term = self.elector.term
            log.info("hibernation: leader term %d, shared state loaded", self._term)
        return True

    async def on_collect(self, target: Any, resource: str) -> None:
        """The ``after_collect`` hook to register instead of ``controller.on_collect``."""
        if resource != "clusters" or not self.ready():
            return
        if self.list_all:
            await self.controller.tick()
        else:
            await self.controller.on_collect(target, resource)

    def routes(self, routes: Sequence[BaseRoute], token: str | None) -> list[BaseRoute]:
        """The hook routes, answering 503 naming the leader on a follower. Without a token the
        hooks are off (404) everywhere and the routes are returned unchanged."""
        if not token:
            return list(routes)
        digest = _digest(token)
        gated: list[BaseRoute] = []
        for route in routes:
            if not isinstance(route, Route):
                gated.append(route)
                continue
            gated.append(
                Route(
                    route.path,
                    self._wrap(route.endpoint, digest),
                    methods=sorted(route.methods or ()),
                    name=route.name,
                )
            )
        return gated

    def _wrap(
        self, endpoint: Callable[[Request], Awaitable[Response]], digest: bytes
    ) -> Callable[[Request], Awaitable[Response]]:
        async def gated(request: Request) -> Response:
            if self.ready():
                return await endpoint(request)
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            ok = hmac.compare_digest(_digest(given.strip()), digest)
            if not ok or scheme.lower() != "bearer":
                # The leader's name only to callers who may call the hooks.
                return JSONResponse({"error": "a valid bearer token is required"}, 401)
            leader = self.elector.leader_identity
            log.info(
                "hook %s %s -> 503 not the hibernation leader (leader: %s)",
                request.method,
                request.url.path,
                leader or "unknown",
            )
            return JSONResponse(
                {
                    "error": "this replica is not the hibernation leader; call the leader",
                    "leader": leader,
                    "replica": self.elector.identity,
                },
                status_code=503,
                headers={"Retry-After": "5"},
            )

        return gated


# --- wiring ---------------------------------------------------------------------------------------

DEFAULT_LEASE_NAME = "cce-exporter-hibernation"


def elector_from_settings(
    settings: Any, env: Mapping[str, str] | None = None
) -> tuple[Elector, Any] | None:
    """The elector and the shared state store the settings ask for, or None (one replica).

    Reads ``settings.leader_election`` (``none`` | ``file`` | ``lease``),
    ``leader_election_lock_file``, ``leader_election_namespace`` (default: the pod's, from the
    service account), ``leader_election_lease_name`` and ``leader_election_identity`` (default:
    ``POD_NAME``, else ``HOSTNAME``; with a file lock, host name and PID, since replicas on one
    host share the host name). Settings without these fields mean ``none``.
    """
    env = os.environ if env is None else env
    mode = str(getattr(settings, "leader_election", None) or "none")
    if mode == "none":
        return None
    identity = getattr(settings, "leader_election_identity", None)
    if mode == "file":
        configured = getattr(settings, "leader_election_lock_file", None)
        if not configured:
            raise ValueError("leader_election=file needs leader_election_lock_file")
        lock = Path(configured)
        file_elector = FileLockElector(
            lock, str(identity or f"{socket.gethostname()}-{os.getpid()}")
        )
        store = SharedFileStateStore(
            lock.with_name(lock.name + ".state.json"), elector=file_elector
        )
        return file_elector, store
    if mode == "lease":
        namespace = getattr(settings, "leader_election_namespace", None)
        if not namespace:
            try:
                namespace = Path(SERVICE_ACCOUNT_DIR, "namespace").read_text().strip()
            except OSError:
                raise ValueError(
                    "leader_election=lease outside a pod needs leader_election_namespace"
                ) from None
        name = str(getattr(settings, "leader_election_lease_name", None) or DEFAULT_LEASE_NAME)
        identity = identity or env.get("POD_NAME") or env.get("HOSTNAME") or socket.gethostname()
        lease_elector = LeaseElector(str(namespace), name, str(identity))
        return lease_elector, LeaseStateStore(str(namespace), name, elector=lease_elector)
    raise ValueError(f"leader_election must be none, file or lease, not {mode!r}")
