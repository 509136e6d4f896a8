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

import asyncio
import hashlib
import hmac
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from exporter.cce.models import Cluster
from exporter.collect.statefile import clean_hibernation
from exporter.ha.election import (
    SERVICE_ACCOUNT_DIR,
    Elector,
    FileLockElector,
    LeaseElector,
    NotLeaderError,
    format_microtime,
)
from exporter.ha.state import (
    STATE_ANNOTATION,
    LeaseStateStore,
    SharedFileStateStore,
    StateStoreError,
)
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
