"""The ``cce-exporter`` command line.

``run`` (the default) is the daemon; ``demo`` runs it against the built-in simulator; ``once`` does
one full collection and prints the exposition; ``check-config`` prints the effective configuration
with secrets masked; ``simulate`` runs the fake CCE + IAM API on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from exporter import __version__

log = logging.getLogger("exporter")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(value: str) -> str:
    """``--log-level``, checked here so that a bad value is blamed on the flag."""
    level = value.strip().upper()
    level = "WARNING" if level == "WARN" else level
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"invalid log level {value!r}: use one of {', '.join(LOG_LEVELS)}"
        )
    return level


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML configuration file (default: $CCE_EXPORTER_CONFIG)",
    )
    parser.add_argument(
        "--log-level", type=_log_level, default=None, help="DEBUG, INFO, WARNING, ERROR, CRITICAL"
    )
    parser.add_argument("--log-format", default=None, choices=("text", "json"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cce-exporter",
        description="Prometheus exporter and hibernation scheduler for Huawei Cloud CCE.",
    )
    parser.add_argument("--version", action="version", version=f"cce-exporter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the exporter daemon (the default command)")
    _add_config_arguments(run)
    run.add_argument("--listen", default=None, help="HOST:PORT to serve on (default 0.0.0.0:9877)")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="hibernation: compute, log and count every action, call nothing",
    )

    once = sub.add_parser("once", help="collect everything once and print the exposition")
    _add_config_arguments(once)
    once.add_argument(
        "--format", choices=("text", "openmetrics"), default="text", help="exposition format"
    )

    for p in (run, once):
        p.add_argument(
            "--shard",
            type=int,
            default=None,
            help="this replica's shard, 0-based (default: the StatefulSet pod ordinal)",
        )
        p.add_argument(
            "--total-shards", type=int, default=None, help="number of shards (default 1)"
        )

    check = sub.add_parser("check-config", help="print the effective configuration, secrets masked")
    _add_config_arguments(check)
    check.add_argument(
        "--online", action="store_true", help="also check credentials against the API"
    )

    demo = sub.add_parser("demo", help="run the exporter against the built-in simulator")
    demo.add_argument(
        "--listen", default="127.0.0.1:9877", help="exporter address (default %(default)s)"
    )
    demo.add_argument("--clusters", type=int, default=30)
    demo.add_argument("--nodes-per-cluster", type=int, default=10)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--policy",
        type=Path,
        default=None,
        help="hibernation policy file (default: a demo policy whose awake window ended 5 minutes "
        "ago, so the first clusters are hibernated at once)",
    )
    demo.add_argument("--no-policy", action="store_true", help="run the demo without hibernation")
    demo.add_argument("--log-level", type=_log_level, default="INFO")
    demo.add_argument("--log-format", default="text", choices=("text", "json"))

    from exporter.hibernation.cli import add_action_arguments, add_plan_arguments

    plan = sub.add_parser("plan", help="show every governed cluster's next transitions")
    _add_config_arguments(plan)
    add_plan_arguments(plan)
    for action in ("hibernate", "awake"):
        act = sub.add_parser(action, help=f"{action} one cluster now, under the safety rules")
        _add_config_arguments(act)
        add_action_arguments(act)

    sim = sub.add_parser("simulate", help="run the built-in fake CCE + IAM API")
    from exporter.simulator.cli import add_arguments as add_sim_arguments

    add_sim_arguments(sim)
    return parser


def _load(args: argparse.Namespace, overrides: Mapping[str, str] | None = None) -> Any:
    """Load settings, or print the configuration errors and exit 2."""
    from exporter.config import ConfigError, load_settings

    env = dict(os.environ)
    if overrides:
        env.update(overrides)
    if getattr(args, "log_level", None):
        env["CCE_EXPORTER_LOG_LEVEL"] = args.log_level
    if getattr(args, "log_format", None):
        env["CCE_EXPORTER_LOG_FORMAT"] = args.log_format
    if getattr(args, "dry_run", False) and getattr(args, "command", None) == "run":
        env["CCE_EXPORTER_DRY_RUN"] = "true"
    if getattr(args, "listen", None):
        env["CCE_EXPORTER_LISTEN"] = args.listen
    if getattr(args, "shard", None) is not None:
        env["CCE_EXPORTER_SHARD"] = str(args.shard)
    if getattr(args, "total_shards", None) is not None:
        env["CCE_EXPORTER_TOTAL_SHARDS"] = str(args.total_shards)
    try:
        return load_settings(getattr(args, "config", None), env)
    except ConfigError as exc:
        print(f"cce-exporter: configuration error:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None


class StartupError(Exception):
    """A file the daemon needs is invalid; the message is one line naming the file and the key
    (a policy file with several problems: a line naming the file, then one line per problem)."""


@dataclass(frozen=True)
class StartupFiles:
    """The files ``run`` reads besides the configuration, validated."""

    web_config: Any = None  # exporter.webconfig.WebConfig
    policies: Any = None  # exporter.hibernation.policy.PolicyFile
    hook_token: str | None = None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def load_startup_files(settings: Any) -> StartupFiles:
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


def _startup_files_or_exit(settings: Any) -> StartupFiles | None:
    """:func:`load_startup_files`, or the error as one line on stderr and None."""
    try:
        return load_startup_files(settings)
    except StartupError as exc:
        print(f"cce-exporter: {exc}", file=sys.stderr)
        return None


def _setup_logging(settings: Any) -> None:
    from exporter.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)


def _service(settings: Any, **kwargs: Any) -> tuple[Any, Any]:
    """The ExporterService for this replica's shard (all clusters when unsharded)."""
    from exporter.collect.service import ExporterService
    from exporter.ha.sharding import ShardConfig, ShardError, shard_settings

    try:
        shard = ShardConfig.from_settings(settings)
    except ShardError as exc:
        print(f"cce-exporter: configuration error:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    service = ExporterService(
        shard_settings(settings, shard),
        cluster_filter=shard.owns if shard.enabled else None,
        **kwargs,
    )
    if shard.enabled:
        service.extra_registries.append(shard.registry())
        log.info("shard %d of %d", shard.ordinal, shard.total)
    return service, shard


