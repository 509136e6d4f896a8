"""A bounded fault soak: ``python -m bench.soak --seconds N`` (``make soak``; at most 600 s).

The exporter (collector, scheduler and web server, in this process) runs against the simulator
(its own process) while:

* 10% of API requests are faulted, every kind the simulator has (its global ``--fault-rate``);
* the exporter authenticates with a password (IAM tokens), and every ``token_every`` seconds the
  simulator expires every token it issued;
* the simulator is stopped and started again on the same port twice, while collections run;
* clusters and nodes are added and removed;
* a client thread scrapes ``/metrics`` continuously and checks every answer: HTTP 200, a complete
  gzip stream, a complete last line, and every metric family seen in the first full answer
  present (a partial state would miss some).

For the last part of the run the faults stop; every resource of the target must then succeed
again within two collection intervals. The report (printed, and returned by :func:`soak`) counts
cycles, faults by kind, scrapes, failed and partial scrapes, crashes and RSS at start and end.
Exit status 0 only when failed scrapes, partial scrapes and crashes are all 0 and data recovered.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import http.client
import json
import logging
import random
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent

from bench.procs import SimProcess
from bench.worker import rss_mb
from exporter.collect.service import ExporterService
from exporter.config import load_settings
from exporter.memory import HeapFreezer
from exporter.web import Server, build_app

MAX_SECONDS = 600.0
RESOURCES = ("clusters", "nodes", "nodepools", "addons", "quotas", "jobs")


@dataclass
class SoakReport:
    seconds: float = 0.0
    cycles: int = 0
    collections: dict[str, int] = field(default_factory=dict)
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    token_expiries: int = 0
    simulator_restarts: int = 0
    churn_actions: dict[str, int] = field(default_factory=dict)
    scrapes: int = 0
    failed_scrapes: int = 0
    partial_scrapes: int = 0
    scrape_problems: list[str] = field(default_factory=list)
    crashes: int = 0
    crash_messages: list[str] = field(default_factory=list)
    cancelled_at_shutdown: int = 0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    recovered: bool = False
    recovery_seconds: float | None = None
    interval_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return (
            self.failed_scrapes == 0
            and self.partial_scrapes == 0
            and self.crashes == 0
            and self.recovered
            and self.scrapes > 0
        )

    def text(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults_by_kind.items()))
        churn = ", ".join(f"{k} {v}" for k, v in sorted(self.churn_actions.items()))
        rows = [
            ("duration", f"{self.seconds:.0f} s (collection interval {self.interval_seconds:g} s)"),
            ("cycles completed", f"{self.cycles} (collections by resource: {self.collections})"),
            ("faults injected", f"{sum(self.faults_by_kind.values())} ({faults})"),
            ("token expiries", str(self.token_expiries)),
            ("simulator restarts", str(self.simulator_restarts)),
            ("churn", churn),
            ("scrapes", str(self.scrapes)),
            ("failed scrapes", str(self.failed_scrapes)),
            ("partial scrapes", str(self.partial_scrapes)),
            ("crashes", str(self.crashes)),
            ("collections cancelled by the shutdown", str(self.cancelled_at_shutdown)),
            ("RSS start / end", f"{self.rss_start_mb:.1f} MB / {self.rss_end_mb:.1f} MB"),
            (
                "recovered within 2 intervals",
                ("yes" if self.recovered else "NO")
                + ("" if self.recovery_seconds is None else f" ({self.recovery_seconds:.1f} s)"),
            ),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"| {'':<{width}} | soak |", f"|{'-' * (width + 2)}|------|"]
        lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
        lines += [f"  problem: {p}" for p in self.scrape_problems[:10]]
        lines += [f"  crash: {m}" for m in self.crash_messages]
        return "\n".join(lines)


class _CrashCounter(logging.Handler):
    """Counts "crashed" records: the collector logs an unexpected exception that way."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None or "crash" in record.getMessage():
            self.count += 1
            if len(self.messages) < 10:
                error = record.exc_info[1] if record.exc_info else None
                self.messages.append(f"{record.name}: {record.getMessage()} ({error!r})")


