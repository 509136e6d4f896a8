"""A bounded fault soak: ``python -m bench.soak --seconds N`` (``make soak``; at most 600 s).

The exporter (collector, scheduler and web server, in this process; Kubernetes collection on)
runs against the simulator (its own process) while:

* 10% of API requests are faulted, every kind the simulator has (its global ``--fault-rate``);
* the exporter authenticates with a password (IAM tokens), and every ``token_every`` seconds the
  simulator expires every token it issued;
* the simulator is stopped and started again on the same port twice, while collections run;
* clusters and nodes are added and removed;
* a client thread scrapes ``/metrics`` continuously and checks every answer: HTTP 200, a complete
  gzip stream, a complete last line, and every metric family seen in the first full answer
  present (a partial state would miss some).

Then the random faults stop; every resource of the target (and its Kubernetes collection)
must succeed again within two collection intervals. After that come the hostile kinds, one
episode each (an attack of ``attack`` seconds, then the time until everything succeeds again is
measured):

* ``drip``: node lists and IAM token answers trickle one byte every 300 ms (and every token is
  expired, so each collection needs a new one): the request deadline must cut them off;
* ``gzip_bomb``: node-pool lists are 1 MB gzip answers inflating to 1 GB: refused at the
  decompressed-size cap, with the peak RSS of the episode reported;
* ``oversized_labels``: every cluster name is 100 KB: label values are cut, and the largest
  ``/metrics`` of the episode is reported;
* ``cluster_failing``: one cluster's node listing answers 500 for the rest of the run: the
  target must stay ready (``/readyz``), the cluster shown failing;
* ``hangups``, ``connection_flood``, ``login_flood``: the client attacks of :mod:`bench.attacks`
  (clients hanging up mid-scrape, 1,100 half-open connections, 150 clients sending wrong
  basic-auth passwords to a second listener with basic auth), each in its own process.

During the API-side episodes no scrape may fail; during the client attacks the scraper's failures
are counted for the episode, and the server must answer again afterwards. The report (printed,
and returned by :func:`soak`) counts cycles, faults by kind, scrapes, failed and partial scrapes,
crashes, RSS at start and end, and lists each hostile kind with "survived / recovered in N s".
Exit status 0 only when failed scrapes, partial scrapes and crashes are all 0, data recovered,
and every hostile kind was survived and recovered from.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import http.client
import json
import logging
import os
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
from exporter.assemble import TargetBuilder
from exporter.collect.service import ExporterService
from exporter.config import load_settings
from exporter.limits import counts
from exporter.memory import HeapFreezer
from exporter.simulator.faults import FAULT_KINDS
from exporter.web import Server, build_app

MAX_SECONDS = 600.0
RESOURCES = ("clusters", "nodes", "nodepools", "addons", "quotas", "jobs")
#: The hostile kinds, in the order they run (one cluster failing stays so to the end).
HOSTILE_KINDS: tuple[str, ...] = (
    "drip",
    "gzip_bomb",
    "oversized_labels",
    "cluster_failing",
    "hangups",
    "connection_flood",
    "login_flood",
)
CLIENT_KINDS = frozenset({"hangups", "connection_flood", "login_flood"})
DESCRIPTIONS = {
    "drip": "dripping answers (nodes, IAM tokens)",
    "gzip_bomb": "gzip bombs (1 MB -> 1 GB)",
    "oversized_labels": "oversized labels (100 KB names)",
    "cluster_failing": "one cluster failing for good",
    "hangups": "clients hanging up mid-scrape",
    "connection_flood": "connection flood",
    "login_flood": "failed-login flood",
}


@dataclass
class Episode:
    """One hostile kind: whether the exporter survived it, and how long it took to recover."""

    kind: str
    survived: bool = False
    recovered: bool = False
    recovery_seconds: float | None = None
    note: str = ""

    def cell(self) -> str:
        if not self.survived:
            return f"FAILED ({self.note})" if self.note else "FAILED"
        if self.kind == "cluster_failing":
            outcome = "survived / target stayed ready"
        elif not self.recovered:
            outcome = "survived / NOT recovered"
        else:
            outcome = f"survived / recovered in {self.recovery_seconds or 0.0:.1f} s"
        return f"{outcome} ({self.note})" if self.note else outcome


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
    episodes: list[Episode] = field(default_factory=list)
    largest_scrape_bytes: int = 0

    @property
    def passed(self) -> bool:
        return (
            self.failed_scrapes == 0
            and self.partial_scrapes == 0
            and self.crashes == 0
            and self.recovered
            and self.scrapes > 0
            and all(
                e.survived and (e.recovered or e.kind == "cluster_failing") for e in self.episodes
            )
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
            ("largest /metrics", f"{self.largest_scrape_bytes / 1e6:.2f} MB"),
        ]
        rows += [(f"hostile: {DESCRIPTIONS[e.kind]}", e.cell()) for e in self.episodes]
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
        # During a client attack the server may shed load: failures are counted here instead.
        self.lenient = False
        self.lenient_failures = 0
        self.last_ok = 0.0

    def problem(self, kind: str, text: str) -> None:
        with self.lock:
            if self.lenient:
                self.lenient_failures += 1
                return
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
        with self.lock:
            self.report.largest_scrape_bytes = max(self.report.largest_scrape_bytes, len(text))
            self.last_ok = time.time()
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
    hostile: tuple[str, ...] = (),
    attack: float | None = None,
) -> SoakReport:
    """Run the soak for ``seconds`` (capped at 600) and return its report. ``hostile``: the
    hostile kinds to run after the random faults, ``attack`` seconds each (default two
    intervals, at least 6 s)."""
    seconds = min(seconds, MAX_SECONDS)
    report = SoakReport(interval_seconds=interval)
    rng = random.Random(seed)
    attack = attack or max(2 * interval, 6.0)
    # Each hostile kind takes its attack and at most about three intervals to recover.
    hostile_budget = len(hostile) * (attack + 3 * interval)
    fault_phase = max(seconds - 4 * interval - hostile_budget, seconds * 0.25)
    token_every = token_every or max(fault_phase / 3, 2 * interval)
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
            CCE_EXPORTER_REQUEST_DEADLINE=f"{min(3.0, interval):g}",
            CCE_EXPORTER_MAX_RETRIES="2",
            CCE_EXPORTER_RETRY_DEADLINE=str(interval * 1.5),
            CCE_EXPORTER_CONCURRENCY="8",
            CCE_EXPORTER_JOB_RETENTION="30",
        )
        for resource in RESOURCES:
            env[f"CCE_EXPORTER_{resource.upper()}_INTERVAL"] = f"{interval:g}"
        # The clusters' Kubernetes objects too, under the same faults.
        env["CCE_EXPORTER_KUBERNETES_ENABLED"] = "true"
        env["CCE_EXPORTER_KUBERNETES_INTERVAL"] = f"{interval:g}"
        service = ExporterService(
            load_settings(None, env), build_targets=TargetBuilder(), heap=HeapFreezer()
        )
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
        for kind in FAULT_KINDS:
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
        for kind in hostile:
            episode = await _episode(kind, ctl, service, server, scraper, attack, interval)
            report.episodes.append(episode)
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


async def _recovery(service: ExporterService, since: float, within: float) -> float | None:
    """Seconds from ``since`` until every resource succeeded after it, or None."""
    deadline = time.time() + within
    while time.time() < deadline:
        if _all_recovered(service, since):
            return time.time() - since
        await asyncio.sleep(0.1)
    return None


async def _episode(
    kind: str,
    ctl: Any,
    service: ExporterService,
    server: Server,
    scraper: Scraper,
    attack: float,
    interval: float,
) -> Episode:
    """Run one hostile kind (see the module docstring) and measure survival and recovery."""
    episode = Episode(kind)
    report = scraper.report
    failures_before = report.failed_scrapes + report.partial_scrapes
    crashes_before = report.crashes
    url = f"http://127.0.0.1:{server.port}"
    within = 3 * interval + 2.0
    if kind in CLIENT_KINDS:
        scraper.lenient = True
        try:
            result = await _client_attack(kind, url, service, attack)
        finally:
            scraper.lenient = False
        ended = time.time()
        # Recovered: a complete scrape of /metrics answered again after the attack.
        for _ in range(int(within / 0.05)):  # the scraper is a thread: polled
            if scraper.last_ok >= ended:
                break
            await asyncio.sleep(0.05)
        episode.survived = bool(result.get("survived")) and report.crashes == crashes_before
        episode.recovered = scraper.last_ok >= ended
        episode.recovery_seconds = scraper.last_ok - ended if episode.recovered else None
        numbers = result.get("numbers", {})
        episode.note = _client_note(kind, numbers, scraper.lenient_failures)
        scraper.lenient_failures = 0
        return episode
    peak = rss_mb()
    stop_sampling = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop_sampling.is_set():
            peak = max(peak, rss_mb())
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    rss_before = rss_mb()
    cut_before = counts()[0].get("label_value", 0)
    largest_before = report.largest_scrape_bytes
    report.largest_scrape_bytes = 0
    try:
        if kind == "drip":
            for path in ("/nodes$", "/v3/auth/tokens$"):
                await ctl(
                    "POST",
                    "/_sim/faults",
                    {"kind": "drip", "rate": 1.0, "path": path, "drip_ms": 300},
                )
            await ctl("POST", "/_sim/tokens/expire")
        elif kind == "gzip_bomb":
            await ctl(
                "POST",
                "/_sim/faults",
                {"kind": "gzip_bomb", "rate": 1.0, "path": "/nodepools$", "bomb_mb": 1024},
            )
        elif kind == "oversized_labels":
            await ctl(
                "POST",
                "/_sim/faults",
                {
                    "kind": "oversized_names",
                    "rate": 1.0,
                    "path": "/clusters(/[^/]+)?$",
                    "name_bytes": 100_000,
                },
            )
        elif kind == "cluster_failing":
            state = service.targets[0].collector.state
            victim = next(c for c in state.clusters if c.id)
            await ctl(
                "POST",
                "/_sim/faults",
                {"kind": "http_500", "rate": 1.0, "path": f"/clusters/{victim.id}/nodes$"},
            )
        await asyncio.sleep(attack)
        if kind == "cluster_failing":
            ready, reasons = service.readiness()
            failing = service.targets[0].collector.cluster_success.get("nodes", {})
            episode.survived = ready and failing.get(victim.id or "") is False
            episode.note = "cluster shown failing" if episode.survived else "; ".join(reasons)
            episode.recovered = episode.survived
            return episode
        cleared = time.time()
        await ctl("DELETE", "/_sim/faults")
        episode.recovery_seconds = await _recovery(service, cleared, within)
        episode.recovered = episode.recovery_seconds is not None
    finally:
        stop_sampling.set()
        await sampler
        largest = report.largest_scrape_bytes
        report.largest_scrape_bytes = max(largest, largest_before)
    episode.survived = (
        report.failed_scrapes + report.partial_scrapes == failures_before
        and report.crashes == crashes_before
    )
    if kind == "gzip_bomb":
        episode.note = f"peak RSS {peak:.0f} MB, {rss_before:.0f} MB before"
    elif kind == "oversized_labels":
        cut = counts()[0].get("label_value", 0) - cut_before
        episode.note = f"largest /metrics {largest / 1e6:.2f} MB, {cut} label values cut"
    elif kind == "drip":
        episode.note = "cut off at the request deadline"
    return episode


async def _client_attack(
    kind: str, url: str, service: ExporterService, attack: float
) -> dict[str, Any]:
    """One attack of :mod:`bench.attacks`, in its own process (it must not share this
    process's CPU and event loop with the server it attacks)."""
    args = [sys.executable, "-m", "bench.attacks"]
    extra: list[str] = []
    login: Server | None = None
    if kind == "hangups":
        args.append("hangup")
    elif kind == "connection_flood":
        args.append("flood")
    else:
        # A second listener of the same exporter, with basic auth.
        import bcrypt

        from exporter.webconfig import parse_web_config

        password = "soak-" + str(random.random())
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
        web = parse_web_config({"basic_auth_users": {"soak": hashed}})
        login = Server(build_app(service, web_config=web), "127.0.0.1:0", web, grace=1)
        await login.start()
        url = f"http://127.0.0.1:{login.port}"
        args.append("login-flood")
        extra = ["--user", "soak", "--password", password]
    args += ["--url", url, "--pid", str(os.getpid()), *extra]
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 120 + attack)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return {"survived": False, "numbers": {}, "notes": ["the attack did not end"]}
        try:
            result: dict[str, Any] = json.loads(out)
        except ValueError:
            return {"survived": False, "numbers": {}, "notes": ["no result from the attack"]}
        return result
    finally:
        if login is not None:
            await login.stop()


