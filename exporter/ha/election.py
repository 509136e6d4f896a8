"""Leader election: a file lock on one host, or a Kubernetes Lease (client-go's rules)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fcntl
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.resources.coordination_v1 import Lease

from exporter.cce.errors import CCEError

log = logging.getLogger(__name__)


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: client-go's jitter factor for retries while acquiring.
JITTER = 1.2

Listener = Callable[[bool], None]


class NotLeaderError(CCEError):
    """A cluster-changing call was refused because this replica is not the hibernation leader."""


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
        self._task: asyncio.Task[None] | None = None

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

    async def start(self) -> None:
        """Start campaigning in the background (returns at once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._campaign(), name=self._campaign_name()
            )

    async def _end_campaign(self) -> None:
        """Cancel the campaign, and wait until it has ended."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _campaign(self) -> None:  # pragma: no cover - an elector with its own start()
        """Campaign until this replica leads (and, for a lease, keep renewing)."""
        raise NotImplementedError

    def _campaign_name(self) -> str:
        """The campaign task's name."""
        return f"{type(self).__name__} {self.identity}"

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

    def _campaign_name(self) -> str:
        return f"file-lock-election {self.path}"

    async def wait_campaign(self) -> None:
        """Wait until the campaign ends (this replica leads, or :meth:`stop` was called)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def stop(self) -> None:
        await self._end_campaign()
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
                return await self._create(now, stamp)
            new_spec = self._claim(dict(current.get("spec") or {}), now, stamp)
            if new_spec is None:
                return False
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

    async def _create(self, now: float, stamp: str) -> bool:
        """Create the Lease, held by this replica (there was none)."""
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

    def _claim(self, spec: dict[str, Any], now: float, stamp: str) -> dict[str, Any] | None:
        """The spec that renews or takes over the Lease, or None when another holds it."""
        self._observe(spec, now)
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity:
            if self._leading:
                # Someone took it over (this replica's renewals must have stalled): stop at
                # once rather than fight for it.
                self._lost = True
                return None
            if self._observed_at + duration > now:
                return None
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
        return new_spec

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

    def _campaign_name(self) -> str:
        return f"lease-election {self._lease_url()}"

    async def stop(self) -> None:
        await self._end_campaign()
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