@contextlib.contextmanager
def _stop_signals_cancel() -> Iterator[list[signal.Signals]]:
    """While the first API calls run (retries can take a while), SIGTERM, SIGINT and SIGHUP cancel
    the current task instead of killing the process; the signals received are listed."""
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

    installed: list[tuple[signal.Signals, Any]] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            previous = signal.getsignal(sig)
            loop.add_signal_handler(sig, stop, sig)
            installed.append((sig, previous))
        except (NotImplementedError, RuntimeError, ValueError):
            break  # not the main thread: the caller handles signals
    try:
        yield received
    finally:
        active = False
        for handle in retry:
            handle.cancel()
        for sig, previous in installed:
            loop.remove_signal_handler(sig)
            if previous is not None:
                signal.signal(sig, previous)


async def _serve(settings: Any, *, banner: Callable[[str], str] | None = None) -> int:
    from exporter.memory import HeapFreezer
    from exporter.web import WebLimits, build_app, serve

    # Every file is checked before the first API call: a bad one is one line and exit 2.
    files = _startup_files_or_exit(settings)
    if files is None:
        return 2
    # A daemon keeps a large heap for hours: keep the cyclic collector off it.
    service, shard = _service(settings, heap=HeapFreezer())
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
    routes: list[Any] = []
    shutdown: list[Any] = []
    if settings.policy_file:
        from exporter.hibernation.controller import (
            HibernationController,
            ServiceStateStore,
            targets_from_service,
        )
        from exporter.hibernation.hooks import HookLimits, build_hook_routes

        policies = files.policies
        from exporter.ha.leader import (
            LeaderGate,
            StateStoreError,
            elector_from_settings,
            fence_targets,
        )

        try:
            election = elector_from_settings(settings)
        except ValueError as exc:
            print(f"cce-exporter: configuration error:\n{exc}", file=sys.stderr)
            await service.close()
            return 2
        if not settings.state_file and election is None:
            log.warning(
                "a policy file without CCE_EXPORTER_STATE_FILE: overrides and the record of "
                "actions taken live in memory only and are lost on restart"
            )
        targets = targets_from_service(service)
        store: Any = ServiceStateStore(service)
        if election is not None:
            elector, store = election
            targets = fence_targets(targets, elector)
        try:
            hibernation = HibernationController(
                policies, targets, store=store, dry_run=settings.dry_run, clock=service.clock
            )
        except StateStoreError as exc:
            log.error("start-up failed: %s", exc)
            await service.close()
            return 1
        service.extra_registries.append(hibernation.registry)
        service.hibernation = hibernation  # the status console shows its schedule
        token = files.hook_token
        routes = build_hook_routes(hibernation, token, limits=HookLimits.from_settings(settings))
        shutdown.append(hibernation.close)
        if election is None:
            service.after_collect.append(hibernation.on_collect)
        else:
            # With shards, the leader governs every cluster, not only its shard's.
            gate = LeaderGate(elector, hibernation, list_all=shard.enabled)
            service.after_collect.append(gate.on_collect)
            routes = gate.routes(routes, token)
            await elector.start()
            shutdown.append(elector.stop)  # after hibernation.close: its last save still leads
        # Scheduled transitions on a timer of their own, not at the next cluster collection.
        hibernation.start_timer(ready=None if election is None else gate.ready)
    service.start_scheduler()
    web_config = files.web_config
    limits = WebLimits.from_settings(settings)
    from exporter.status.routes import status_routes

    app = build_app(
        service,
        web_config=web_config,
        extra_routes=[*status_routes(service), *routes],
        on_shutdown=[*shutdown, service.close],
        limits=limits,
    )

    def started(server: Any) -> None:
        if banner is not None:
            print(banner(server.url.rstrip("/")), flush=True)

    await serve(app, settings.listen, web_config, on_started=started, limits=limits)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = _load(args)
    _setup_logging(settings)
    log.info("cce-exporter %s starting, %d target(s)", __version__, len(settings.targets))
    return asyncio.run(_serve(settings))


