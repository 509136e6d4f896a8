"""The state file: atomic saves, and corrupt files set aside without failing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from exporter.collect.statefile import StateFile
from exporter.collect.tracking import JobTracker, PhaseTracker


def test_round_trip_and_no_temporary_files_left(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "sub" / "state.json")
    hibernation = {"handled": {"t/c": 1.0}, "overrides": {}, "history": {}, "in_flight": {}}
    sections = {"phases": {"t": {"cluster/a": ["Available", 12.5]}}, "hibernation": hibernation}
    state.save(sections)
    assert state.load() == sections
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["state.json"]


def test_missing_file_is_empty_state(tmp_path: Path) -> None:
    assert StateFile(tmp_path / "nope.json").load() == {}


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"sections": 3}', b"\xff\xfe"])
def test_corrupt_file_is_reported_and_moved_aside(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with caplog.at_level(logging.ERROR):
        assert StateFile(path).load() == {}
    assert "corrupt" in caplog.text
    assert not path.exists()
    aside = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content
    # The next save works and produces a readable file again.
    StateFile(path).save({"a": 1})
    assert json.loads(path.read_text())["sections"] == {"a": 1}


def test_failed_save_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = StateFile(path)
    state.save({"v": 1})
    with pytest.raises(TypeError):
        state.save({"v": object()})  # not JSON-serialisable: nothing is written
    assert state.load() == {"v": 1}


def test_phase_tracker_keeps_first_sight_until_the_phase_changes() -> None:
    t = PhaseTracker()
    assert t.observe("cluster/a", "Available", 100.0) == 100.0
    assert t.observe("cluster/a", "Available", 160.0) == 100.0
    assert t.observe("cluster/a", "Hibernating", 200.0) == 200.0
    t.observe("node/a/n1", "Active", 100.0)
    t.observe("node/b/n2", "Active", 100.0)
    t.observe("nodepool/a/p1", "", 100.0)
    t.retain("node", [], scope="a")
    assert t.since("node/a/n1") is None and t.since("node/b/n2") == 100.0
    assert t.renderer_snapshot() == {
        "cluster/a": 200.0,
        "node/n2": 100.0,
        "nodepool/a/p1": 100.0,
    }
    t.retain_clusters(["b"])  # cluster a is gone: its pools go with it
    assert t.since("nodepool/a/p1") is None and t.since("node/b/n2") == 100.0
    t.retain("cluster", ["cluster/b"])
    assert t.since("cluster/a") is None and len(t) == 1
    restored = PhaseTracker()
    restored.load(json.loads(json.dumps(t.dump())))
    assert restored.snapshot() == t.snapshot()
    restored.load({"bad": "x", "worse": [1, 2, 3]})
    assert restored.snapshot() == t.snapshot()


def test_phase_tracker_observes_a_cluster_group_at_once() -> None:
    t = PhaseTracker()
    t.observe("node/b/n9", "Active", 50.0)
    t.observe_group("node", "a", [("n1", "Active"), ("n2", "Installing")], 100.0)
    assert t.renderer_snapshot() == {"node/n1": 100.0, "node/n2": 100.0, "node/n9": 50.0}
    # Unchanged phases keep their time, a changed one restarts, a missing one is forgotten, and
    # the other cluster is left alone.
    t.observe_group("node", "a", [("n1", "Active"), ("n3", None)], 200.0)
    assert t.since("node/a/n1") == 100.0
    assert t.since("node/a/n2") is None
    assert t.since("node/a/n3") == 200.0 and t.since("node/b/n9") == 50.0
    t.observe_group("node", "a", [("n1", "Abnormal"), ("n3", None)], 300.0)
    assert t.renderer_snapshot() == {"node/n1": 300.0, "node/n3": 200.0, "node/n9": 50.0}
    # The same as observe() key by key: the state file cannot tell them apart.
    by_key = PhaseTracker()
    by_key.observe("node/b/n9", "Active", 50.0)
    by_key.observe("node/a/n1", "Abnormal", 300.0)
    by_key.observe("node/a/n3", None, 200.0)
    assert t.dump() == by_key.dump()
    t.observe_group("node", "a", [], 400.0)
    assert len(t) == 1 and t.renderer_snapshot() == {"node/n9": 50.0}


def test_job_tracker_retention_and_bound() -> None:
    jobs = JobTracker(retention=100.0, max_jobs=3)
    for i in range(5):
        assert jobs.discover(f"j{i}", "c", "cluster", now=float(i))
    assert not jobs.discover("j0", "c", "cluster", now=9.0)
    assert not jobs.discover(None, "c", "cluster", now=9.0)
    for i, entry in enumerate(list(jobs.entries.values())):
        entry.finished_at = float(i)
    # Past max_jobs the oldest finished go first.
    jobs.expire(now=10.0)
    assert sorted(jobs.entries) == ["j2", "j3", "j4"]
    # Past the retention window every finished job goes.
    jobs.expire(now=10_000.0)
    assert jobs.entries == {}


def test_job_tracker_state_round_trip() -> None:
    jobs = JobTracker(retention=100.0)
    jobs.discover("j1", "c1", "hibernate", now=5.0)
    jobs.entries["j1"].observed = True
    again = JobTracker(retention=100.0)
    again.load(json.loads(json.dumps(jobs.dump())))
    again.load({"broken": {"cluster_id": "c"}})
    assert list(again.entries) == ["j1"]
    assert again.entries["j1"].observed and again.entries["j1"].source == "hibernate"
