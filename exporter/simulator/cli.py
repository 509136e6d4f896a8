"""``cce-exporter simulate``: serve the fake CCE + IAM API until SIGTERM or SIGINT.

On start it prints one ``CCE_EXPORTER_NAME=value`` line per exporter setting (endpoints, project,
the fake AK/SK and password, all derived from the seed), then ``READY`` once the socket is bound
and serving. Everything is flushed at once, so a parent process can read the lines from a pipe.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from typing import Any

from exporter.simulator.server import Simulator, SimulatorConfig, serve


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _non_negative(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(value: str) -> int | float:
        number = kind(value)
        if number < 0:
            raise argparse.ArgumentTypeError(f"must not be negative: {value}")
        return number

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="address to serve on; port 0 picks a free port (default 127.0.0.1:0)",
    )
    for flag, kind, default, text in _OPTIONS:
        parser.add_argument(flag, type=kind, default=default, help=text)


#: The simulator's options after ``--listen``: (flag, type, default, help), in help order.
_OPTIONS: tuple[tuple[str, Callable[[str], Any], object, str], ...] = (
    ("--clusters", _non_negative(int), 30, "default 30"),
    ("--nodes-per-cluster", _non_negative(int), 10, "default 10"),
    ("--seed", int, 1, "world and credentials seed"),
    ("--latency-ms", _non_negative(float), 0.0, "delay added to every answer"),
    ("--fault-rate", float, 0.0, "probability (0..1) that a request gets a random fault"),
    (
        "--transition-seconds",
        _non_negative(float),
        60.0,
        "duration of the Hibernating and Awaking phases (default 60)",
    ),
    ("--kube-jobs", _non_negative(int), 16, "Kubernetes Jobs per cluster (default 16)"),
    ("--kube-quotas", _non_negative(int), 4, "Kubernetes ResourceQuotas per cluster (default 4)"),
    (
        "--temporary-seconds",
        _non_negative(float),
        3600.0,
        "lifetime of the metadata service's temporary credentials (default 3600)",
    ),
)


def run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.fault_rate <= 1.0:
        print("cce-exporter simulate: --fault-rate must be within 0..1", file=sys.stderr)
        return 2
    host, port = args.listen
    config = SimulatorConfig(
        clusters=args.clusters,
        nodes_per_cluster=args.nodes_per_cluster,
        seed=args.seed,
        latency_ms=args.latency_ms,
        fault_rate=args.fault_rate,
        transition_seconds=args.transition_seconds,
        kube_jobs=args.kube_jobs,
        kube_quotas=args.kube_quotas,
        temporary_seconds=args.temporary_seconds or 3600.0,
        host=host,
        port=port,
    )
    try:
        asyncio.run(_main(config))
    except OSError as exc:
        print(f"cce-exporter simulate: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _main(config: SimulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sim = Simulator(config)
    async with serve(sim):
        lines = [f"{name}={value}" for name, value in sim.settings.items()]
        sys.stdout.write("\n".join([*lines, "READY"]) + "\n")
        sys.stdout.flush()
        await stop.wait()
