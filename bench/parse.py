"""Parse CPU and peak memory of node lists: ``python -m bench.parse [--pages 500] [--nodes 200]``.

Each run is a fresh process (``--child``): it builds one simulator node list of ``--nodes``
nodes, then parses ``--pages`` pages made from it (each page's names and IDs made distinct, one
body alive at a time, as the client's single parser thread sees them) and keeps every parsed
node, as the collector does. It reports the CPU time of the parses, the peak RSS
(``ru_maxrss``) before and after, and the memory the kept nodes hold (``tracemalloc`` is not
used: it would slow the parse and change the peak).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import time
from typing import Any


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _child(pages: int, nodes: int) -> dict[str, Any]:
    from exporter.cce.client import NODES
    from exporter.cce.models import parse_node_summaries
    from exporter.memory import apply_process_tuning
    from exporter.simulator.world import World

    apply_process_tuning()  # as `cce-exporter run` does at start-up
    world = World(seed=3, clusters=1, nodes_per_cluster=nodes, now_ns=lambda: 1_700 * 10**15)
    template = world.node_list_bytes(next(iter(world.clusters)))
    del world
    gc.collect()
    before = _peak_mb()
    kept: list[Any] = []
    cpu = 0.0
    for page in range(pages):
        tag = b"%04d" % page
        body = template.replace(b'"uid":"', b'"uid":"' + tag).replace(b"sim-", b"p" + tag + b"-")
        started = time.process_time()
        kept.append(parse_node_summaries(body, endpoint=NODES))
        cpu += time.process_time() - started
        del body
    count = sum(len(p) for p in kept)
    return {
        "pages": pages,
        "nodes_per_page": nodes,
        "nodes": count,
        "page_kb": round(len(template) / 1024, 1),
        "parse_cpu_s": round(cpu, 2),
        "us_per_node": round(cpu / max(count, 1) * 1e6, 1),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(_peak_mb(), 1),
        "rss_end_mb": round(_current_mb(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parse", description=__doc__)
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=1, help="fresh processes, one line each")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.pages, args.nodes)))
        return 0
    for _ in range(args.runs):
        command = [sys.executable, "-m", "bench.parse", "--child"]
        command += ["--pages", str(args.pages), "--nodes", str(args.nodes)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0:
            sys.stderr.write(result.stderr)
            return result.returncode
        print(result.stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
