"""``python -m bench``: the benchmark (see :mod:`bench.run`); prints a table, writes JSON.

``--quick`` runs the small and middle sizes with fewer cycles (under a minute). The largest size
renders its state sets in ``current`` mode unless ``--state-sets all`` is given: in ``all`` mode
500 x 200 is about 100 MB of exposition text.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from bench.run import Options, SizeResult, details, run_size, table

FULL_SIZES = ("10x20", "100x100", "500x200", "100x20+k200x50")
QUICK_SIZES = ("10x20", "100x100")


Size = tuple[int, int, tuple[int, int] | None]
_SIZE = re.compile(r"^(\d+)x(\d+)(?:\+k(\d+)x(\d+))?$")


def _size(value: str) -> Size:
    """``CLUSTERSxNODES``, or ``CLUSTERSxNODES+kJOBSxQUOTAS`` with Kubernetes collection on."""
    m = _SIZE.match(value)
    if m is None:
        raise argparse.ArgumentTypeError(
            f"expected CLUSTERSxNODES or CLUSTERSxNODES+kJOBSxQUOTAS, e.g. 100x100 or "
            f"100x20+k200x50, got {value!r}"
        )
    kube = (int(m.group(3)), int(m.group(4))) if m.group(3) else None
    return int(m.group(1)), int(m.group(2)), kube


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small and middle sizes, fewer cycles")
    parser.add_argument(
        "--sizes", nargs="+", type=_size, help="e.g. 10x20 100x100 500x200 100x20+k200x50"
    )
    parser.add_argument("--cycles", type=int, help="measured cycles per size (default 3, quick 2)")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--growth-cycles", type=int, help="cycles for RSS growth (default 300)")
    parser.add_argument(
        "--growth-seconds", type=float, help="time cap of the RSS growth run per size"
    )
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--baseline-seconds", type=float, help="time cap of the baseline scrapes")
    parser.add_argument(
        "--state-sets",
        choices=("all", "current", "auto"),
        default="auto",
        help="auto: all below 50,000 nodes, current above",
    )
    parser.add_argument("--output", type=Path, default=Path("bench/results.json"))
    args = parser.parse_args(argv)
    sizes = args.sizes or [_size(s) for s in (QUICK_SIZES if args.quick else FULL_SIZES)]
    results: list[SizeResult] = []
    for clusters, nodes, kube in sizes:
        state_sets = args.state_sets
        if state_sets == "auto":
            state_sets = "current" if clusters * nodes >= 50_000 else "all"
        opts = Options(
            clusters=clusters,
            nodes_per_cluster=nodes,
            latency_ms=args.latency_ms,
            concurrency=args.concurrency,
            cycles=args.cycles or (2 if args.quick else 3),
            growth_cycles=args.growth_cycles or (20 if args.quick else 300),
            growth_seconds=args.growth_seconds or (5.0 if args.quick else 300.0),
            scrapes=args.scrapes,
            baseline_scrapes=args.scrapes,
            baseline_seconds=args.baseline_seconds or (5.0 if args.quick else 60.0),
            state_sets=state_sets,
            kube=kube,
        )
        results.append(run_size(opts))
    print(table(results))
    print(details(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps([r.row for r in results], indent=2) + "\n")
    print(f"\nwrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