def _client_note(kind: str, numbers: dict[str, float], scrape_failures: int) -> str:
    if kind == "hangups":
        size = numbers.get("metrics_bytes", 0) / 1e6
        text = f"{numbers.get('hangups', 0):.0f} hang-ups of a {size:.1f} MB /metrics"
    elif kind == "connection_flood":
        text = (
            f"{numbers.get('connections_opened', 0):.0f} half-open connections, "
            f"/healthz {numbers.get('healthz_answered', 0):.0f}"
            f"/{numbers.get('healthz_probes', 0):.0f} answered, "
            f"max {numbers.get('healthz_max_seconds', -1):.2f} s"
        )
    else:
        text = (
            f"{numbers.get('clients', 0):.0f} clients; a real login took "
            f"{numbers.get('first_login_seconds', -1):.2f} s"
        )
    return text + (f"; {scrape_failures} scrapes failed during it" if scrape_failures else "")


def _all_recovered(service: ExporterService, since: float) -> bool:
    for target in service.targets:
        # The hourly upgrade checks recover on their own interval, not within this soak's.
        for resource in (r for r in service.enabled(target) if r in RESOURCES):
            health = target.collector.health[resource]
            if health.last_success is None or health.last_success < since or not health.success:
                return False
        kube = target.kube.health if target.kube is not None else None
        if kube is not None and (
            kube.last_success is None or kube.last_success < since or not kube.success
        ):
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
    parser.add_argument(
        "--hostile",
        default=",".join(HOSTILE_KINDS),
        help="hostile kinds to run, comma-separated ('' for none); default: all of them",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON too")
    args = parser.parse_args(argv)
    report = asyncio.run(
        soak(
            args.seconds,
            clusters=args.clusters,
            nodes_per_cluster=args.nodes_per_cluster,
            interval=args.interval,
            fault_rate=args.fault_rate,
            hostile=tuple(k for k in args.hostile.split(",") if k),
        )
    )
    print(report.text())
    if args.json:
        print(json.dumps({**asdict(report), "passed": report.passed}, indent=2))
    print("PASS" if report.passed else "FAIL", file=sys.stderr)
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
