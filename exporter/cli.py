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
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from exporter import __version__

if TYPE_CHECKING:
    from exporter.app import StartupFiles
    from exporter.config import Settings

log = logging.getLogger("exporter")


def _log_level(value: str) -> str:
    """``--log-level``, checked here so that a bad value is blamed on the flag."""
    from exporter.config.settings import LogLevel

    levels = get_args(LogLevel)  # the configuration's levels, in its order
    level = value.strip().upper()
    level = "WARNING" if level == "WARN" else level
    if level not in levels:
        raise argparse.ArgumentTypeError(
            f"invalid log level {value!r}: use one of {', '.join(levels)}"
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


def _load(args: argparse.Namespace, overrides: Mapping[str, str] | None = None) -> Settings:
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
        raise SystemExit(_configuration_error(exc)) from None


def _startup_files_or_exit(settings: Settings) -> StartupFiles | None:
    """The validated start-up files, or the error as one line on stderr and None."""
    from exporter.app import StartupError, load_startup_files

    try:
        return load_startup_files(settings)
    except StartupError as exc:
        print(f"cce-exporter: {exc}", file=sys.stderr)
        return None


def _setup_logging(settings: Settings) -> None:
    from exporter.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)


def _configuration_error(exc: Exception) -> int:
    print(f"cce-exporter: configuration error:\n{exc}", file=sys.stderr)
    return 2


async def _serve(settings: Settings, *, banner: Callable[[str], str] | None = None) -> int:
    from exporter.app import SettingsError, serve_daemon

    # Every file is checked before the first API call: a bad one is one line and exit 2.
    files = _startup_files_or_exit(settings)
    if files is None:
        return 2
    try:
        return await serve_daemon(settings, files, banner=banner)
    except SettingsError as exc:
        return _configuration_error(exc)


def cmd_run(args: argparse.Namespace) -> int:
    settings = _load(args)
    _setup_logging(settings)
    log.info("cce-exporter %s starting, %d target(s)", __version__, len(settings.targets))
    return asyncio.run(_serve(settings))


def cmd_once(args: argparse.Namespace) -> int:
    settings = _load(args)
    _setup_logging(settings)

    from exporter.app import SettingsError, build_service

    async def main() -> int:
        try:
            service, _ = build_service(settings)
        except SettingsError as exc:
            return _configuration_error(exc)
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
        from exporter.cce.factory import connect
        from exporter.cce.instrumentation import ApiMetrics

        metrics = ApiMetrics(CollectorRegistry())
        failures = 0
        for target in settings.targets:
            client = None
            try:
                client = await connect(target, metrics)
                clusters = await client.list_clusters()
                print(
                    f"target {target.name}: OK, project {client.project_id}, "
                    f"{len(clusters)} cluster(s)"
                )
                print(f"target {target.name}: credentials: {client.credentials_in_use()}")
            except CCEError as exc:
                failures += 1
                print(f"target {target.name}: FAILED: {exc}")
            finally:
                if client is not None:
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
