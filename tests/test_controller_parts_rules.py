"""The controller's parts as units: the cluster view (listings, matching, lookups, refusals) and
the state (overrides with their undo, expiry, records and history), each rule edge by edge."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from exporter.cce.models import Cluster
from exporter.collect.statefile import HISTORY_KEPT
from exporter.hibernation.policy import parse_policy_file
from exporter.hibernation.state import HibernationState, MemoryStateStore, StateNotSaved
from exporter.hibernation.view import ClusterView

POLICIES = """
policies:
  - name: dev
    clusters: {names: ["dev-*", "both-*"], exclude: ["dev-x"]}
    schedules: [{hibernate: "0 0 1 7 *"}]
  - name: also
    clusters: {names: ["both-*"]}
    schedules: [{hibernate: "0 0 1 7 *"}]
  - name: by-id
    clusters: {ids: ["id-9"]}
    schedules: [{hibernate: "0 0 1 7 *"}]
"""


def cluster(cid: str | None, name: str | None) -> Cluster:
    metadata = {k: v for k, v in (("uid", cid), ("name", name)) if v is not None}
    return Cluster.model_validate({"metadata": metadata, "status": {"phase": "Available"}})


def view() -> ClusterView:
    return ClusterView(parse_policy_file(POLICIES))


# --- the cluster view -------------------------------------------------------------------------


def test_a_listing_replaces_its_target_s_clusters_only() -> None:
    v = view()
    v.update({"a": [cluster("1", "dev-1"), cluster("2", "dev-2")], "b": [cluster("3", "dev-3")]})
    assert set(v.clusters) == {("a", "1"), ("a", "2"), ("b", "3")}
    v.update({"a": [cluster("2", "dev-2b")]})
    assert set(v.clusters) == {("a", "2"), ("b", "3")}
    assert v.clusters[("a", "2")].name == "dev-2b"
    assert set(v.matches) == {("a", "2"), ("b", "3")}
    assert v.matches[("a", "2")].cluster == "dev-2b"
    # An empty listing empties its target, and the target stays listed.
    v.update({"b": []})
    assert set(v.clusters) == {("a", "2")}
    assert v.listed == {"a", "b"}
    assert v.by_target() == {"a": [v.clusters[("a", "2")]], "b": []}


def test_a_cluster_without_an_id_is_not_kept() -> None:
    v = view()
    v.update({"a": [cluster(None, "dev-1"), cluster("", "dev-2"), cluster("3", None)]})
    assert set(v.clusters) == {("a", "3")}
    assert v.matches == {}  # a nameless cluster matches no name pattern
    assert v.by_target() == {"a": [v.clusters[("a", "3")]]}
    # Selected by its ID, a nameless cluster is matched with an empty name.
    v.update({"a": [cluster("id-9", None)]})
    assert [(m.cluster_id, m.cluster, m.policy.name) for m in v.matches.values()] == [
        ("id-9", "", "by-id")
    ]


def test_a_cluster_two_policies_select_is_a_conflict_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    v = view()
    v.update({"a": [cluster("1", "both-1"), cluster("2", "dev-2")]})
    v.update({"a": [cluster("1", "both-1"), cluster("2", "dev-2"), cluster("3", "both-3")]})
    assert [(c.target, c.cluster_id, c.policies) for c in v.conflicts] == [
        ("a", "1", ("dev", "also")),
        ("a", "3", ("dev", "also")),
    ]
    assert set(v.matches) == {("a", "2")}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "hibernation policy conflict: " + c.message() for c in v.conflicts
    ]


def test_find_by_id_before_name() -> None:
    v = view()
    # Cluster 2 is named like cluster 1's ID: an ID wins, whatever the order.
    v.update({"a": [cluster("2", "1"), cluster("1", "dev-1")], "b": [cluster("3", "dev-3")]})
    assert v.find("1") == ("a", v.clusters[("a", "1")])
    assert v.find("dev-3") == ("b", v.clusters[("b", "3")])
    assert v.find("3") == ("b", v.clusters[("b", "3")])
    assert v.find("nope") is None


def test_governed_answers_the_match_or_why_none() -> None:
    v = view()
    v.update({"a": [cluster("1", "dev-1"), cluster("2", "both-2"), cluster("3", "prod-3")]})
    governed = v.governed("dev-1")
    assert governed == (("a", "1"), v.matches[("a", "1")])
    assert v.governed("1") == governed
    assert v.governed("both-2") == v.conflicts[0].message()
    assert v.governed("prod-3") == "no policy selects cluster 'prod-3'; it is never acted on"
    assert v.governed("nope") == "cluster 'nope' is not known"


def test_an_excluded_cluster_is_governed_and_marked_excluded() -> None:
    v = view()
    v.update({"a": [cluster("1", "dev-x")]})
    governed = v.governed("dev-x")
    assert not isinstance(governed, str)
    assert governed[1].excluded is True


# --- the state --------------------------------------------------------------------------------


class Refusing(MemoryStateStore):
    """A store that cannot write (after ``ok`` saves)."""

    def __init__(self, value: Any = None, ok: int = 0) -> None:
        super().__init__(value)
        self.ok = ok

    def save(self, value: Any) -> None:
        if self.ok <= 0:
            raise StateNotSaved("disk full")
        self.ok -= 1
        super().save(value)


def state(value: Any = None, store: MemoryStateStore | None = None) -> HibernationState:
    return HibernationState(store if store is not None else MemoryStateStore(value), lambda: 100.0)


def test_a_loaded_state_is_cleaned_and_complete(caplog: pytest.LogCaptureFixture) -> None:
    book = state({"handled": {"t/1": 5, "t/2": "soon"}})
    assert book.data == {"handled": {"t/1": 5}, "overrides": {}, "in_flight": {}, "history": {}}
    dropped = [m for m in caplog.messages if "dropped" in m]
    assert len(dropped) == 1 and dropped[0].startswith("hibernation state: dropped ")
    assert state(None).data == {"handled": {}, "overrides": {}, "in_flight": {}, "history": {}}


def test_a_save_that_fails_raises_only_when_strict() -> None:
    book = state(store=Refusing())
    book.save()  # logged by the store; the next save tries again
    with pytest.raises(StateNotSaved, match="disk full"):
        book.save(strict=True)


def test_an_override_is_set_saved_and_undone_when_it_cannot_be() -> None:
    store = Refusing(ok=1)
    book = state(store=store)
    first = {"kind": "skip", "until": None}
    book.set_override("t/1", first)
    assert store.value["overrides"] == {"t/1": first}
    with pytest.raises(StateNotSaved):
        book.set_override("t/1", {"kind": "keep", "state": "awake", "until": None})
    assert book.overrides == {"t/1": first}
    with pytest.raises(StateNotSaved):
        book.set_override("t/2", {"kind": "skip", "until": None})
    assert book.overrides == {"t/1": first}
    with pytest.raises(StateNotSaved):
        book.clear_override("t/1")
    assert book.overrides == {"t/1": first}


def test_clearing_an_override() -> None:
    store = MemoryStateStore()
    book = state(store=store)
    assert book.clear_override("t/1") is False
    assert store.saves == 0  # nothing to clear, nothing written
    book.set_override("t/1", {"kind": "skip", "until": None})
    assert book.clear_override("t/1") is True
    assert store.value["overrides"] == {} and store.saves == 2
    # Nothing to clear needs no save: it cannot fail.
    assert state(store=Refusing()).clear_override("t/1") is False


def test_overrides_expire_at_their_end() -> None:
    store = MemoryStateStore()
    book = state(store=store)
    book.data["overrides"] = {
        "t/1": {"kind": "keep", "until": 100.0},
        "t/2": {"kind": "keep", "until": 101.0},
        "t/3": {"kind": "skip", "until": None},
        "t/4": {"kind": "keep", "until": 99},
    }
    book.expire_overrides(99.5)
    assert set(book.overrides) == {"t/1", "t/2", "t/3"}
    assert store.saves == 1 and set(store.value["overrides"]) == {"t/1", "t/2", "t/3"}
    book.expire_overrides(100.0)
    assert set(book.overrides) == {"t/2", "t/3"}
    assert store.saves == 2
    book.expire_overrides(100.5)  # nothing expired: no save
    assert store.saves == 2


def test_handled_records() -> None:
    book = state({"handled": {"t/1": 5}})
    assert book.handled("t/1") == 5.0
    assert book.handled("t/2") == 0.0
    book.set_handled("t/2", 7.5)
    assert book.handled("t/2") == 7.5
    assert book.data["handled"] == {"t/1": 5, "t/2": 7.5}


def test_history_keeps_the_newest_entries_with_a_bounded_reason() -> None:
    book = state()
    for i in range(HISTORY_KEPT + 2):
        book.add_history("t/1", "hibernate", "failed", f"r{i}", "policy")
    entries = book.data["history"]["t/1"]
    assert len(entries) == HISTORY_KEPT
    assert entries[0]["reason"] == "r2" and entries[-1]["reason"] == f"r{HISTORY_KEPT + 1}"
    book.add_history("t/2", "awake", "success", "x" * 600, "hook")
    assert book.data["history"]["t/2"] == [
        {"at": 100.0, "action": "awake", "result": "success", "reason": "x" * 500, "source": "hook"}
    ]


def test_an_attempt_is_on_record_and_saved_before_its_call() -> None:
    store = MemoryStateStore()
    book = state(store=store)
    book.begin("t/1", "hibernate", 50.0, 2)
    assert store.value["in_flight"] == {
        "t/1": {"action": "hibernate", "started": 50.0, "attempt": 2}
    }
    assert book.in_flight() == store.value["in_flight"]
    book.end("t/1")
    book.end("t/2")  # ending what is not there is no error
    assert book.in_flight() == {}


class Reloading(MemoryStateStore):
    def __init__(self, value: Any, changed: Any) -> None:
        super().__init__(value)
        self.changed = changed

    def reload(self) -> Any:
        if isinstance(self.changed, Exception):
            raise self.changed
        return self.changed


def test_reload_takes_in_what_another_process_wrote(caplog: pytest.LogCaptureFixture) -> None:
    written = {"overrides": {"t/1": {"kind": "skip", "until": None}}, "handled": {"t/1": "x"}}
    book = state(store=Reloading(None, written))
    assert book.reload() is True
    # What it could not take in is named as the state's.
    dropped = [m for m in caplog.messages if "dropped" in m]
    assert len(dropped) == 1 and dropped[0].startswith("hibernation state: dropped ")
    assert set(book.data["overrides"]) == {"t/1"}
    assert book.data["overrides"]["t/1"]["kind"] == "skip"
    assert (book.data["handled"], book.data["in_flight"], book.data["history"]) == ({}, {}, {})
    assert state(store=Reloading(None, None)).reload() is False
    assert state(store=MemoryStateStore()).reload() is False  # cannot tell: nothing to take in


def test_a_failed_reload_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    book = state(store=Reloading({"handled": {"t/1": 5}}, OSError("gone")))
    assert book.reload() is False
    assert book.data["handled"] == {"t/1": 5}
    assert "reading the state another process wrote failed" in caplog.text
