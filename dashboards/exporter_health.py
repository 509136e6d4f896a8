"""CCE / Exporter: the exporter's own health (collections, CCE API, credentials)."""

from __future__ import annotations

from dashboards.board import (
    Board,
    board,
)
from dashboards.kit import (
    EXPORTER,
    bars,
    colour_overrides,
    count_or_zero,
    firing,
    stat,
    state_timeline,
    steps,
    table,
    target,
    text,
    timeseries,
)

INSTANCE = 'instance=~"$instance"'


def exporter() -> Board:
    return board(
        "cce-exporter",
        "CCE / Exporter",
        "The exporter's own health: collections, API.",
        (
            ("instance", "Instance", "label_values(cce_exporter_build_info, instance)"),
            ("project", "Project", "label_values(cce_exporter_collect_success, project_id)"),
        ),
        (_exporter_summary, _exporter_collections, _exporter_requests, _exporter_latency),
    )


def _exporter_summary(d: Board) -> None:
    """Exporters, failing collections, oldest data."""
    d.add(
        table(
            "Exporters",
            [
                (None, f"cce_exporter_build_info{{{INSTANCE}}}"),
                ("Shard", f"cce_exporter_shard_ordinal{{{INSTANCE}}}"),
                ("Shards", f"cce_exporter_total_shards{{{INSTANCE}}}"),
            ],
            order=["instance", "version", "python_version", "Shard", "Shards"],
        ),
        12,
        5,
    )
    d.add(
        stat(
            "Failing collections",
            [
                target(
                    count_or_zero(f"cce_exporter_collect_success{{{EXPORTER}}} == 0"),
                    "failing",
                )
            ],
            thresholds=firing(),
        ),
        6,
        5,
    )
    d.add(
        stat(
            "Oldest data",
            [
                target(
                    f"max(time() - cce_exporter_last_success_timestamp_seconds{{{EXPORTER}}})",
                    "age",
                )
            ],
            unit="s",
            thresholds=steps(("green", None), ("yellow", 180), ("red", 900)),
        ),
        6,
        5,
    )


def _exporter_collections(d: Board) -> None:
    """Success, duration and age of each collection."""
    d.row("Collections")
    d.add(
        state_timeline(
            "Collection success",
            [
                target(
                    f"min by (project_id, resource) (cce_exporter_collect_success{{{EXPORTER}}})",
                    "{{project_id}} {{resource}}",
                )
            ],
            {"failed": "red", "ok": "green"},
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "Collection duration",
            [
                target(
                    f"max by (project_id, resource) "
                    f"(cce_exporter_collect_duration_seconds{{{EXPORTER}}})",
                    "{{project_id}} {{resource}}",
                )
            ],
            unit="s",
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "Data age",
            [
                target(
                    "max by (project_id, resource) "
                    f"(time() - cce_exporter_last_success_timestamp_seconds{{{EXPORTER}}})",
                    "{{project_id}} {{resource}}",
                )
            ],
            description="Time since the last successful collection; alerts fire at 3 intervals.",
            unit="s",
            thresholds=steps(("green", None), ("red", 900)),
        ),
        24,
        8,
    )


def _exporter_requests(d: Board) -> None:
    """API requests by code and endpoint."""
    d.row("CCE API")
    d.add(
        timeseries(
            "API requests by code",
            [
                target(
                    "sum by (code) (rate(cce_exporter_api_requests_total"
                    f"{{{INSTANCE}}}[$__rate_interval]))",
                    "{{code}}",
                )
            ],
            stack=True,
            unit="reqps",
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "API requests by endpoint",
            [
                target(
                    "sum by (method, endpoint) (rate(cce_exporter_api_requests_total"
                    f"{{{INSTANCE}}}[$__rate_interval]))",
                    "{{method}} {{endpoint}}",
                )
            ],
            unit="reqps",
        ),
        12,
        8,
    )


def _exporter_latency(d: Board) -> None:
    """Latency, retries and credential refreshes."""
    d.add(
        timeseries(
            "Request latency",
            [
                target(
                    f"histogram_quantile({q}, sum by (le) (rate("
                    f"cce_exporter_api_request_duration_seconds_bucket{{{INSTANCE}}}"
                    "[$__rate_interval])))",
                    f"p{round(q * 100)}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
            unit="s",
        ),
        8,
        8,
    )
    d.add(
        timeseries(
            "p95 latency by endpoint",
            [
                target(
                    "histogram_quantile(0.95, sum by (le, method, endpoint) (rate("
                    f"cce_exporter_api_request_duration_seconds_bucket{{{INSTANCE}}}"
                    "[$__rate_interval])))",
                    "{{method}} {{endpoint}}",
                )
            ],
            unit="s",
        ),
        8,
        8,
    )
    d.add(
        bars(
            "Retries",
            [
                target(
                    "sum by (endpoint, reason) (increase(cce_exporter_api_retries_total"
                    f"{{{INSTANCE}}}[$__rate_interval]))",
                    "{{endpoint}} {{reason}}",
                )
            ],
            decimals=0,
        ),
        8,
        8,
    )
    d.add(
        bars(
            "Auth refreshes",
            [
                target(
                    "sum by (result) (increase(cce_exporter_auth_refreshes_total"
                    f"{{{INSTANCE}}}[$__rate_interval]))",
                    "{{result}}",
                )
            ],
            description="IAM token fetches; failures stop every collection.",
            decimals=0,
            overrides=colour_overrides({"failure": "red"}),
        ),
        12,
        8,
    )
    d.add(
        text(
            "About",
            "Self-metrics of cce-exporter. Alerts and runbooks: `docs/alerts.md`, "
            "`docs/runbooks.md`.",
        ),
        12,
        8,
    )
