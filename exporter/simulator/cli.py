"""``cce-exporter simulate``: placeholder until the simulator lands."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:0")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError
