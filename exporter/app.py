"""The composition root: the one module that builds the daemon's parts from the configuration.

Everything below it takes its dependencies as arguments::

    Settings -> TargetBuilder (exporter.assemble: clients through exporter.cce.factory,
                collectors and their trackers, Kubernetes collectors), one per target
             -> ExporterService (the scheduler, renders, the state file), given the builder
             -> HibernationController, leader election, hook routes   (when a policy file is set)
             -> the web app: /metrics, /healthz, /readyz, the status console, the hooks

:func:`serve_daemon` is ``cce-exporter run`` (and ``demo``) once the configuration is loaded;
``once`` builds the service with :func:`build_service`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from exporter.assemble import TargetBuilder
from exporter.collect.service import ExporterService
from exporter.config import Settings
from exporter.ha.sharding import ShardConfig, ShardError, shard_settings
from exporter.memory import HeapFreezer

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.routing import BaseRoute

    from exporter.hibernation.policy import PolicyFile
    from exporter.web import Server, WebLimits
    from exporter.webconfig import WebConfig

__all__ = [
    "SettingsError",
    "StartupError",
    "StartupFiles",
    "build_hibernation",
    "build_service",
    "build_web_app",
    "load_startup_files",
    "serve_daemon",
]

log = logging.getLogger("exporter")

#: An action run at shutdown, after in-flight requests finished.
Shutdown = Callable[[], Awaitable[None]]


class SettingsError(Exception):
    """Settings the configuration loader accepted that a part of the daemon refuses (shards,
    leader election); the message names the setting."""


class StartupError(Exception):
    """A file the daemon needs is invalid; the message is one line naming the file and the key
    (a policy file with several problems: a line naming the file, then one line per problem)."""


@dataclass(frozen=True)
class StartupFiles:
    """The files ``run`` reads besides the configuration, validated."""

    web_config: WebConfig | None = None
    policies: PolicyFile | None = None
    hook_token: str | None = None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def load_startup_files(settings: Settings) -> StartupFiles:
    """Read and validate the web config file, the policy file and the hook token file as the
    daemon uses them; :class:`StartupError` (one line: file, key, problem) on the first problem.

    ``run`` calls it before anything is collected, and ``check-config`` calls it too, so that
    check-config accepts exactly what run accepts."""
    web_config = None
    if settings.web_config_file:
        from exporter.webconfig import WebConfigError, load_web_config

        try:
            web_config = load_web_config(Path(settings.web_config_file))
        except WebConfigError as exc:
            raise StartupError(_one_line(str(exc))) from None
    policies = None
    hook_token = None
    if settings.policy_file:
        from exporter.hibernation.hooks import load_hook_token
        from exporter.hibernation.policy import PolicyError, load_policy_file

        try:
            policies = load_policy_file(Path(settings.policy_file))
        except PolicyError as exc:
            # One line per problem (a file with one problem is one line), as `plan` prints them.
            message = "\n".join(_one_line(line) for line in str(exc).splitlines() if line.strip())
            message = message.replace("\n", "\n  ")  # the problems stay indented under the head
            if str(settings.policy_file) not in message:
                message = f"policy file {settings.policy_file}: {message}"
            raise StartupError(message) from None
        try:
            hook_token = load_hook_token(settings)
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise StartupError(
                f"hook token file {settings.hook_token_file}: cannot read: {reason}"
            ) from None
    return StartupFiles(web_config=web_config, policies=policies, hook_token=hook_token)


def build_service(
    settings: Settings,
    *,
    heap: HeapFreezer | None = None,
    clock: Callable[[], float] = time.time,
) -> tuple[ExporterService, ShardConfig]:
    """The service for this replica's shard (all clusters when unsharded), and the shard.

    Raises :class:`SettingsError` when the shard settings are invalid."""
    try:
        shard = ShardConfig.from_settings(settings)
    except ShardError as exc:
        raise SettingsError(str(exc)) from None
    service = ExporterService(
        shard_settings(settings, shard),
        build_targets=TargetBuilder(cluster_filter=shard.owns if shard.enabled else None),
        heap=heap,
        clock=clock,
    )
    if shard.enabled:
        service.extra_registries.append(shard.registry())
        log.info("shard %d of %d", shard.ordinal, shard.total)
    return service, shard


@dataclass
class Hibernation:
    """What hibernation adds to the daemon: hook routes and shutdown actions, in order."""

    routes: list[BaseRoute] = field(default_factory=list)
    shutdown: list[Shutdown] = field(default_factory=list)


async def build_hibernation(
    settings: Settings, files: StartupFiles, service: ExporterService, shard: ShardConfig
) -> Hibernation:
    """The hibernation controller (behind leader election when configured), wired to the
    service's collections, its hook routes and its timer.

    Raises :class:`SettingsError` for invalid leader election settings and ``StateStoreError``
    when the shared state cannot be read."""
    from exporter.ha.leader import LeaderGate, elector_from_settings, fence_targets
    from exporter.hibernation.controller import (
        HibernationController,
        ServiceStateStore,
        StateStore,
        targets_from_service,
    )
    from exporter.hibernation.hooks import HookLimits, build_hook_routes

    assert files.policies is not None
    try:
        election = elector_from_settings(settings)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    if not settings.state_file and election is None:
        log.warning(
            "a policy file without CCE_EXPORTER_STATE_FILE: overrides and the record of "
            "actions taken live in memory only and are lost on restart"
        )
    targets = targets_from_service(service)
    store: StateStore = ServiceStateStore(service)
    if election is not None:
        elector, store = election
        targets = fence_targets(targets, elector)
    controller = HibernationController(
        files.policies, targets, store=store, dry_run=settings.dry_run, clock=service.clock
    )
    service.extra_registries.append(controller.registry)
    service.hibernation = controller  # the status console shows its schedule
    token = files.hook_token
    limits = HookLimits.from_settings(settings)
    out = Hibernation(build_hook_routes(controller, token, limits=limits), [controller.close])
    if election is None:
        service.after_collect.append(controller.on_collect)
        # Scheduled transitions on a timer of their own, not at the next cluster collection.
        controller.start_timer()
        return out
    # With shards, the leader governs every cluster, not only its shard's.
    gate = LeaderGate(elector, controller, list_all=shard.enabled)
    service.after_collect.append(gate.on_collect)
    out.routes = gate.routes(out.routes, token)
    await elector.start()
    out.shutdown.append(elector.stop)  # after the controller's close: its last save still leads
    controller.start_timer(ready=gate.ready)
    return out


def build_web_app(
    service: ExporterService,
    *,
    web_config: WebConfig | None = None,
    routes: Sequence[BaseRoute] = (),
    on_shutdown: Sequence[Shutdown] = (),
    limits: WebLimits | None = None,
) -> Starlette:
    """The daemon's web app: the service's exposition and health, the status console and
    ``routes``; the service is closed after the ``on_shutdown`` actions."""
    from exporter.status.routes import status_routes
    from exporter.web import build_app

    return build_app(
        service,
        web_config=web_config,
        extra_routes=[*status_routes(service), *routes],
        on_shutdown=[*on_shutdown, service.close],
        limits=limits,
    )


@contextlib.contextmanager
def _stop_signals_cancel() -> Iterator[list[signal.Signals]]:
    """While the first API calls run (retries can take a while), SIGTERM, SIGINT and SIGHUP cancel
    the current task instead of killing the process; the signals received are listed."""
    from exporter.web import on_stop_signals

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    received: list[signal.Signals] = []
    active = True
    retry: list[asyncio.TimerHandle] = []

    def insist() -> None:
        # Python 3.11's asyncio.wait_for can swallow a cancellation that lands just as what it
        # waits for completes: cancel again until the block is left.
        if active and task is not None and not task.done():
            task.cancel()
            retry[:] = [loop.call_later(0.1, insist)]

    def stop(sig: signal.Signals) -> None:
        received.append(sig)
        insist()

    try:
        with on_stop_signals(stop):
            yield received
    finally:
        active = False
        for handle in retry:
            handle.cancel()


async def _start(service: ExporterService) -> int | None:
    """The service's set-up (the first API calls); an exit code when the daemon is to stop."""
    try:
        with _stop_signals_cancel() as received:
            await service.setup()
    except asyncio.CancelledError:
        if not received:
            raise
        log.info("received %s during start-up, stopping", received[0].name)
        await service.close()
        return 0
    except Exception as exc:  # the first API call can fail: say why and stop
        log.error("start-up failed: %s", exc)
        await service.close()
        return 1
    return None


async def serve_daemon(
    settings: Settings,
    files: StartupFiles,
    *,
    banner: Callable[[str], str] | None = None,
) -> int:
    """Build everything, serve until a stop signal; the process's exit code.

    ``files``: the validated start-up files (:func:`load_startup_files`). Raises
    :class:`SettingsError` for invalid shard settings, before any API call."""
    from exporter.ha.leader import StateStoreError
    from exporter.web import WebLimits, serve

    # A daemon keeps a large heap for hours: keep the cyclic collector off it.
    service, shard = build_service(settings, heap=HeapFreezer())
    code = await _start(service)
    if code is not None:
        return code
    hibernation = Hibernation()
    if settings.policy_file:
        try:
            hibernation = await build_hibernation(settings, files, service, shard)
        except SettingsError as exc:
            print(f"cce-exporter: configuration error:\n{exc}", file=sys.stderr)
            await service.close()
            return 2
        except StateStoreError as exc:
            log.error("start-up failed: %s", exc)
            await service.close()
            return 1
    service.start_scheduler()
    limits = WebLimits.from_settings(settings)
    app = build_web_app(
        service,
        web_config=files.web_config,
        routes=hibernation.routes,
        on_shutdown=hibernation.shutdown,
        limits=limits,
    )

    def started(server: Server) -> None:
        if banner is not None:
            print(banner(server.url.rstrip("/")), flush=True)

    await serve(app, settings.listen, files.web_config, on_started=started, limits=limits)
    return 0
