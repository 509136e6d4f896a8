"""The status console (``/``, ``/cluster``, ``/status.json``) against a seeded simulator world.

The world is the demo's (``cce-exporter demo``: 30 clusters, 10 nodes each, seed 7) with a
dry-run policy whose awake window has just ended, one cluster with a hostile name and one
cluster whose node listing answers HTTP 500. The browser test renders the page in headless
Chromium at 1400 and 420 px; ``CCE_EXPORTER_UPDATE_SCREENSHOTS=1`` writes the screenshots to
``docs/img/`` (they are committed and linked from the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import struct
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from exporter.assemble import TargetBuilder
from exporter.collect.service import ExporterService
from exporter.config import load_settings
from exporter.hibernation.controller import (
    HibernationController,
    ServiceStateStore,
    targets_from_service,
)
from exporter.hibernation.policy import load_policy_file
from exporter.simulator import Simulator, SimulatorConfig, running_simulator
from exporter.status.html import render_status
from exporter.status.model import (
    ADDON_UNHEALTHY,
    CLUSTER_STUCK_SECONDS,
    JOB_STUCK_SECONDS,
    NODE_ABNORMAL,
    POOL_BLOCKING_CONDITIONS,
    QUOTA_RATIO,
    build_status,
)
from exporter.status.routes import status_routes
from exporter.web import Server, build_app

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = '<script>alert("x")</script>&<b>'
BROKEN = "sim-broken-nodes"
DEADLINE = 60.0

#: The kinds the seeded demo world shows, and a word each line of that kind says.
EXPECTED_KINDS = {
    "cluster_failing": "cluster is",
    "node_abnormal": "node",
    "nodepool_cannot_scale": "sold out",
    "cluster_condition": "certificate",
    "cluster_locked": "cluster is locked",
    "addon_unhealthy": "add-on",
    "job_stuck": "stuck in",
    "quota_exhausted": "used up",
    "hibernation_pending": "hibernation pending",
    "collection_failed": "HTTP 500",
}


@dataclass
class Console:
    sim: Simulator
    service: ExporterService
    controller: HibernationController
    server: Server
    http: httpx.AsyncClient

    @property
    def url(self) -> str:
        return self.server.url


def _policy(tmp: Path) -> Path:
    now = datetime.now(ZoneInfo("Europe/Berlin"))
    start = (now - timedelta(hours=3)).strftime("%H:%M")
    end = (now - timedelta(minutes=5)).strftime("%H:%M")
    path = tmp / "policy.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "policies": [
                    {
                        "name": "office-hours",
                        "clusters": {"names": ["sim-cluster-00*"]},
                        "timezone": "Europe/Berlin",
                        "awake": [f"Mon-Sun {start}-{end}"],
                        "dry_run": True,
                    }
                ]
            }
        )
    )
    return path


@contextlib.asynccontextmanager
async def console(tmp: Path) -> AsyncIterator[Console]:
    config = SimulatorConfig(clusters=30, nodes_per_cluster=10, seed=7, transition_seconds=20.0)
    async with running_simulator(config) as sim:
        async with httpx.AsyncClient(base_url=sim.base_url, timeout=10.0) as ctl:
            for name, phase in ((HOSTILE, "Error"), (BROKEN, "Available")):
                r = await ctl.post(
                    "/_sim/clusters", json={"name": name, "phase": phase, "nodes": 2}
                )
                assert r.status_code < 300, r.text
            broken = next(c for c in sim.world.clusters.values() if c.name == BROKEN).uid
            r = await ctl.post(
                "/_sim/faults",
                json={"kind": "http_500", "rate": 1.0, "path": f"/clusters/{broken}/nodes"},
            )
            assert r.status_code < 300, r.text
        env = dict(sim.settings)
        env.update(
            {
                "CCE_EXPORTER_LISTEN": "127.0.0.1:0",
                "CCE_EXPORTER_MAX_RETRIES": "0",
                "CCE_EXPORTER_TIMEOUT": "5s",
                "CCE_EXPORTER_STATE_FILE": str(tmp / "state.json"),
            }
        )
        settings = load_settings(None, env)
        service = ExporterService(settings, build_targets=TargetBuilder())
        await service.setup()
        await service.collect_all()
        controller = HibernationController(
            load_policy_file(_policy(tmp)),
            targets_from_service(service),
            store=ServiceStateStore(service),
            clock=service.clock,
        )
        service.hibernation = controller
        target = service.targets[0]
        await controller.tick({target.config.name: list(target.collector.state.clusters)})
        app = build_app(
            service,
            extra_routes=status_routes(service),
            on_shutdown=[controller.close, service.close],
        )
        server = Server(app, "127.0.0.1:0")
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as http:
                yield Console(sim, service, controller, server, http)
        finally:
            await server.stop()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[Console]:
    async with console(tmp_path) as c:
        yield c


class Sections(HTMLParser):
    """Text and links inside each ``<section>``, keyed by its heading's id."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, list[str]] = {}
        self.items: dict[str, list[str]] = {}  # the <li> texts of each section
        self.links: dict[str, list[str]] = {}
        self._current: str | None = None
        self._li: list[str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self._current = None
        if tag == "h2" and a.get("id"):
            self._current = a["id"]
            self.sections.setdefault(self._current, [])
        if tag == "li" and self._current:
            self._li = []
        if tag == "a" and self._current and a.get("href"):
            self.links.setdefault(self._current, []).append(a["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "li" and self._li is not None and self._current:
            self.items.setdefault(self._current, []).append("".join(self._li))
            self._li = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._current:
            self.sections[self._current].append(data)
        if self._li is not None:
            self._li.append(data)


def parse_sections(page: str) -> Sections:
    parser = Sections()
    parser.feed(page)
    return parser


def check_problems(page: str, data: dict[str, Any]) -> None:
    """Every expected kind is in the Problems section (HTML) and in ``problems`` (JSON)."""
    sections = parse_sections(page)
    assert next(iter(sections.sections)) == "problems", "Problems is not the first section"
    items = sections.items["problems"]
    for kind, word in EXPECTED_KINDS.items():
        assert any(word in item for item in items), f"no {kind} line in Problems: {items}"
        assert any(p["kind"] == kind for p in data["problems"]), f"no {kind} in status.json"
    # Lines of a cluster link to its page.
    assert any(link.startswith("cluster?target=") for link in sections.links["problems"])


async def test_seeded_world_problems_appear_in_page_and_json(world: Console) -> None:
    page = (await world.http.get("/")).text
    r = await world.http.get("/status.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    data = r.json()
    check_problems(page, data)
    # The per-cluster collection failure carries its cause.
    failure = next(
        p for p in data["problems"] if p["kind"] == "collection_failed" and p["cluster"] == BROKEN
    )
    assert failure["cause"]["status_code"] == 500
    assert failure["cause"]["code"]
    assert failure["cause"]["api_message"]
    assert f"HTTP 500; API error code {failure['cause']['code']}" in page
    # Counts agree with the simulator's own summary.
    summary = world.sim.world.summary()
    counts = data["counts"]
    assert counts["clusters_total"] == summary["clusters"]
    assert counts["clusters"]["failing"] == sum(
        n
        for p, n in summary["cluster_phases"].items()
        if p in ("Unavailable", "Error", "RollbackFailed")
    )
    assert counts["quotas_near_limit"] >= 1
    assert counts["jobs_stuck_or_failed"] >= 1
    assert counts["firing_conditions"] == sum(
        1 for p in data["problems"] if p["severity"] != "info"
    )
    # Hibernation: the dry-run policy's clusters, with the next transition in both zones.
    rows = data["hibernation"]
    assert rows and all(row["policy"] == "office-hours" and row["dry_run"] for row in rows)
    pending = [row for row in rows if row["pending"]]
    assert pending and all(row["desired"] == "hibernated" for row in pending)
    assert all(row["last_action"]["result"] == "dry_run" for row in pending)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[0]["next"]["at"])
    assert rows[0]["next"]["local"].endswith(("CET", "CEST"))
    assert counts["hibernation_actions_24h"] >= len(pending)
    assert "dry run" in "".join(parse_sections(page).sections["hibernation"])
    # Collections: one broken cluster is named with its cause, whatever the pass's outcome.
    nodes = next(c for c in data["collections"] if c["resource"] == "nodes")
    assert nodes["last_attempt"] and [e["cluster"] for e in nodes["errors"]] == [BROKEN]
    assert nodes["errors"][0]["cause"]["status_code"] == 500


async def test_hostile_names_are_escaped_everywhere(world: Console) -> None:
    page = (await world.http.get("/")).text
    assert "<script>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&lt;b&gt;" in page
    data = (await world.http.get("/status.json")).json()
    hostile = next(c for c in data["clusters"] if c["name"] == HOSTILE)
    r = await world.http.get("/cluster", params={"target": hostile["target"], "id": hostile["id"]})
    assert r.status_code == 200
    assert "<script>" not in r.text
    # A hostile query is echoed escaped, and bounded.
    r = await world.http.get("/", params={"q": '"><script>x</script>' + "a" * 500, "phase": "<i>"})
    assert r.status_code == 200
    assert "<script>x" not in r.text and "<i>" not in r.text
    assert "a" * 101 not in r.text


async def test_filters_and_the_cluster_page(world: Console) -> None:
    data = (await world.http.get("/status.json", params={"phase": "failing"})).json()
    assert data["clusters"] and all(c["group"] == "failing" for c in data["clusters"])
    page = (await world.http.get("/", params={"phase": "failing"})).text
    table = "".join(parse_sections(page).sections["clusters"])
    for c in data["clusters"]:
        assert c["id"] in table
    assert "sim-cluster-000" not in table or any(
        c["name"] == "sim-cluster-000" for c in data["clusters"]
    )
    data = (await world.http.get("/status.json", params={"q": "CLUSTER-01"})).json()
    assert {c["name"] for c in data["clusters"]} == {f"sim-cluster-01{i}" for i in range(10)}
    # The cluster page: nodes, pools, add-ons, jobs and quota context of one cluster.
    data_all = (await world.http.get("/status.json")).json()
    all_clusters = data_all["clusters"]
    upgrading = next(c for c in all_clusters if c["phase"] == "Upgrading")
    r = await world.http.get(
        "/cluster", params={"target": upgrading["target"], "id": upgrading["id"]}
    )
    assert r.status_code == 200
    sections = parse_sections(r.text)
    assert {"problems", "nodes", "pools", "addons", "jobs", "quotas"} <= set(sections.sections)
    assert "UpgradeCluster" in "".join(sections.sections["jobs"])
    assert any("stuck in Running" in item for item in sections.items["problems"])
    # A pool a condition blocks says which, on its cluster's page.
    blocked = next(p for p in data_all["problems"] if "cannot scale up:" in p["summary"])
    r = await world.http.get(
        "/cluster", params={"target": blocked["target"], "id": blocked["cluster_id"]}
    )
    pools = "".join(parse_sections(r.text).sections["pools"])
    assert "blocked by" in pools and "Insufficient" in pools
    r = await world.http.get("/cluster", params={"target": "nope", "id": "nope"})
    assert r.status_code == 404


async def test_page_refreshes_itself_and_says_how_old_the_data_is(world: Console) -> None:
    page = (await world.http.get("/")).text
    interval = build_status(world.service).refresh_seconds
    assert f'<meta http-equiv="refresh" content="{interval}">' in page
    assert re.search(r"data updated \d+ s ago", page)
    page = (await world.http.get("/", params={"refresh": "0"})).text
    assert 'http-equiv="refresh"' not in page
    # Accessible: labelled fields, captions, scoped headers, scrollable regions.
    assert "<label for=f-phase>" in page and "<label for=f-name>" in page
    assert page.count("<caption>") == page.count("<table>")
    assert "role=region" in page and 'scope="col"' in page


def test_problem_thresholds_are_the_alert_rules() -> None:
    alerts = yaml.safe_load((ROOT / "alerts" / "thresholds.yaml").read_text())["alerts"]
    assert alerts["CCEClusterStuckInTransition"]["threshold_seconds"] == CLUSTER_STUCK_SECONDS
    assert alerts["CCEJobStuck"]["threshold_seconds"] == JOB_STUCK_SECONDS
    assert alerts["CCEQuotaNearlyExhausted"]["ratio"] == QUOTA_RATIO
    assert set(alerts["CCEAddonUnhealthy"]["statuses"]) == ADDON_UNHEALTHY
    assert set(alerts["CCENodeAbnormal"]["phases"]) | {"RepairFailed"} == NODE_ABNORMAL
    assert set(alerts["CCENodePoolScaleBlocked"]["conditions"]) == POOL_BLOCKING_CONDITIONS


def test_json_schema_doc_names_every_field() -> None:
    doc = (ROOT / "docs" / "status.md").read_text()
    from exporter.status import model

    classes = (
        model.StatusModel,
        model.Counts,
        model.Problem,
        model.Cause,
        model.HibernationRow,
        model.NextTransition,
        model.OverrideView,
        model.ActionRecord,
        model.ClusterRow,
        model.QuotaRow,
        model.Collection,
        model.CollectionError,
        model.TargetInfo,
    )
    for cls in classes:
        for name in cls.__dataclass_fields__:
            assert f"`{name}`" in doc, f"docs/status.md does not document {cls.__name__}.{name}"


# --- the browser ---------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
UPDATE = os.environ.get("CCE_EXPORTER_UPDATE_SCREENSHOTS") == "1"


async def chromium(url: str, *args: str) -> bytes:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="cce-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=profile,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
        return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium missing: `make test` installs Debian's package"
)
async def test_browser_renders_the_problems_at_1400_and_420_px(
    world: Console, tmp_path: Path
) -> None:
    data = (await world.http.get("/status.json")).json()
    for width, height in ((1400, 2200), (420, 3000)):
        dom = await chromium(
            f"{world.url}/?refresh=0", "--dump-dom", f"--window-size={width},{height}"
        )
        check_problems(dom.decode(), data)
        shot = tmp_path / f"status-{width}.png"
        await chromium(
            f"{world.url}/?refresh=0", f"--screenshot={shot}", f"--window-size={width},{height}"
        )
        assert png_size(shot)[0] == width
        if UPDATE:
            target = ROOT / "docs" / "img" / shot.name
            target.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, target)


async def test_failed_wake_up_override_and_target_wide_failure(tmp_path: Path) -> None:
    config = SimulatorConfig(clusters=2, nodes_per_cluster=1, seed=2, transition_seconds=0.3)
    async with running_simulator(config) as sim:
        ids = {}
        async with httpx.AsyncClient(base_url=sim.base_url, timeout=10.0) as ctl:
            for name in ("dev-a", "dev-b"):
                r = await ctl.post("/_sim/clusters", json={"name": name, "phase": "Hibernation"})
                ids[name] = r.json()["uid"]
            await ctl.post(f"/_sim/clusters/{ids['dev-a']}/fail-next-wakeup")
            await ctl.post(
                "/_sim/faults", json={"kind": "http_500", "rate": 1.0, "path": "/quotas"}
            )
        env = dict(sim.settings)
        env.update({"CCE_EXPORTER_LISTEN": "127.0.0.1:0", "CCE_EXPORTER_MAX_RETRIES": "0"})
        service = ExporterService(load_settings(None, env), build_targets=TargetBuilder())
        await service.setup()
        await service.collect_all()
        policies = tmp_path / "policy.yaml"
        policies.write_text(
            "policies: [{name: days, clusters: {names: [dev-*]}, timezone: Asia/Tokyo,"
            " awake: ['Mon-Sun 00:00-24:00']}]\n"
            "controller: {poll_seconds: 0.1, max_attempts: 1, retry_backoff_seconds: 0}\n"
        )
        controller = HibernationController(
            load_policy_file(policies), targets_from_service(service), clock=service.clock
        )
        service.hibernation = controller
        try:
            await controller.refresh()
            outcome = await controller.request("dev-a", "awake", source="test", wait=True)
            assert outcome.result == "failed", outcome
            until = datetime.now(ZoneInfo("UTC")) + timedelta(hours=2)
            assert controller.set_override("dev-b", "hibernated", until, "<i>offsite</i>") is None
            app = build_app(service, extra_routes=status_routes(service))
            server = Server(app, "127.0.0.1:0")
            await server.start()
            try:
                async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as http:
                    data = (await http.get("/status.json")).json()
                    page = (await http.get("/")).text
            finally:
                await server.stop()
        finally:
            await controller.close()
            await service.close()
    problems = {(p["kind"], p["cluster"]): p for p in data["problems"]}
    failed = problems[("hibernation_failed", "dev-a")]
    assert failed["severity"] == "critical" and "awake failed" in failed["summary"]
    quotas = problems[("collection_failed", None)]
    assert quotas["subject"] == "quotas" and quotas["cause"]["status_code"] == 500
    # The last attempt of a failed collection is shown (not "never").
    row = next(c for c in data["collections"] if c["resource"] == "quotas")
    assert row["success"] is False and row["last_attempt"] and row["last_success"] is None
    rows = {r["cluster"]: r for r in data["hibernation"]}
    assert rows["dev-a"]["last_action"]["result"] == "failed"
    assert rows["dev-b"]["override"]["kind"] == "keep_hibernated"
    assert rows["dev-b"]["desired"] == "hibernated" and rows["dev-b"]["policy_desired"] == "awake"
    assert not rows["dev-b"]["pending"]  # kept hibernated on purpose
    assert rows["dev-b"]["timezone"] == "Asia/Tokyo"
    assert data["counts"]["hibernation_actions_24h"] == 1
    hibernation = "".join(parse_sections(page).sections["hibernation"])
    assert "keep hibernated until" in hibernation and "<i>offsite</i>" in hibernation
    assert "&lt;i&gt;offsite&lt;/i&gt;" in page
    assert "failed" in hibernation and "AwakeFailed" in hibernation


async def test_before_the_first_collection(tmp_path: Path) -> None:
    config = SimulatorConfig(clusters=1, nodes_per_cluster=1, seed=3)
    async with running_simulator(config) as sim:
        env = {**sim.settings, "CCE_EXPORTER_LISTEN": "127.0.0.1:0"}
        service = ExporterService(load_settings(None, env), build_targets=TargetBuilder())
        await service.setup()
        try:
            model = build_status(service)
        finally:
            await service.close()
    assert model.data_updated_at is None and not model.ready
    assert model.problems_total == 0 and model.counts.clusters_total == 0
    assert all(c.success is None and c.last_attempt is None for c in model.collections)
    page = render_status(model)
    assert "no collection yet" in page and "No problems" in page
    assert "No hibernation policy file is configured." in page


async def test_a_cluster_failure_shows_when_the_pass_as_a_whole_succeeded(world: Console) -> None:
    # One broken cluster need not fail the resource (a pass over the clusters may count as a
    # success): the console still lists that cluster's failure, and the collection as partial.
    world.service.targets[0].collector.health["nodes"].success = True
    data = (await world.http.get("/status.json")).json()
    assert any(
        p["kind"] == "collection_failed" and p["cluster"] == BROKEN and p["severity"] == "warning"
        for p in data["problems"]
    )
    nodes = next(c for c in data["collections"] if c["resource"] == "nodes")
    assert nodes["success"] is True and [e["cluster"] for e in nodes["errors"]] == [BROKEN]
    page = (await world.http.get("/")).text
    assert "partial: 1 failed" in page
