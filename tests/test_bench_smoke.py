"""The benchmark's machinery at a tiny size: real simulator and exporter processes, real scrapes.

Asserts the structure of what ``python -m bench`` reports (every key, sane values, the request
count the design promises), never wall-clock figures: the machine is shared.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.run import RESULT_KEYS, lower_bound, percentile, table


def test_lower_bound_is_three_dependent_steps() -> None:
    kinds = {"clusters": 1, "nodes": 40, "nodepools": 40, "addons": 40, "quotas": 1, "job": 33}
    # 1 list; 121 independent calls at 32 at a time = 4 rounds; 33 job polls = 2 rounds.
    assert lower_bound(kinds, 32, 0.05) == pytest.approx((1 + 4 + 2) * 0.05)
    assert lower_bound({"clusters": 1, "quotas": 1}, 32, 0.05) == pytest.approx(0.1)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert math.isnan(percentile([], 0.5))


def test_bench_runs_end_to_end_at_a_tiny_size(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    code = main(
        [
            *("--sizes", "3x4"),
            *("--cycles", "1", "--latency-ms", "5", "--scrapes", "5"),
            *("--growth-cycles", "3", "--growth-seconds", "5", "--baseline-seconds", "5"),
            *("--output", str(output)),
        ]
    )
    assert code == 0
    rows = json.loads(output.read_text())
    assert len(rows) == 1
    row = rows[0]
    assert tuple(row) == RESULT_KEYS
    assert (row["clusters"], row["nodes_per_cluster"]) == (3, 4)
    # Never a call per node: 1 cluster list + 3 per cluster + quotas + one per live job.
    assert 1 + 3 * 3 + 1 <= row["requests"] < 1 + 3 * 3 + 1 + 3 * 4
    assert row["lower_bound_seconds"] >= 3 * 0.005
    # The ratio is computed before rounding: at this size the cycle's rounding to 1 ms moves
    # cycle/bound by up to 0.5 ms / bound.
    assert row["ratio_to_bound"] == pytest.approx(
        row["cycle_seconds"] / row["lower_bound_seconds"],
        rel=0.01,
        abs=0.001 / row["lower_bound_seconds"],
    )
    assert row["exposition_bytes"] > 1000
    assert row["cpu_seconds"] > 0 and row["peak_rss_mb"] > 10
    for key in ("scrape_p50_ms", "scrape_p99_ms", "baseline_scrape_p50_ms"):
        assert row[key] > 0
    assert row["scrape_p50_ms"] <= row["scrape_p99_ms"]
    assert row["rss_growth_pct"] is not None
    # The bare client fetched the same URLs: its cycle and CPU are positive, and the ratios are
    # the exporter's figures over them.
    assert row["bare_cycle_seconds"] > 0 and row["bare_cpu_seconds"] > 0
    assert row["cycle_over_bare"] == pytest.approx(
        row["cycle_seconds"] / row["bare_cycle_seconds"], rel=0.05, abs=0.01
    )


def test_table_has_one_line_per_size() -> None:
    from bench.run import SizeResult

    row = dict.fromkeys(RESULT_KEYS, 1.0)
    row.update(clusters=2, nodes_per_cluster=3, requests=10, exposition_bytes=2000)
    text = table([SizeResult(row, {}, [], 1, 1, "all")])
    lines = text.splitlines()
    assert len(lines) == 3 and lines[2].startswith("| 2x3 |")
