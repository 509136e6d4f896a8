"""End to end with a real Prometheus: simulator -> exporter -> Prometheus -> rules and dashboards.

Three processes on loopback, each stopped by its PID at teardown: ``cce-exporter simulate`` (the
fake CCE + IAM API and its world: a stuck job, a full quota, abnormal nodes, failing add-ons),
``cce-exporter run`` (1 s collection intervals, password auth so that IAM token fetches happen) and
Debian's ``prometheus`` (1 s scrape and evaluation intervals) loading a variant of the alert rules.

The variant is rendered by ``python -m alerts.generate`` from a copy of alerts/thresholds.yaml with
shorter ``for`` durations, a shorter stuck-job threshold and the real 1 s collection intervals
(see ``short_thresholds``): the expressions are the committed ones, only the thresholds config
differs.

Then, polling the Prometheus HTTP API with deadlines:

* the alerts the simulator's faults call for fire with the expected labels and annotations, each for
  exactly the resources the exporter reports in that state, and the exporter-health alerts do not;
* every query of every dashboard panel, with the template variables substituted the way Grafana
  does (all values, and one real project, cluster and instance), returns data, except the few
  listed in ``NO_DATA`` with the reason. An excused query that does return data fails the test too,
  so the list cannot go stale.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from conftest import SimProcess, stop_process
from prometheus_client.parser import text_string_to_metric_families
from promtool_helpers import PROMTOOL, check_rules

from exporter.simulator.app import Credentials

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = ROOT / "alerts" / "thresholds.yaml"
DASHBOARD_DIR = ROOT / "dashboards"
PROMETHEUS = shutil.which("prometheus") or (
    "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
)

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS is None or PROMTOOL is None, reason="prometheus/promtool are not installed"
    ),
]

#: 12 clusters give the world's first six special cluster phases (Upgrading among them: the
#: cluster whose upgrade job is stuck); 7 nodes each reach the world's Abnormal node.
SIM_ARGS = ("--clusters", "12", "--nodes-per-cluster", "7", "--seed", "1")
RESOURCES = ("CLUSTERS", "NODES", "NODEPOOLS", "ADDONS", "QUOTAS", "JOBS")
SCRAPE_JOB = "cce-exporter"
INTERVAL_S = 1
SHORT_FOR = "2s"
#: The stuck job has been running for three hours; every other job of the world for minutes.
JOB_STUCK_AFTER_S = 1800
ADDON_UNHEALTHY = ("abnormal", "installFailed", "upgradeFailed", "deleteFailed", "unavailable")
#: Grafana's $__rate_interval: max($__interval + scrape interval, 4 * scrape interval), with the
#: data source's scrape interval set to Prometheus's 1 s and a 1 s step.
RATE_INTERVAL = f"{4 * INTERVAL_S}s"
START_DEADLINE = 30.0
DEADLINE = 25.0

#: (dashboard uid, panel title, refId) -> why that query has no data in the demo scenario.
_NO_HIBERNATION = (
    "no hibernation metrics: the demo scenario has no policy file and `cce-exporter run` "
    "exports the cce_hibernation_* families only with a running hibernation controller"
)
NO_DATA: dict[tuple[str, str, str], str] = {
    ("cce-exporter", "Exporters", "B"): "sharding is off: cce_exporter_shard_ordinal is "
    "exported only with total_shards > 1",
    ("cce-exporter", "Exporters", "C"): "sharding is off: cce_exporter_total_shards is "
    "exported only with total_shards > 1",
    ("cce-hibernation", "Hibernated hours", "A"): _NO_HIBERNATION,
    ("cce-hibernation", "Estimated savings", "A"): _NO_HIBERNATION,
    ("cce-hibernation", "Clusters under a policy", "A"): _NO_HIBERNATION,
    ("cce-hibernation", "Desired vs actual state", "A"): _NO_HIBERNATION,
    ("cce-hibernation", "Next transitions", "A"): _NO_HIBERNATION,
    ("cce-hibernation", "Overrides in force", "A"): _NO_HIBERNATION + "; and no override is set",
    ("cce-hibernation", "Policies", "A"): _NO_HIBERNATION,
    ("cce-hibernation", "Actions by result", "A"): _NO_HIBERNATION,
    ("cce-hibernation", "Action duration (p95, trailing day)", "A"): _NO_HIBERNATION,
    ("cce-hibernation", "Hibernated hours by cluster", "A"): _NO_HIBERNATION,
    ("cce-hibernation", "Estimated savings by cluster", "A"): _NO_HIBERNATION,
}

T = TypeVar("T")


def poll(check: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Call ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)  # the pace of polling, not a wait for an event


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tail(path: Path, n: int = 2000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


# --- the rule variant ----------------------------------------------------------------------------


def short_thresholds() -> dict[str, Any]:
    """alerts/thresholds.yaml with short ``for`` durations and a stuck-job threshold of 30 min.

    ``collect_intervals`` are the exporter's real 1 s, but data counts as stale only after 15 of
    them: the machine running the tests is small and shared, and a slow collection is not what
    this test is about.
    """
    cfg: dict[str, Any] = yaml.safe_load(THRESHOLDS.read_text(encoding="utf-8"))
    cfg["job_selector"] = f'job="{SCRAPE_JOB}"'
    for alert in cfg["alerts"].values():
        if alert["for"] not in ("0m", "0s", 0):
            alert["for"] = SHORT_FOR
    cfg["alerts"]["CCEJobStuck"]["threshold_seconds"] = JOB_STUCK_AFTER_S
    cfg["collect_intervals"] = {r.lower(): INTERVAL_S for r in RESOURCES} | {"default": INTERVAL_S}
    cfg["stale_after_intervals"] = 15
    return cfg


def render_variant(directory: Path) -> Path:
    thresholds = directory / "thresholds.yaml"
    thresholds.write_text(yaml.safe_dump(short_thresholds()), encoding="utf-8")
    rules = directory / "rules.yaml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "alerts.generate",
            "--thresholds",
            str(thresholds),
            "--output",
            str(rules),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return rules


def alert_rules(path: Path) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {r["alert"]: r for g in data["groups"] for r in g["rules"] if "alert" in r}


def test_rule_variant_differs_only_in_thresholds_and_passes_promtool(tmp_path: Path) -> None:
    variant_path = render_variant(tmp_path)
    printed = check_rules(variant_path)
    committed = alert_rules(ROOT / "alerts" / "cce.rules.yaml")
    variant = alert_rules(variant_path)
    assert f"SUCCESS: {len(committed)} rules found" in printed
    assert variant.keys() == committed.keys()
    for name, rule in variant.items():
        original = committed[name]
        assert rule["labels"] == original["labels"], name
        assert rule["annotations"].keys() == original["annotations"].keys(), name
        assert rule["for"] in (SHORT_FOR, original["for"]), name
    # The expressions are the generator's: only the numbers of the thresholds config differ.
    default = yaml.safe_load(THRESHOLDS.read_text())["alerts"]["CCEJobStuck"]["threshold_seconds"]
    assert variant["CCEJobStuck"]["expr"] == committed["CCEJobStuck"]["expr"].replace(
        f"> {default}", f"> {JOB_STUCK_AFTER_S}"
    )
    assert variant["CCENodeAbnormal"]["expr"] == committed["CCENodeAbnormal"]["expr"]
    assert variant["CCENodeAbnormal"]["for"] == SHORT_FOR


# --- the processes -------------------------------------------------------------------------------


class Prometheus:
    """A small client of the Prometheus HTTP API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=10.0)

    def _data(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        response = self.http.get(path, params=params)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (
            f"{path} {params}: {response.status_code} {body}"
        )
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._data("/api/v1/query", params)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"}
        result: list[dict[str, Any]] = self._data("/api/v1/query_range", params)["result"]
        return result

    def series(self, match: str, start: float, end: float) -> list[dict[str, str]]:
        params = {"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        result: list[dict[str, str]] = self._data("/api/v1/series", params)
        return result

    def alerts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._data("/api/v1/alerts")["alerts"]
        return result

    def alerting_rules(self) -> dict[str, dict[str, Any]]:
        groups = self._data("/api/v1/rules", {"type": "alert"})["groups"]
        return {r["name"]: r for g in groups for r in g["rules"]}

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


@dataclass
class Stack:
    sim: SimProcess
    sim_http: httpx.Client
    exporter_url: str
    prometheus: Prometheus
    started: float  # Unix time when Prometheus started scraping
    rules_path: Path
    logs: dict[str, Path]

    def exposition(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """The exporter's /metrics, parsed: family -> [(labels, value)]."""
        text = httpx.get(f"{self.exporter_url}/metrics", timeout=10.0).text
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return samples

    def sim_state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.sim_http.get("/_sim/state").json()
        return state

    def diagnostics(self) -> str:
        return "\n".join(f"--- {name}:\n{tail(path)}" for name, path in self.logs.items())


def _start_exporter(sim: SimProcess, tmp_path: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCE_EXPORTER_")}
    # Password auth, so the IAM token fetch (the "Auth refreshes" panel) happens as well.
    env.update(
        {k: v for k, v in sim.settings.items() if k not in ("CCE_EXPORTER_AK", "CCE_EXPORTER_SK")}
    )
    env.update(
        {
            "CCE_EXPORTER_AUTH_METHOD": "password",
            "CCE_EXPORTER_LISTEN": "127.0.0.1:0",
            "CCE_EXPORTER_LOG_LEVEL": "INFO",
            "CCE_EXPORTER_LOG_FORMAT": "text",
        }
    )
    env.update({f"CCE_EXPORTER_{r}_INTERVAL": f"{INTERVAL_S}s" for r in RESOURCES})
    # Kubernetes objects inside the clusters, through the simulator's CCE.
    env.update(
        {
            "CCE_EXPORTER_KUBERNETES_ENABLED": "true",
            "CCE_EXPORTER_KUBERNETES_INTERVAL": f"{INTERVAL_S}s",
        }
    )
    log = tmp_path / "exporter.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )

    def listening() -> str | None:
        if process.poll() is not None:
            pytest.fail(f"exporter exited with {process.returncode}:\n{tail(log)}")
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", tail(log, 100_000))
        return found.group(1) if found else None

    try:
        url = poll(listening, "the exporter to listen", START_DEADLINE)
    except BaseException:
        stop_process(process)
        raise
    return process, url, log


def _start_prometheus(
    exporter_url: str, rules: Path, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], str, Path]:
    assert PROMETHEUS is not None
    config = {
        "global": {
            "scrape_interval": f"{INTERVAL_S}s",
            "scrape_timeout": f"{INTERVAL_S}s",
            "evaluation_interval": f"{INTERVAL_S}s",
        },
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": SCRAPE_JOB,
                "static_configs": [{"targets": [exporter_url.removeprefix("http://")]}],
            }
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = tmp_path / "prometheus.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode}:\n{tail(log)}")
        try:
            return httpx.get(f"{url}/-/ready", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    try:
        poll(ready, "Prometheus to be ready", START_DEADLINE)
    except BaseException:
        stop_process(process)
        raise
    return process, url, log


@pytest.fixture
def stack(start_simulator: Callable[..., SimProcess], tmp_path: Path) -> Iterator[Stack]:
    sim = start_simulator(*SIM_ARGS)
    rules = render_variant(tmp_path)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        exporter, exporter_url, exporter_log = _start_exporter(sim, tmp_path)
        processes.append(exporter)
        started = time.time()
        prometheus, prometheus_url, prometheus_log = _start_prometheus(
            exporter_url, rules, tmp_path
        )
        processes.append(prometheus)
        with httpx.Client(base_url=sim.base_url, timeout=10.0) as sim_http:
            stack = Stack(
                sim=sim,
                sim_http=sim_http,
                exporter_url=exporter_url,
                prometheus=Prometheus(prometheus_url),
                started=started,
                rules_path=rules,
                logs={"exporter": exporter_log, "prometheus": prometheus_log},
            )
            yield stack
            stack.prometheus.http.close()
    finally:
        for process in reversed(processes):
            stop_process(process)


# --- alerts --------------------------------------------------------------------------------------


#: Per alert, the labels that tell its alerts apart.
ALERT_KEYS: dict[str, tuple[str, ...]] = {
    "CCEJobStuck": ("job_id", "phase", "type", "resource"),
    "CCEQuotaExhausted": ("resource", "region", "az"),
    "CCENodeAbnormal": ("cluster", "node", "phase"),
    "CCEAddonUnhealthy": ("cluster", "addon", "status"),
    "CCEClusterUnavailable": ("cluster", "phase"),
    "CCENodePoolSoldOut": ("cluster", "nodepool"),
    "CCENodePoolError": ("cluster", "nodepool"),
    "CCEKubeJobFailed": ("cluster", "namespace", "job_name"),
    "CCEKubeJobNotCompleted": ("cluster", "namespace", "job_name"),
    "CCEKubeCronJobMissedSchedule": ("cluster", "namespace", "cronjob"),
    "CCEKubeQuotaAlmostFull": ("cluster", "namespace", "resourcequota", "resource"),
    "CCEKubeQuotaFullyUsed": ("cluster", "namespace", "resourcequota", "resource"),
    "CCEKubeQuotaExceeded": ("cluster", "namespace", "resourcequota", "resource"),
}

#: CCEKubeJobNotCompleted's threshold for Jobs without a deadline (thresholds.yaml).
KUBE_JOB_DEFAULT_S = 43200


def _kube_expected(
    m: Mapping[str, list[tuple[dict[str, str], float]]],
) -> dict[str, list[dict[str, str]]]:
    """The Kubernetes alerts' cases, computed from the exporter's exposition."""

    def ident(labels: Mapping[str, str], *drop: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((k, v) for k, v in labels.items() if k not in drop))

    now = time.time()
    starts = {ident(lab): v for lab, v in m.get("cce_kube_job_status_start_time_seconds", [])}
    deadlines = {ident(lab): v for lab, v in m.get("cce_kube_job_spec_active_deadline_seconds", [])}
    done = {ident(lab) for lab, _ in m.get("cce_kube_job_status_completion_time_seconds", [])}
    active = {ident(lab): v for lab, v in m.get("cce_kube_job_status_active", [])}
    last = {
        ident(lab): v for lab, v in m.get("cce_kube_cronjob_status_last_schedule_time_seconds", [])
    }
    suspended = {ident(lab): v for lab, v in m.get("cce_kube_cronjob_spec_suspend", [])}
    hard = {
        ident(lab, "type"): v
        for lab, v in m.get("cce_kube_resourcequota", [])
        if lab["type"] == "hard"
    }
    ratios = [
        (lab, used / hard[ident(lab, "type")])
        for lab, used in m.get("cce_kube_resourcequota", [])
        if lab["type"] == "used" and hard.get(ident(lab, "type"), 0) > 0
    ]
    return {
        "CCEKubeJobFailed": [
            lab
            for lab, v in m.get("cce_kube_job_status_condition", [])
            if v == 1 and lab["condition"] == "Failed" and lab["status"] == "true"
        ],
        "CCEKubeJobNotCompleted": [
            dict(key)
            for key, start in starts.items()
            if active.get(key, 0) > 0
            and key not in done
            and now - start > deadlines.get(key, KUBE_JOB_DEFAULT_S)
        ],
        "CCEKubeCronJobMissedSchedule": [
            lab
            for lab, next_at in m.get("cce_kube_cronjob_next_schedule_time_seconds", [])
            if ident(lab) in last
            and suspended.get(ident(lab)) == 0
            and now - last[ident(lab)] > 1.5 * (next_at - last[ident(lab)])
        ],
        "CCEKubeQuotaAlmostFull": [lab for lab, r in ratios if 0.9 < r < 1],
        "CCEKubeQuotaFullyUsed": [lab for lab, r in ratios if r == 1],
        "CCEKubeQuotaExceeded": [lab for lab, r in ratios if r > 1],
    }


def _key(alertname: str, labels: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(labels.get(name, "") for name in ALERT_KEYS[alertname])


def _expected_from_exposition(stack: Stack) -> dict[str, set[tuple[str, ...]]]:
    """Per alert, the resources the exporter's own exposition reports in the alert's condition."""
    m = stack.exposition()

    def current(family: str, label: str, values: tuple[str, ...]) -> list[dict[str, str]]:
        return [lab for lab, v in m.get(family, []) if v == 1 and lab[label] in values]

    def ident(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(labels.items()))

    limits = {ident(lab): v for lab, v in m.get("cce_quota_limit", [])}
    durations = {lab["job_id"]: v for lab, v in m.get("cce_job_duration_seconds", [])}
    info = {lab["job_id"]: lab for lab, _ in m.get("cce_job_info", [])}
    found: dict[str, list[dict[str, str]]] = {
        "CCEJobStuck": [
            lab | info[lab["job_id"]]
            for lab in current("cce_job_status_phase", "phase", ("Initializing", "Running"))
            if durations.get(lab["job_id"], 0) > JOB_STUCK_AFTER_S
        ],
        "CCEQuotaExhausted": [
            lab
            for lab, used in m.get("cce_quota_used", [])
            if 0 < limits.get(ident(lab), 0) <= used
        ],
        "CCENodeAbnormal": current("cce_node_status_phase", "phase", ("Abnormal", "Error")),
        "CCEAddonUnhealthy": current("cce_addon_status", "status", ADDON_UNHEALTHY),
        "CCEClusterUnavailable": current(
            "cce_cluster_status_phase", "phase", ("Unavailable", "Error")
        ),
        "CCENodePoolSoldOut": current("cce_nodepool_status_phase", "phase", ("SoldOut",)),
        "CCENodePoolError": current("cce_nodepool_status_phase", "phase", ("Error",)),
        **_kube_expected(m),
    }
    return {name: {_key(name, lab) for lab in labels} for name, labels in found.items()}


def check_alerts(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    prom = stack.prometheus
    variant = alert_rules(stack.rules_path)

    # Every rule of the variant is loaded and evaluates without error.
    def evaluated() -> dict[str, dict[str, Any]] | None:
        rules = prom.alerting_rules()
        if rules.keys() == variant.keys() and all(r["health"] == "ok" for r in rules.values()):
            return rules
        return None

    poll(evaluated, "every alerting rule to be loaded and evaluated")
    # The exporter is scraped under the job the healthy-only alert watches, so that alert not
    # firing below means something.
    poll(lambda: prom.value(f'up{{job="{SCRAPE_JOB}"}} == 1'), "the exporter to be scraped")

    # The simulator's world has each fault this test is about.
    world = stack.sim_state()["world"]
    assert world["node_phases"].get("Abnormal", 0) >= 1, world
    assert world["addon_statuses"].get("abnormal", 0) >= 1, world
    assert world["cluster_phases"].get("Upgrading", 0) == 1, world

    # Jobs are found through the clusters and nodes that name them: wait for a full picture.
    def collected() -> dict[str, set[tuple[str, ...]]] | None:
        found = _expected_from_exposition(stack)
        return found if all(found.values()) else None

    expected = poll(collected, "the exporter to report a case of every alert")
    assert {k[2] for k in expected["CCENodeAbnormal"]} >= {"Abnormal"}, expected
    assert {k[2] for k in expected["CCEAddonUnhealthy"]} >= {"abnormal"}, expected
    assert {k[0] for k in expected["CCEQuotaExhausted"]} == {"nodepool"}, expected
    assert len(expected["CCEJobStuck"]) == 1, expected

    def firing() -> dict[str, list[dict[str, Any]]] | None:
        by_name: dict[str, list[dict[str, Any]]] = {}
        for alert in prom.alerts():
            if alert["state"] == "firing":
                by_name.setdefault(alert["labels"]["alertname"], []).append(alert)
        for name, keys in expected.items():
            if {_key(name, a["labels"]) for a in by_name.get(name, [])} != keys:
                return None
        return by_name

    try:
        by_name = poll(firing, f"{', '.join(expected)} to fire")
    except pytest.fail.Exception:
        got = {a["labels"]["alertname"]: a["state"] for a in prom.alerts()}
        pytest.fail(f"alerts {got}, wanted {expected}\n{stack.diagnostics()}")

    for name in expected:
        rule = variant[name]
        for alert in by_name[name]:
            labels, annotations = alert["labels"], alert["annotations"]
            assert labels["severity"] == rule["labels"]["severity"], alert
            assert labels["job"] == SCRAPE_JOB and labels["instance"], alert
            assert labels["project_id"] == stack.sim.settings["CCE_EXPORTER_PROJECT_ID"], alert
            assert annotations["runbook_url"].endswith(f"#{name.lower()}"), alert
            assert "{{" not in annotations["summary"] + annotations["description"], alert

    (job,) = by_name["CCEJobStuck"]
    upgrading = prom.query('cce_cluster_status_phase{phase="Upgrading"} == 1')
    assert len(upgrading) == 1, upgrading
    cluster = upgrading[0]["metric"]
    assert job["labels"]["type"] == "UpgradeCluster", job
    assert job["labels"]["resource"] == cluster["cluster"], job
    assert job["labels"]["resource_id"] == job["labels"]["cluster_id"] == cluster["cluster_id"]
    assert float(job["value"]) > JOB_STUCK_AFTER_S, job
    assert job["labels"]["job_id"] in job["annotations"]["summary"], job

    (quota,) = by_name["CCEQuotaExhausted"]
    assert quota["labels"]["severity"] == "critical"
    assert quota["labels"]["region"] == Credentials.from_seed(0).project_name, quota
    used = prom.value('cce_quota_used{resource="nodepool"}')
    assert used is not None and float(quota["value"]) == used > 0, quota

    for alert in by_name["CCENodeAbnormal"]:
        assert alert["labels"]["node"] in alert["annotations"]["summary"], alert
        assert alert["labels"]["cluster"] in alert["annotations"]["description"], alert
    for alert in by_name["CCEAddonUnhealthy"]:
        assert alert["labels"]["addon"] in alert["annotations"]["summary"], alert

    # The exporter is healthy: none of its own alerts is even pending.
    healthy_only = {"CCEExporterDown", "CCEExporterCollectFailing", "CCEExporterDataStale"}
    active = {a["labels"]["alertname"] for a in prom.alerts()}
    assert not active & healthy_only, active
    rules = prom.alerting_rules()
    for name in healthy_only:
        assert rules[name]["health"] == "ok" and rules[name]["state"] == "inactive", rules[name]
    return by_name


# --- dashboards ----------------------------------------------------------------------------------


def _escape(value: str) -> str:
    """A value inside a PromQL regex string, escaped as Grafana's Prometheus data source does."""
    return re.sub(r"[$^*{}\[\]'+?.()|\\]", lambda m: "\\\\" + m.group(0), value)


def substitute(expr: str, values: Mapping[str, str], range_s: int) -> str:
    """Grafana's template variables and built-ins replaced; ``values`` are regex-ready."""
    builtins = {
        "__rate_interval": RATE_INTERVAL,
        "__interval": f"{INTERVAL_S}s",
        "__range": f"{range_s}s",
        "__range_s": str(range_s),
    }

    def replace(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in builtins:
            return builtins[name]
        assert name in values, f"no value for ${name} in {expr!r}"
        return values[name]

    return re.sub(r"\$\{?(\w+)\}?", replace, expr)


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for item in dashboard["panels"]:
        yield item
        yield from item.get("panels", [])


def _has_data(result: list[dict[str, Any]]) -> bool:
    """Some sample that is a number (an all-NaN quantile draws nothing in Grafana)."""
    for series in result:
        points = series.get("values") or [series["value"]]
        if any(not math.isnan(float(v)) for _, v in points):
            return True
    return False


def _variable_values(
    stack: Stack, dashboard: dict[str, Any], chosen: Mapping[str, str], start: float, end: float
) -> list[tuple[str, dict[str, str]]]:
    """The substitutions to evaluate a dashboard with: every variable at All, then one real value.

    Each query variable's ``label_values(selector, label)`` is evaluated against Prometheus (it
    must offer the value chosen for it).
    """
    all_values: dict[str, str] = {}
    one_value: dict[str, str] = {}
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        name = var["name"]
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"])
        assert m, var["query"]
        selector = substitute(m.group(1), one_value, 1)
        offered = {s[m.group(2)] for s in stack.prometheus.series(selector, start, end)}
        assert chosen[name] in offered, f"variable {name}: {chosen[name]!r} not in {offered}"
        all_values[name] = var["allValue"]
        one_value[name] = _escape(chosen[name])
    return [("all", all_values), (f"one {chosen}", one_value)]


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref: str
    variables: str
    expr: str
    instant: bool

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.dashboard, self.panel, self.ref)


def dashboard_queries(stack: Stack, chosen: Mapping[str, str], end: float) -> list[Query]:
    start = stack.started
    range_s = max(int(end - start), 1)
    queries = []
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        assert "datasource" in {v["name"] for v in dashboard["templating"]["list"]}
        # "<dashboard uid>:<variable>" entries of chosen override a variable for one dashboard.
        picks = dict(chosen)
        for key, value in chosen.items():
            uid, _, name = key.partition(":")
            if name and uid == dashboard["uid"]:
                picks[name] = value
        for variables, values in _variable_values(stack, dashboard, picks, start, end):
            for panel in _panels(dashboard):
                for t in panel.get("targets", []):
                    assert t["datasource"]["uid"] == "${datasource}", panel["title"]
                    queries.append(
                        Query(
                            dashboard["uid"],
                            panel["title"],
                            t["refId"],
                            variables,
                            substitute(t["expr"], values, range_s),
                            bool(t.get("instant")),
                        )
                    )
    return queries


def check_dashboards(stack: Stack, chosen: Mapping[str, str]) -> None:
    prom = stack.prometheus

    def evaluate(q: Query, end: float) -> bool:
        if q.instant:
            return _has_data(prom.query(q.expr, end))
        return _has_data(prom.query_range(q.expr, stack.started, end))

    pending: dict[tuple[str, str, str, str], Query] = {}
    done: set[tuple[tuple[str, str, str], str]] = set()
    with_data: set[tuple[str, str, str]] = set()

    def all_have_data() -> bool:
        end = time.time()
        # Variables and $__range follow the growing window, as a refreshing dashboard would.
        for q in dashboard_queries(stack, chosen, end):
            if q.key in NO_DATA or (q.key, q.variables) in done:
                if q.key in NO_DATA and evaluate(q, end):
                    with_data.add(q.key)
                continue
            if evaluate(q, end):
                done.add((q.key, q.variables))
                pending.pop((*q.key, q.variables), None)
            else:
                pending[(*q.key, q.variables)] = q
        return not pending

    try:
        poll(all_have_data, "every dashboard query to return data")
    except pytest.fail.Exception:
        missing = "\n".join(
            f"  {q.dashboard} / {q.panel} / {q.ref} ({q.variables}):\n    {q.expr}"
            for q in pending.values()
        )
        pytest.fail(f"dashboard queries without data:\n{missing}\n{stack.diagnostics()}")
    stale = {key: NO_DATA[key] for key in with_data}
    assert not stale, f"these queries now return data: drop them from NO_DATA: {stale}"


def put_todays_states_into_play(stack: Stack, cluster_id: str) -> None:
    """Give the chosen cluster what today's panels show: a certificate about to expire, a failed
    rotation, a billing lock, a pool that cannot scale up and an add-on that can be upgraded."""
    prom = stack.prometheus
    http = stack.sim_http
    status = {
        "certificate": "CertificateExpiringWithin30Days",
        "rotation": "RotationFailed",
        "lock": {"scene": "ARREAR", "source": "CBC"},
    }
    response = http.post(f"/_sim/clusters/{cluster_id}/status", json=status)
    assert response.status_code == 200, response.text
    pools = poll(
        lambda: prom.query(f'cce_nodepool_status_condition{{cluster_id="{cluster_id}"}}'),
        "the chosen cluster's pool conditions",
    )
    pool_id = pools[0]["metric"]["nodepool_id"]
    conditions = [
        {"type": "Scalable", "status": "False", "reason": "QuotaInsufficient"},
        {"type": "QuotaInsufficient", "status": "True", "reason": "ECSQuotaInsufficient"},
    ]
    response = http.post(
        f"/_sim/clusters/{cluster_id}/nodepools/{pool_id}/conditions",
        json={"conditions": conditions},
    )
    assert response.status_code == 200, response.text
    addons = poll(
        lambda: prom.query(f'cce_addon_info{{cluster_id="{cluster_id}", addon="coredns"}}'),
        "the chosen cluster's coredns",
    )
    body = {
        "kind": "addon",
        "id": addons[0]["metric"]["addon_id"],
        "phase": "running",
        "version": "1.0.0",
    }
    response = http.post("/_sim/phase", json=body)
    assert response.status_code == 200, response.text


def finish_jobs(stack: Stack, cluster_id: str, previous: float) -> float:
    """Add two nodes (each with a CreateNode job) to the cluster, let the exporter track their
    jobs, then move the simulator clock past their end: the exporter sees the jobs finish.

    Returns the new count of finished CreateNode jobs observed in Prometheus.
    """
    prom = stack.prometheus
    response = stack.sim_http.post(
        f"/_sim/clusters/{cluster_id}/nodes", json={"count": 2, "phase": "Build"}
    )
    assert response.status_code == 201, response.text
    uids = response.json()["uids"]
    selector = f'cce_job_info{{resource_id=~"{"|".join(uids)}"}}'
    poll(lambda: len(prom.query(selector)) == len(uids), "the new nodes' jobs to be tracked")
    response = stack.sim_http.post("/_sim/clock/advance", json={"seconds": 1800})
    assert response.status_code == 200, response.text
    count = 'sum(cce_job_completed_duration_seconds_count{type="CreateNode"})'

    def grown() -> float | None:
        value = prom.value(count)
        return value if value is not None and value >= previous + len(uids) else None

    return poll(grown, "the new nodes' jobs to finish")


def check_alert_panel_filter(stack: Stack, chosen: Mapping[str, str], cluster_id: str) -> None:
    """The Overview's "Firing CCE alerts" table follows $project and $cluster: at All it shows
    every firing CCE alert; with one project and cluster, exactly the alerts of that cluster (by
    cluster_id, so job alerts too) and those tied to no cluster."""
    prom = stack.prometheus
    dashboard = json.loads((DASHBOARD_DIR / "cce-overview.json").read_text(encoding="utf-8"))
    (expr,) = [
        p["targets"][0]["expr"]
        for p in _panels(dashboard)
        if p["title"] == "Firing CCE alerts" and p["type"] == "table"
    ]
    at = time.time()
    firing = prom.query('ALERTS{alertname=~"CCE.*", alertstate="firing"}', at)
    at_all = prom.query(substitute(expr, {"project": ".*", "cluster": ".*"}, 1), at)
    one = {name: _escape(chosen[name]) for name in ("project", "cluster")}
    at_one = prom.query(substitute(expr, one, 1), at)

    def keys(result: list[dict[str, Any]]) -> set[tuple[tuple[str, str], ...]]:
        return {tuple(sorted(r["metric"].items())) for r in result}

    assert keys(at_all) == keys(firing)
    # The scenario has alerts of other clusters, so the filter has something to drop.
    assert any(r["metric"].get("cluster_id", cluster_id) != cluster_id for r in firing), firing
    wanted = {
        k
        for k in keys(firing)
        if dict(k).get("cluster_id", cluster_id) == cluster_id
        and dict(k).get("project_id", chosen["project"]) == chosen["project"]
    }
    assert wanted, firing
    assert keys(at_one) == wanted


def test_alerts_fire_and_dashboards_show_data(stack: Stack) -> None:
    prom = stack.prometheus
    # Two failed attempts, then a success: the "Retries" panel gets its series while every
    # collection still succeeds.
    response = stack.sim_http.post(
        "/_sim/faults", json={"kind": "http_503", "count": 2, "path": "quotas"}
    )
    assert response.status_code in (200, 201), response.text

    check_alerts(stack)

    # Jobs finishing twice, at two moments: the job-duration histogram then has a rate (a
    # series born with its first observation has none until a second one).
    (upgrading,) = prom.query('cce_cluster_status_phase{phase="Upgrading"} == 1')
    cluster = upgrading["metric"]
    first = finish_jobs(stack, cluster["cluster_id"], 0)
    finish_jobs(stack, cluster["cluster_id"], first)

    chosen = {
        "project": stack.sim.settings["CCE_EXPORTER_PROJECT_ID"],
        "cluster": cluster["cluster"],
        "instance": stack.exporter_url.removeprefix("http://"),
        # The Workloads dashboard: a cluster whose Kubernetes objects are collected (Available,
        # batch/v1 CronJobs, so with last successful times) and a namespace with every kind.
        "namespace": "batch",
        "cce-workloads:cluster": prom.query(
            'cce_kube_cronjob_status_last_successful_time_seconds{namespace="batch"}'
        )[0]["metric"]["cluster"],
    }
    put_todays_states_into_play(stack, cluster["cluster_id"])
    check_dashboards(stack, chosen)
    check_alert_panel_filter(stack, chosen, cluster["cluster_id"])