class Scraper(threading.Thread):
    """Scrapes continuously from its own thread and checks every answer."""

    def __init__(self, port: int, report: SoakReport) -> None:
        super().__init__(name="soak-scraper", daemon=True)
        self.port = port
        self.report = report
        self.stop_event = threading.Event()
        self.families: set[str] | None = None
        self.lock = threading.Lock()

    def problem(self, kind: str, text: str) -> None:
        with self.lock:
            if kind == "failed":
                self.report.failed_scrapes += 1
            else:
                self.report.partial_scrapes += 1
            if len(self.report.scrape_problems) < 50:
                self.report.scrape_problems.append(f"{kind}: {text}")

    def check(self, status: int, body: bytes, encoding: str | None) -> None:
        if status == 503 and self.families is None:
            return  # not ready yet: no collection has completed; not a scrape of data
        if status != 200:
            self.problem("failed", f"HTTP {status}")
            return
        try:
            text = (gzip.decompress(body) if encoding == "gzip" else body).decode()
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            self.problem("partial", f"undecodable body: {exc}")
            return
        if not text.endswith("\n"):
            self.problem("partial", "last line incomplete")
            return
        lines = text.splitlines()
        families = {line.split(" ", 3)[2] for line in lines if line.startswith("# TYPE ")}
        if self.families is None:
            if any(f.startswith("cce_node_") for f in families):
                self.families = families  # the first answer with every group in it
            return
        missing = self.families - families
        if missing:
            self.problem("partial", f"{len(missing)} families missing, e.g. {sorted(missing)[0]}")

    def run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
                response = conn.getresponse()
                body = response.read()
                with self.lock:
                    self.report.scrapes += 1
                self.check(response.status, body, response.getheader("Content-Encoding"))
            except (OSError, http.client.HTTPException) as exc:
                self.problem("failed", f"{type(exc).__name__}: {exc}")
                if conn is not None:
                    conn.close()
                conn = None
            self.stop_event.wait(0.05)
        if conn is not None:
            conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def soak(
    seconds: float = 180.0,
    *,
    clusters: int = 12,
    nodes_per_cluster: int = 15,
    interval: float = 2.0,
    fault_rate: float = 0.1,
    token_every: float | None = None,
    seed: int = 7,
    log_level: int = logging.CRITICAL,
) -> SoakReport:
    """Run the soak for ``seconds`` (capped at 600) and return its report."""
    seconds = min(seconds, MAX_SECONDS)
    report = SoakReport(interval_seconds=interval)
    rng = random.Random(seed)
    fault_phase = max(seconds - 4 * interval, seconds * 0.6)
    token_every = token_every or max(seconds / 4, 3 * interval)
    faults: Counter[str] = Counter()
    churn: Counter[str] = Counter()
    crash_counter = _CrashCounter()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(crash_counter)
    root.setLevel(log_level)
    port = _free_port()
    sim = SimProcess(clusters, nodes_per_cluster, fault_rate=fault_rate, port=port, seed=seed)
    sim.start()
    service: ExporterService | None = None
    server: Server | None = None
    scraper: Scraper | None = None
    loop = asyncio.get_running_loop()
    tearing_down = False

    def control(method: str, path: str, body: Any = None) -> Any:
        return sim.control(method, path, body)

    async def ctl(method: str, path: str, body: Any = None) -> Any:
        return await asyncio.to_thread(control, method, path, body)

    def harvest() -> None:
        faults.update(sim.state()["faults"]["injected"])

    try:
        env = dict(sim.settings)
        env["CCE_EXPORTER_AUTH_METHOD"] = "password"
        for name in ("AK", "SK"):
            env.pop(f"CCE_EXPORTER_{name}", None)
        env.update(
            CCE_EXPORTER_TIMEOUT="2",
            CCE_EXPORTER_MAX_RETRIES="2",
            CCE_EXPORTER_RETRY_DEADLINE=str(interval * 1.5),
            CCE_EXPORTER_CONCURRENCY="8",
            CCE_EXPORTER_JOB_RETENTION="30",
        )
        for resource in RESOURCES:
            env[f"CCE_EXPORTER_{resource.upper()}_INTERVAL"] = f"{interval:g}"
        service = ExporterService(load_settings(None, env), heap=HeapFreezer())
        collections: Counter[str] = Counter()

        def counted(target: Any, resource: str) -> None:
            collections[resource] += 1

        service.after_collect.append(counted)
        await service.setup()
        server = Server(build_app(service), "127.0.0.1:0", grace=1)
        await server.start()
        scheduler = service.start_scheduler()

        def on_error(event: JobExecutionEvent) -> None:
            if tearing_down:
                # Collections still in flight when the service closes are cancelled; the
                # scheduler reports that as a job error, but nothing crashed.
                report.cancelled_at_shutdown += 1
                return
            report.crashes += 1
            report.crash_messages.append(f"job {event.job_id}: {event.exception!r}")

        scheduler.add_listener(on_error, EVENT_JOB_ERROR)
        # The global rate picks kinds at random; one explicit fault of every kind makes sure each
        # is seen at least once (a hang among them: the client's timeout must end it).
        for kind in sim.state()["fault_kinds"]:
            await ctl("POST", "/_sim/faults", {"kind": kind, "count": 1, "hang_seconds": 30})
        report.rss_start_mb = rss_mb()
        scraper = Scraper(server.port, report)
        scraper.start()
        started = loop.time()
        restarts_at = [fault_phase / 3, 2 * fault_phase / 3]
        next_token = token_every
        next_churn = interval
        while (now := loop.time() - started) < fault_phase:
            if restarts_at and now >= restarts_at[0]:
                restarts_at.pop(0)
                await asyncio.to_thread(harvest)
                await asyncio.to_thread(sim.stop)
                await asyncio.sleep(rng.uniform(0.2, 1.0))  # down for a while, mid-collection
                sim = SimProcess(
                    clusters, nodes_per_cluster, fault_rate=fault_rate, port=port, seed=seed
                )
                await asyncio.to_thread(sim.start)
                report.simulator_restarts += 1
            if now >= next_token:
                next_token += token_every
                await ctl("POST", "/_sim/tokens/expire")
                report.token_expiries += 1
            if now >= next_churn:
                next_churn += interval
                await _churn(ctl, service, rng, churn)
            await asyncio.sleep(0.25)
        # Faults stop: every resource must succeed again within two intervals.
        await asyncio.to_thread(harvest)
        await ctl("DELETE", "/_sim/faults")
        stopped = time.time()
        deadline = loop.time() + 2 * interval + interval * 0.2  # scheduler jitter is <= 10%
        while loop.time() < deadline:
            if _all_recovered(service, stopped):
                report.recovered = True
                report.recovery_seconds = time.time() - stopped
                break
            await asyncio.sleep(0.1)
        remaining = seconds - (loop.time() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)
        report.seconds = loop.time() - started
        report.collections = dict(collections)
        report.cycles = min(collections.get(r, 0) for r in RESOURCES)
        report.rss_end_mb = rss_mb()
    finally:
        tearing_down = True
        if scraper is not None:
            scraper.stop_event.set()
            await asyncio.to_thread(scraper.join, 15)
        if service is not None:
            await service.close()
        if server is not None:
            await server.stop()
        sim.stop()
        root.removeHandler(crash_counter)
        root.setLevel(old_level)
    report.crashes += crash_counter.count
    report.crash_messages += crash_counter.messages
    report.faults_by_kind = dict(faults)
    report.churn_actions = dict(churn)
    return report