def cmd_once(args: argparse.Namespace) -> int:
    settings = _load(args)
    _setup_logging(settings)

    async def main() -> int:
        service, _ = _service(settings)
        try:
            await service.setup()
            results = await service.collect_all()
        finally:
            await service.close()
        exposition = service.exposition()
        cluster_ok = all(ok for key, ok in results.items() if key.endswith("/clusters"))
        code = 0 if cluster_ok and results else 1
        if exposition is not None:
            data = exposition.openmetrics if args.format == "openmetrics" else exposition.text
            with _reader_may_leave():
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
        return code

    try:
        return asyncio.run(main())
    except Exception as exc:
        log.error("collection failed: %s", exc)
        return 1


@contextlib.contextmanager
def _reader_may_leave() -> Iterator[None]:
    """Standard output read by a pipe that may close early (``cce-exporter once | head``): the
    rest of the output is dropped quietly, with no traceback and no SIGPIPE.

    Standard output is pointed at /dev/null so that the interpreter's last flush does not fail
    again. Only for printing commands: the daemon keeps SIGPIPE ignored, so a scraper that hangs
    up is an error on that one connection.
    """
    try:
        yield
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def cmd_check_config(args: argparse.Namespace) -> int:
    from exporter.config import render_effective_config

    settings = _load(args)
    # The web config, policy and hook token files, checked as `run` checks them.
    if _startup_files_or_exit(settings) is None:
        return 2
    print(render_effective_config(settings))
    if not args.online:
        return 0
    _setup_logging(settings)

    async def check() -> int:
        from prometheus_client import CollectorRegistry

        from exporter.cce.errors import CCEError
        from exporter.cce.instrumentation import ApiMetrics
        from exporter.collect.service import build_client

        metrics = ApiMetrics(CollectorRegistry())
        failures = 0
        for target in settings.targets:
            client = build_client(target, metrics)
            try:
                project_id = target.project_id
                if not project_id:
                    project_id = await client.resolve_project_id(target.project_name or "")
                    await client.aclose()
                    client = build_client(target, metrics, project_id)
                clusters = await client.list_clusters()
                print(f"target {target.name}: OK, project {project_id}, {len(clusters)} cluster(s)")
                print(f"target {target.name}: credentials: {client.credentials_in_use()}")
            except CCEError as exc:
                failures += 1
                print(f"target {target.name}: FAILED: {exc}")
            finally:
                await client.aclose()
        return 1 if failures else 0

    return asyncio.run(check())


def _free_port(host: str, preferred: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, preferred))
            return preferred
        except OSError:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
            return port


