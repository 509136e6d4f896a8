"""The ``cce-exporter`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from exporter import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cce-exporter",
        description="Prometheus exporter and hibernation scheduler for Huawei Cloud CCE.",
    )
    parser.add_argument("--version", action="version", version=f"cce-exporter {__version__}")
    sub = parser.add_subparsers(dest="command")

    sim = sub.add_parser("simulate", help="run the built-in fake CCE + IAM API")
    from exporter.simulator.cli import add_arguments as add_sim_arguments

    add_sim_arguments(sim)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "simulate":
        from exporter.simulator.cli import run as run_simulator

        return run_simulator(args)
    parser.print_help(sys.stderr)
    return 2