def _all_recovered(service: ExporterService, since: float) -> bool:
    for target in service.targets:
        # The hourly upgrade checks recover on their own interval, not within this soak's.
        for resource in (r for r in service.enabled(target) if r in RESOURCES):
            health = target.collector.health[resource]
            if health.last_success is None or health.last_success < since or not health.success:
                return False
    return True


async def _churn(
    ctl: Any, service: ExporterService, rng: random.Random, churn: Counter[str]
) -> None:
    """One random change to the world: a cluster or nodes added or removed (the IDs are those
    the exporter last listed)."""
    state = service.targets[0].collector.state
    ids = [c.id for c in state.clusters if c.id]
    action = rng.choice(("add_cluster", "remove_cluster", "add_nodes", "remove_node"))
    try:
        if action == "add_cluster" or not ids:
            await ctl("POST", "/_sim/clusters", {"nodes": rng.randint(1, 10)})
            action = "add_cluster"
        elif action == "remove_cluster":
            if len(ids) <= 3:
                return
            await ctl("DELETE", f"/_sim/clusters/{rng.choice(ids)}")
        elif action == "add_nodes":
            body = {"count": rng.randint(1, 5)}
            await ctl("POST", f"/_sim/clusters/{rng.choice(ids)}/nodes", body)
        else:
            with_nodes = [(cid, nodes) for cid, nodes in state.nodes.items() if nodes]
            if not with_nodes:
                return
            cluster_id, nodes = rng.choice(with_nodes)
            await ctl("DELETE", f"/_sim/clusters/{cluster_id}/nodes/{nodes[0].id}")
    except Exception:  # a change the world refuses (already gone, say) is not a soak failure
        churn["refused"] += 1
        return
    churn[action] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=180.0, help="at most 600 (default 180)")
    parser.add_argument("--interval", type=float, default=5.0, help="collection interval, s")
    parser.add_argument("--clusters", type=int, default=30)
    parser.add_argument("--nodes-per-cluster", type=int, default=30)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--json", action="store_true", help="print the report as JSON too")
    args = parser.parse_args(argv)
    report = asyncio.run(
        soak(
            args.seconds,
            clusters=args.clusters,
            nodes_per_cluster=args.nodes_per_cluster,
            interval=args.interval,
            fault_rate=args.fault_rate,
        )
    )
    print(report.text())
    if args.json:
        print(json.dumps({**asdict(report), "passed": report.passed}, indent=2))
    print("PASS" if report.passed else "FAIL", file=sys.stderr)
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