def _busy_note(host: str, wanted: int, port: int) -> str:
    """The warning when the demo could not have the port it was asked for ("" when it could)."""
    if port == wanted or wanted == 0:
        return ""
    return (
        f"WARNING: port {wanted} on {host} is busy (another demo or exporter?); "
        f"this demo serves on port {port} instead: use the URLs below"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from exporter.logs import setup_logging
    from exporter.simulator import running_simulator

    setup_logging(args.log_level, args.log_format)
    host, _, port_text = args.listen.rpartition(":")
    host = host or "127.0.0.1"
    if port_text and not port_text.isdigit():
        print(
            f"cce-exporter demo: --listen {args.listen!r}: the port is not a number",
            file=sys.stderr,
        )
        return 2
    wanted = int(port_text or 0)
    port = _free_port(host, wanted) if wanted else 0
    busy = _busy_note(host, wanted, port)
    if busy:
        log.warning("%s", busy)

    workdir = tempfile.TemporaryDirectory(prefix="cce-exporter-demo-")

    async def main() -> int:
        async with running_simulator(
            clusters=args.clusters,
            nodes_per_cluster=args.nodes_per_cluster,
            seed=args.seed,
            transition_seconds=20.0,
        ) as sim:
            overrides = dict(sim.settings)
            overrides["CCE_EXPORTER_LISTEN"] = f"{host}:{port}"
            overrides["CCE_EXPORTER_STATE_FILE"] = str(Path(workdir.name) / "state.json")
            # Kubernetes Jobs, CronJobs and quotas of a few clusters (the policy leaves 01x awake).
            for name, value in (
                ("CCE_EXPORTER_KUBERNETES_ENABLED", "true"),
                ("CCE_EXPORTER_KUBERNETES_CLUSTERS_NAMES", "sim-cluster-01*"),
            ):
                if name not in os.environ:
                    overrides[name] = value
            if not args.no_policy:
                policy = args.policy or _write_demo_policy(Path(workdir.name))
                overrides["CCE_EXPORTER_POLICY_FILE"] = str(policy)
                overrides.setdefault("CCE_EXPORTER_HOOK_TOKEN", "demo-hook-token")
            settings = _load(argparse.Namespace(config=None), overrides)

            def banner(base: str) -> str:
                return (
                    (f"\n{busy}\n" if busy else "")
                    + f"\ncce-exporter demo: {args.clusters} simulated clusters\n"
                    f"  status page  {base}/"
                    + (f"   (NOT port {wanted}: it is busy)" if busy else "")
                    + "\n"
                    f"  metrics      {base}/metrics\n"
                    f"  simulator    {sim.base_url} (control API under /_sim/)\n"
                    + (
                        "  kubernetes   Jobs, CronJobs and quotas of sim-cluster-01x "
                        "(cce_kube_*, dashboard CCE / Workloads)\n"
                        if "CCE_EXPORTER_KUBERNETES_ENABLED" not in os.environ
                        else ""
                    )
                    + (
                        "  hibernation  the demo policy hibernates sim-cluster-000..009 now;\n"
                        f"               plan: {base}/hooks/plan"
                        " (Authorization: Bearer demo-hook-token)\n"
                        if not args.no_policy and args.policy is None
                        else ""
                    )
                    + "Press Ctrl-C to stop.\n"
                )

            return await _serve(settings, banner=banner)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 0
    finally:
        workdir.cleanup()


def _write_demo_policy(directory: Path) -> Path:
    """A policy whose awake window ended five minutes ago: the catch-up hibernates at once."""
    now = datetime.now(UTC)
    start = (now - timedelta(hours=3)).strftime("%H:%M")
    end = (now - timedelta(minutes=5)).strftime("%H:%M")
    path = directory / "policy.yaml"
    path.write_text(
        "# Written by `cce-exporter demo`: the awake window ended 5 minutes before start-up.\n"
        "policies:\n"
        "  - name: demo-office-hours\n"
        '    clusters: {names: ["sim-cluster-00*"]}\n'
        "    timezone: UTC\n"
        f'    awake: ["Mon-Sun {start}-{end}"]\n'
        "pricing:\n"
        "  currency: EUR\n"
        "  control_plane_per_hour: {cce.s1.small: 0.30, cce.s1.medium: 0.60, cce.s2.small: 0.60,"
        " cce.s2.medium: 1.20, cce.s2.large: 2.40}\n"
    )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    import prometheus_client

    from exporter.memory import apply_process_tuning

    # `*_created` series double every counter and histogram for no use Prometheus makes of them.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    apply_process_tuning()
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "run"
    if args.command is None:
        args = parser.parse_args(["run", *(argv if argv is not None else sys.argv[1:])])
    if command == "simulate":
        from exporter.simulator.cli import run as run_simulator

        return run_simulator(args)
    if command == "plan":
        from exporter.hibernation.cli import run_plan

        settings = _load(args)
        with _reader_may_leave():  # `cce-exporter plan | head`
            code = run_plan(args, settings)
            sys.stdout.flush()
            return code
        return 0
    if command in ("hibernate", "awake"):
        from exporter.hibernation.cli import run_action

        return run_action(args, _load(args), "hibernate" if command == "hibernate" else "awake")
    handlers = {
        "run": cmd_run,
        "once": cmd_once,
        "check-config": cmd_check_config,
        "demo": cmd_demo,
    }
    # SIGPIPE stays ignored (Python's default): a client that hangs up is an error on its own
    # connection, never the end of the daemon. `once` and `plan` handle a closed stdout.
    return handlers[command](args)
