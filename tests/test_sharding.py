"""Sharding: three shards against the simulator export exactly what one unsharded exporter does.

Each shard is the real ``ExporterService`` whose targets are built with
``cluster_filter=shard.owns`` and, except on shard 0, quota collection off; the expositions are
parsed with prometheus_client's parser and compared as sets of (name, labels, value).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.assemble import TargetBuilder
from exporter.collect.service import ExporterService
from exporter.config import load_settings
from exporter.ha.sharding import ShardConfig, ShardError, detect_ordinal, shard_of, shard_settings
from exporter.simulator import Simulator

NOW = 1_800_000_000.0
TOTAL = 3
Sample = tuple[str, tuple[tuple[str, str], ...], float]

#: Families that are not per cluster. The exporter's own metrics (requests made, durations)
#: legitimately differ per replica; the completed-job duration histogram is an aggregate per
#: project that the shards split between them (``sum without (instance)`` recombines it).
AGGREGATES = ("cce_job_completed_duration_seconds",)


def resource_samples(text: str) -> list[Sample]:
    out = []
    for family in text_string_to_metric_families(text):
        if family.name.startswith("cce_exporter_") or family.name in AGGREGATES:
            continue
        for s in family.samples:
            out.append((s.name, tuple(sorted(s.labels.items())), s.value))
    return out


def env_for(sim: Simulator, **extra: str) -> dict[str, str]:
    env = dict(sim.settings)
    env.update({"CCE_EXPORTER_MAX_RETRIES": "0", "CCE_EXPORTER_TIMEOUT": "5s", **extra})
    return env


async def collect(settings: Any, shard: ShardConfig | None) -> tuple[str, dict[str, bool]]:
    service = ExporterService(
        settings,
        build_targets=TargetBuilder(
            cluster_filter=shard.owns if shard is not None and shard.enabled else None
        ),
        clock=lambda: NOW,
    )
    if shard is not None:
        service.extra_registries.append(shard.registry())
    try:
        await service.setup()
        results = await service.collect_all()
    finally:
        await service.close()
    exposition = service.exposition()
    assert exposition is not None
    return exposition.text.decode(), results


@pytest.mark.simulator(clusters=40, nodes_per_cluster=2, seed=4, clock_frozen=True, clock_start=NOW)
async def test_the_union_of_the_shards_is_the_unsharded_exposition(simulator: Simulator) -> None:
    whole_text, whole_results = await collect(load_settings(None, env_for(simulator)), None)
    assert all(whole_results.values()), whole_results
    whole = resource_samples(whole_text)
    assert len(whole) == len(set(whole))
    assert any(name.startswith("cce_quota_") for name, _, _ in whole)

    per_shard: list[list[Sample]] = []
    for ordinal in range(TOTAL):
        env = env_for(
            simulator,
            CCE_EXPORTER_SHARD=str(ordinal),
            CCE_EXPORTER_TOTAL_SHARDS=str(TOTAL),
        )
        loaded = load_settings(None, env)
        shard = ShardConfig.from_settings(loaded, env)
        assert shard == ShardConfig(ordinal, TOTAL)
        text, results = await collect(shard_settings(loaded, shard), shard)
        assert all(results.values()), results
        # Quotas are per project: only shard 0 asks for them.
        assert ("default/quotas" in results) == (ordinal == 0)
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["cce_exporter_shard_ordinal"].samples[0].value == ordinal
        assert families["cce_exporter_total_shards"].samples[0].value == TOTAL
        samples = resource_samples(text)
        info = [dict(labels) for n, labels, _ in samples if n == "cce_cluster_info"]
        clusters = {labels["cluster_id"] for labels in info}
        assert clusters, f"shard {ordinal} got no cluster out of 40"
        assert all(shard_of(c, TOTAL) == ordinal for c in clusters)
        per_shard.append(samples)

    union = [s for samples in per_shard for s in samples]
    duplicates = [s for s, n in Counter(union).items() if n > 1]
    assert duplicates == []
    # No duplicate identity across shards either (same series, different value).
    series = Counter((name, labels) for name, labels, _ in union)
    assert [k for k, n in series.items() if n > 1] == []
    assert set(union) == set(whole)


def test_shard_of_is_stable_and_roughly_even() -> None:
    ids = [str(uuid.UUID(int=i * 0x9E3779B97F4A7C15 + 7, version=4)) for i in range(300)]
    counts = Counter(shard_of(i, TOTAL) for i in ids)
    assert set(counts) == {0, 1, 2}
    # 100 expected per shard; the binomial standard deviation is about 8.
    assert all(70 <= n <= 130 for n in counts.values()), counts
    # Pinned: changing the hash would move clusters between shards on an upgrade.
    assert [shard_of(f"cluster-{i}", 7) for i in range(8)] == [1, 5, 5, 0, 0, 2, 4, 3]
    assert shard_of("", 1) == 0
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("x", 0)


def test_shard_of_does_not_depend_on_the_process_hash_seed() -> None:
    code = (
        "from exporter.ha.sharding import shard_of;print([shard_of(f'c{i}', 5) for i in range(20)])"
    )
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, timeout=60, check=True
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1
    assert outputs.pop().decode().strip() == str([shard_of(f"c{i}", 5) for i in range(20)])


def settings_env(**extra: str) -> dict[str, str]:
    return {
        "CCE_EXPORTER_ENDPOINT": "http://127.0.0.1:1",
        "CCE_EXPORTER_PROJECT_ID": "p",
        "CCE_EXPORTER_AK": "ak",
        "CCE_EXPORTER_SK": "sk",
        **extra,
    }


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"POD_NAME": "cce-exporter-2", "HOSTNAME": "other-0"}, 2),
        ({"HOSTNAME": "cce-exporter-1"}, 1),
        ({"POD_NAME": "cce-exporter-0"}, 0),
        ({"POD_NAME": "cce-exporter-7f9c8d-abcde"}, None),
        ({"HOSTNAME": "laptop"}, None),
        ({}, None),
    ],
)
def test_detect_ordinal(env: dict[str, str], expected: int | None) -> None:
    assert detect_ordinal(env) == expected


def test_ordinal_from_the_statefulset_pod_name() -> None:
    env = settings_env(CCE_EXPORTER_TOTAL_SHARDS="3", POD_NAME="cce-exporter-2")
    assert ShardConfig.from_settings(load_settings(None, env), env) == ShardConfig(2, 3)


def test_an_explicit_shard_beats_the_pod_name() -> None:
    env = settings_env(
        CCE_EXPORTER_TOTAL_SHARDS="3", CCE_EXPORTER_SHARD="0", POD_NAME="cce-exporter-2"
    )
    assert ShardConfig.from_settings(load_settings(None, env), env) == ShardConfig(0, 3)


def test_unsharded_ignores_the_pod_name() -> None:
    env = settings_env(POD_NAME="cce-exporter-2")
    shard = ShardConfig.from_settings(load_settings(None, env), env)
    assert shard == ShardConfig(0, 1)
    assert not shard.enabled and shard.owns("anything") and shard.owns_quotas


def test_several_shards_and_no_ordinal_is_an_error() -> None:
    env = settings_env(CCE_EXPORTER_TOTAL_SHARDS="3", HOSTNAME="laptop")
    with pytest.raises(ShardError, match="CCE_EXPORTER_SHARD"):
        ShardConfig.from_settings(load_settings(None, env), env)


def test_a_pod_ordinal_beyond_the_total_is_an_error() -> None:
    env = settings_env(CCE_EXPORTER_TOTAL_SHARDS="2", POD_NAME="cce-exporter-2")
    with pytest.raises(ShardError, match="CCE_EXPORTER_TOTAL_SHARDS"):
        ShardConfig.from_settings(load_settings(None, env), env)


def test_shard_config_validates() -> None:
    with pytest.raises(ShardError, match="0 to 2"):
        ShardConfig(3, 3)
    with pytest.raises(ShardError):
        ShardConfig(0, 0)


def test_shard_settings_turn_quotas_off_except_on_shard_zero() -> None:
    settings = load_settings(None, settings_env(CCE_EXPORTER_TOTAL_SHARDS="2"))
    assert shard_settings(settings, ShardConfig(0, 2)) is settings
    other = shard_settings(settings, ShardConfig(1, 2))
    assert [t.resources.quotas.enabled for t in other.targets] == [False]
    assert [t.resources.quotas.enabled for t in settings.targets] == [True]
    assert other.targets[0].resources.nodes == settings.targets[0].resources.nodes
