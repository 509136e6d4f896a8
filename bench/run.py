"""The benchmark: collection against the network's limit, scrape latency against a baseline.

For each size (clusters x nodes per cluster) it starts the simulator (its own process, 50 ms per
answer by default) and the exporter (``bench.worker``, its own process, so that its CPU and RSS are
measured alone), then:

1. runs one warm-up cycle and ``cycles`` measured ``collect_all()`` cycles, counting the requests
   each made on the simulator's side, and compares the median cycle with the network lower bound:
   the calls form a chain of three dependent steps (the cluster list; then 3 calls per cluster and
   the quotas, all independent; then one call per live job), each step taking at least
   ``ceil(calls / concurrency) x latency``;
2. records the URLs of one cycle and has a bare client (``bench.bare``: aiohttp, a token, no
   parsing, its own process) fetch them ``cycles`` times in the same three steps at the same
   concurrency: the exporter's cycle and CPU over the bare client's are the cost of its own work,
   measured on the same machine at the same moment (absolute figures drift with the machine);
3. runs one cycle under cProfile for the top functions by own time;
4. runs more cycles (up to ``growth_cycles`` or ``growth_seconds``) and reports RSS growth from the
   first to the last of them;
5. scrapes ``/metrics`` ``scrapes`` times from this process (gzip accepted, as Prometheus does),
   then the same for the baseline (``bench.baseline``: the same series in a prometheus_client
   registry, rendered on each scrape; capped by ``baseline_seconds``).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.procs import SimProcess, WorkerProcess

#: The keys of one result row, in order (bench/results.json holds a list of these objects).
RESULT_KEYS: tuple[str, ...] = (
    "clusters",
    "nodes_per_cluster",
    "requests",
    "concurrency",
    "latency_ms",
    "cycle_seconds",
    "lower_bound_seconds",
    "ratio_to_bound",
    "cpu_seconds",
    "peak_rss_mb",
    "exposition_bytes",
    "scrape_p50_ms",
    "scrape_p99_ms",
    "baseline_scrape_p50_ms",
    "baseline_scrape_p99_ms",
    "rss_growth_pct",
    "bare_cycle_seconds",
    "bare_cpu_seconds",
    "cycle_over_bare",
    "cpu_over_bare",
)

PER_CLUSTER = ("nodes", "nodepools", "addons")


@dataclass
class Options:
    clusters: int
    nodes_per_cluster: int
    latency_ms: float = 50.0
    concurrency: int = 32
    cycles: int = 3
    growth_cycles: int = 300
    growth_seconds: float = 120.0
    scrapes: int = 200
    baseline_scrapes: int = 200
    baseline_seconds: float = 60.0
    state_sets: str = "all"
    top: int = 15


@dataclass
class SizeResult:
    row: dict[str, Any]
    requests_by_kind: dict[str, int]
    profile: list[dict[str, Any]]
    growth_cycles: int
    baseline_scrapes: int
    state_sets: str
    extra: dict[str, Any] = field(default_factory=dict)


def lower_bound(requests_by_kind: dict[str, int], concurrency: int, latency_s: float) -> float:
    """The network lower bound of one cycle: three dependent steps, each ``ceil(n/c) x latency``."""
    first = requests_by_kind.get("clusters", 0)
    middle = sum(requests_by_kind.get(k, 0) for k in (*PER_CLUSTER, "quotas"))
    last = requests_by_kind.get("job", 0)
    steps = sum(math.ceil(n / concurrency) for n in (first, middle, last) if n)
    return steps * latency_s


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))
    return ordered[index]


def scrape_times(url: str, count: int, budget_seconds: float | None = None) -> list[float]:
    """Seconds per scrape (request sent to last byte read), gzip accepted, one kept-alive
    connection; stops early after ``budget_seconds`` (at least 5 scrapes)."""
    times: list[float] = []
    headers = {"Accept-Encoding": "gzip", "Accept": "text/plain"}
    started = time.monotonic()
    with httpx.Client(timeout=600) as client:
        client.get(url, headers=headers).raise_for_status()  # connection and first-byte warm-up
        for _ in range(count):
            t0 = time.perf_counter()
            with client.stream("GET", url, headers=headers) as response:
                response.raise_for_status()
                for _chunk in response.iter_raw():
                    pass
            times.append(time.perf_counter() - t0)
            if (
                budget_seconds is not None
                and len(times) >= 5
                and time.monotonic() - started > budget_seconds
            ):
                break
    return times


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    out = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {k: v for k, v in out.items() if v}


def exporter_env(sim: SimProcess, concurrency: int, state_sets: str) -> dict[str, str]:
    env = dict(sim.settings)
    env.update(
        CCE_EXPORTER_CONCURRENCY=str(concurrency),
        CCE_EXPORTER_COLLECT_CONCURRENCY=str(concurrency),
        CCE_EXPORTER_STATE_SETS=state_sets,
        CCE_EXPORTER_LOG_LEVEL="WARNING",
    )
    return env


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bare_client(sim: SimProcess, urls: list[str], concurrency: int, cycles: int) -> dict[str, Any]:
    """Run ``bench.bare`` over ``urls`` in its own process; its per-cycle wall and CPU times."""
    config = {
        "settings": sim.settings,
        "urls": urls,
        "concurrency": concurrency,
        "cycles": max(1, cycles),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.bare"],
        input=json.dumps(config),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the bare client failed: {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_size(opts: Options) -> SizeResult:
    size = f"{opts.clusters}x{opts.nodes_per_cluster}"
    with SimProcess(opts.clusters, opts.nodes_per_cluster, latency_ms=opts.latency_ms) as sim:
        env = exporter_env(sim, opts.concurrency, opts.state_sets)
        with WorkerProcess(env) as worker:
            log(f"[{size}] warm-up cycle")
            first = worker.call("cycle")
            if not first["ok"]:
                raise RuntimeError(f"the warm-up cycle failed: {first['failed']}")
            cycles: list[dict[str, Any]] = []
            requests: list[dict[str, int]] = []
            for i in range(opts.cycles):
                before = sim.state()["requests"]
                cycles.append(worker.call("cycle"))
                requests.append(_delta(before, sim.state()["requests"]))
                log(f"[{size}] cycle {i + 1}: {cycles[-1]['cycle_seconds']:.2f}s")
            log(f"[{size}] bare client over the same URLs")
            urls = worker.call("urls")["urls"]
            bare = bare_client(sim, urls, opts.concurrency, opts.cycles)
            profiled = worker.call("profile", top=opts.top)
            log(f"[{size}] RSS growth over up to {opts.growth_cycles} cycles")
            rss: list[float] = []
            started = time.monotonic()
            while len(rss) < opts.growth_cycles:
                rss.append(worker.call("cycle")["rss_mb"])
                if len(rss) >= 2 and time.monotonic() - started > opts.growth_seconds:
                    break
            peak = worker.call("gc")  # a last reading; ru_maxrss is in every cycle answer
            peak_rss = max(c["peak_rss_mb"] for c in [*cycles, profiled])
            log(f"[{size}] {opts.scrapes} scrapes")
            ours = scrape_times(worker.url + "/metrics", opts.scrapes)
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "exposition.txt")
                worker.call("exposition", path=path)
                log(f"[{size}] baseline: loading the same series into prometheus_client")
                baseline = subprocess.Popen(
                    [sys.executable, "-m", "bench.baseline", path],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                try:
                    assert baseline.stdout is not None and baseline.stdin is not None
                    hello = json.loads(baseline.stdout.readline())
                    base_times = scrape_times(
                        f"http://127.0.0.1:{hello['port']}/metrics",
                        opts.baseline_scrapes,
                        opts.baseline_seconds,
                    )
                finally:
                    if baseline.stdin is not None:
                        baseline.stdin.close()
                    try:
                        baseline.wait(30)
                    except subprocess.TimeoutExpired:
                        baseline.kill()
                        baseline.wait(10)
                    if baseline.stdout is not None:
                        baseline.stdout.close()
    mid = statistics.median(c["cycle_seconds"] for c in cycles)
    cpu = statistics.median(c["cpu_seconds"] for c in cycles)
    bare_cycle = statistics.median(bare["cycle_seconds"])
    bare_cpu = statistics.median(bare["cpu_seconds"])
    kinds = requests[-1]
    bound = lower_bound(kinds, opts.concurrency, opts.latency_ms / 1000)
    row = {
        "clusters": opts.clusters,
        "nodes_per_cluster": opts.nodes_per_cluster,
        "requests": sum(kinds.values()),
        "concurrency": opts.concurrency,
        "latency_ms": opts.latency_ms,
        "cycle_seconds": round(mid, 3),
        "lower_bound_seconds": round(bound, 3),
        "ratio_to_bound": round(mid / bound, 3) if bound else None,
        "cpu_seconds": round(cpu, 3),
        "peak_rss_mb": round(peak_rss, 1),
        "exposition_bytes": cycles[-1]["exposition_bytes"],
        "scrape_p50_ms": round(percentile(ours, 0.5) * 1000, 2),
        "scrape_p99_ms": round(percentile(ours, 0.99) * 1000, 2),
        "baseline_scrape_p50_ms": round(percentile(base_times, 0.5) * 1000, 2),
        "baseline_scrape_p99_ms": round(percentile(base_times, 0.99) * 1000, 2),
        "rss_growth_pct": round((rss[-1] - rss[0]) / rss[0] * 100, 2) if len(rss) > 1 else None,
        "bare_cycle_seconds": round(bare_cycle, 3),
        "bare_cpu_seconds": round(bare_cpu, 3),
        "cycle_over_bare": round(mid / bare_cycle, 3) if bare_cycle else None,
        "cpu_over_bare": round(cpu / bare_cpu, 3) if bare_cpu else None,
    }
    assert tuple(row) == RESULT_KEYS
    return SizeResult(
        row=row,
        requests_by_kind=kinds,
        profile=profiled["top"],
        growth_cycles=len(rss),
        baseline_scrapes=len(base_times),
        state_sets=opts.state_sets,
        extra={
            "gzip_bytes": cycles[-1]["exposition_gzip_bytes"],
            "rss_after_gc_mb": peak["rss_mb"],
            "cycle_seconds_all": [round(c["cycle_seconds"], 3) for c in cycles],
        },
    )


COLUMNS: tuple[tuple[str, str], ...] = (
    ("size", "{clusters}x{nodes_per_cluster}"),
    ("req", "{requests}"),
    ("conc", "{concurrency}"),
    ("lat ms", "{latency_ms:g}"),
    ("cycle s", "{cycle_seconds:.2f}"),
    ("bound s", "{lower_bound_seconds:.2f}"),
    ("ratio", "{ratio_to_bound:.2f}"),
    ("cpu s", "{cpu_seconds:.2f}"),
    ("peak MB", "{peak_rss_mb:.0f}"),
    ("expo MB", "{exposition_mb:.1f}"),
    ("p50 ms", "{scrape_p50_ms:.2f}"),
    ("p99 ms", "{scrape_p99_ms:.2f}"),
    ("base p50", "{baseline_scrape_p50_ms:.1f}"),
    ("base p99", "{baseline_scrape_p99_ms:.1f}"),
    ("x faster", "{speedup:.0f}"),
    ("rss grow %", "{rss_growth_pct:+.2f}"),
    ("bare s", "{bare_cycle_seconds:.2f}"),
    ("cycle/bare", "{cycle_over_bare:.2f}"),
    ("bare cpu s", "{bare_cpu_seconds:.2f}"),
    ("cpu/bare", "{cpu_over_bare:.1f}"),
)


def table(results: Sequence[SizeResult]) -> str:
    """A Markdown table of the rows (also readable as plain text)."""
    lines = [
        "| " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|" + "|".join("---:" for _ in COLUMNS) + "|",
    ]
    for result in results:
        row = dict(result.row)
        row["exposition_mb"] = row["exposition_bytes"] / 1e6
        row["speedup"] = row["baseline_scrape_p99_ms"] / max(row["scrape_p99_ms"], 1e-9)
        if row["rss_growth_pct"] is None:
            row["rss_growth_pct"] = float("nan")
        for key in ("ratio_to_bound", "cycle_over_bare", "cpu_over_bare"):
            if row[key] is None:
                row[key] = float("nan")
        lines.append("| " + " | ".join(fmt.format(**row) for _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def details(results: Sequence[SizeResult]) -> str:
    out = []
    for r in results:
        row = r.row
        out.append(
            f"\n{row['clusters']}x{row['nodes_per_cluster']}: requests by kind "
            f"{json.dumps(r.requests_by_kind, sort_keys=True)}; state sets {r.state_sets}; "
            f"gzip {r.extra['gzip_bytes'] / 1e6:.1f} MB; RSS growth over {r.growth_cycles} "
            f"cycles; baseline over {r.baseline_scrapes} scrapes; cycles "
            f"{r.extra['cycle_seconds_all']}"
        )
        out.append("  top functions of one cycle (event-loop thread, by own time):")
        for fn in r.profile:
            out.append(
                f"    {fn['tottime']:7.3f}s own {fn['cumtime']:7.3f}s cum "
                f"{fn['calls']:>9} calls  {fn['function']}"
            )
    return "\n".join(out)
