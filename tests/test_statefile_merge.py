"""Two writers of one state file: the daemon and ``hibernate|awake --until`` of the command line.

The rule (``merge_hibernation``): an override the file changed since this process last read or
wrote it wins over this process's unchanged entry; where both changed one cluster's override, the
one created later wins (an override wins over a removal); ``handled`` instants likewise (the
later one where both changed); history entries the file added are kept; ``in_flight`` stays
the writer's own.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from exporter.collect import statefile
from exporter.collect.statefile import HISTORY_KEPT, StateFile, clean_hibernation, merge_hibernation


def override(state: str, until: float, created: float) -> dict[str, Any]:
    return {"kind": "keep", "state": state, "until": until, "reason": "", "created": created}


def section(overrides: dict[str, Any] | None = None, **rest: Any) -> dict[str, Any]:
    return clean_hibernation({"overrides": overrides or {}, **rest})


def on_disk(path: Path) -> dict[str, Any]:
    sections: dict[str, Any] = json.loads(path.read_text())["sections"]
    return sections


A = override("hibernated", 2e9, 100.0)
B = override("awake", 2e9, 200.0)


def the_daemon_saved(daemon: StateFile, overrides: dict[str, Any]) -> dict[str, Any]:
    """The daemon's memory after it loaded the file and saved ``overrides``."""
    memory = daemon.load()
    memory["hibernation"] = section(overrides)
    daemon.save(memory)
    return memory


def the_command_sets(cli: StateFile, k: str, override: dict[str, Any]) -> None:
    """A command (``hibernate --until``) reads the file and writes one override."""
    mine = cli.load()["hibernation"]
    mine["overrides"][k] = override
    cli.save_section("hibernation", mine)


def test_an_override_only_the_file_changed_is_taken_from_the_file() -> None:
    base = section({"t/a": A})
    ours = section({"t/a": A, "t/mine": B})  # this process added one of its own
    theirs = section({"t/a": A, "t/new": B})  # the other added another
    merged = merge_hibernation(ours, base, theirs)
    assert merged["overrides"] == {"t/a": A, "t/mine": B, "t/new": B}


def test_a_removal_in_the_file_removes_the_unchanged_entry() -> None:
    base = section({"t/a": A})
    merged = merge_hibernation(section({"t/a": A}), base, section({}))
    assert merged["overrides"] == {}


def test_where_both_changed_one_cluster_the_later_override_wins() -> None:
    base = section({})
    older, newer = override("awake", 2e9, 100.0), override("hibernated", 2e9, 300.0)
    assert merge_hibernation(section({"t/a": older}), base, section({"t/a": newer}))[
        "overrides"
    ] == {"t/a": newer}
    assert merge_hibernation(section({"t/a": newer}), base, section({"t/a": older}))[
        "overrides"
    ] == {"t/a": newer}
    # An override wins over a removal on the other side.
    base = section({"t/a": older})
    assert merge_hibernation(section({}), base, section({"t/a": newer}))["overrides"] == {
        "t/a": newer
    }
    assert merge_hibernation(section({"t/a": newer}), base, section({}))["overrides"] == {
        "t/a": newer
    }


def test_nothing_changed_in_the_file_returns_ours_itself() -> None:
    ours = section({"t/mine": B}, handled={"t/mine": 5.0})
    base = section({})
    assert merge_hibernation(ours, base, section({})) is ours
    assert merge_hibernation(None, None, None) is None


def test_a_file_gone_or_corrupt_removes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    daemon = StateFile(path)
    memory = daemon.load()
    memory["hibernation"] = section({"t/a": A})
    daemon.save(memory)
    path.unlink()
    assert not daemon.take_in(memory)
    path.write_text("{not json")
    assert not daemon.take_in(memory)
    assert memory["hibernation"]["overrides"] == {"t/a": A}
    daemon.save(memory)
    assert on_disk(path)["hibernation"]["overrides"] == {"t/a": A}
    assert list(tmp_path.glob("state.json.corrupt-*"))  # kept aside, as at start-up


def test_history_the_file_added_is_kept() -> None:
    entry = {"at": 10.0, "action": "hibernate", "result": "success", "reason": "", "source": "cli"}
    mine = {"at": 5.0, "action": "awake", "result": "success", "reason": "", "source": "hook"}
    merged = merge_hibernation(
        section(history={"t/a": [mine]}), section(), section(history={"t/a": [entry]})
    )
    assert merged["history"]["t/a"] == [mine, entry]
    many = [{**entry, "at": float(i)} for i in range(HISTORY_KEPT + 5)]
    merged = merge_hibernation(section(), section(), section(history={"t/a": many}))
    assert merged["history"]["t/a"] == many[-HISTORY_KEPT:]


def test_handled_is_merged_and_in_flight_stays_ours() -> None:
    flight = {"action": "hibernate", "started": 7.0, "attempt": 1}
    base = section(handled={"t/a": 1.0, "t/b": 1.0})
    ours = section(handled={"t/a": 1.0, "t/b": 50.0}, in_flight={"t/a": flight})
    theirs = section(handled={"t/a": 30.0, "t/b": 40.0, "t/c": 5.0}, in_flight={"t/z": flight})
    merged = merge_hibernation(ours, base, theirs)
    # Changed only in the file: the file's; changed on both sides: the later instant.
    assert merged["handled"] == {"t/a": 30.0, "t/b": 50.0, "t/c": 5.0}
    assert merged["in_flight"] == {"t/a": flight}


def test_a_save_keeps_the_other_writers_override_until_taken_in(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    daemon, cli = StateFile(path), StateFile(path)
    memory = the_daemon_saved(daemon, {"t/a": A})
    assert not daemon.take_in(memory)  # its own write is no change

    the_command_sets(cli, "t/cli", B)

    # The daemon saves twice with its old memory (no "t/cli"): the file keeps the entry.
    memory["phases"] = {"default": {}}
    daemon.save(memory)
    daemon.save(memory)
    assert on_disk(path)["hibernation"]["overrides"] == {"t/a": A, "t/cli": B}
    assert "t/cli" not in memory["hibernation"]["overrides"]
    # Taken in: now in memory, and a removal by the daemon is a removal again.
    assert daemon.take_in(memory)
    assert memory["hibernation"]["overrides"] == {"t/a": A, "t/cli": B}
    assert not daemon.take_in(memory)
    del memory["hibernation"]["overrides"]["t/cli"]
    daemon.save(memory)
    assert on_disk(path)["hibernation"]["overrides"] == {"t/a": A}
    assert on_disk(path)["phases"] == {"default": {}}


def test_the_command_keeps_the_daemons_sections_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    daemon, cli = StateFile(path), StateFile(path)
    cli_memory = cli.load().get("hibernation") or section()
    memory = daemon.load()
    memory.update(phases={"default": {}}, hibernation=section({"t/a": A}))
    daemon.save(memory)  # after the command read the file
    cli_memory["overrides"]["t/cli"] = B
    cli.save_section("hibernation", cli_memory)
    sections = on_disk(path)
    assert sections["hibernation"]["overrides"] == {"t/a": A, "t/cli": B}
    assert sections["phases"] == {"default": {}}


@pytest.mark.parametrize("writers", [4])
def test_concurrent_writers_lose_no_entry(tmp_path: Path, writers: int) -> None:
    path = tmp_path / "state.json"
    per_writer = 15
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(w: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(per_writer):
                file = StateFile(path)  # a fresh process's view each time, as the command has
                memory = file.load().get("hibernation") or section()
                memory["overrides"][f"w{w}/c{i}"] = override("awake", 2e9, float(i))
                file.save_section("hibernation", memory)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    overrides = on_disk(path)["hibernation"]["overrides"]
    assert set(overrides) == {f"w{w}/c{i}" for w in range(writers) for i in range(per_writer)}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_taking_in_reads_the_file_only_after_another_process_wrote_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    daemon, cli = StateFile(path), StateFile(path)
    memory = the_daemon_saved(daemon, {"t/a": A})
    reads: list[Path] = []
    read = StateFile._read

    def counted(self: StateFile) -> dict[str, Any]:
        reads.append(self.path)
        return read(self)

    monkeypatch.setattr(StateFile, "_read", counted)
    for _ in range(3):
        assert not daemon.take_in(memory)
    assert reads == []
    the_command_sets(cli, "t/cli", B)
    reads.clear()
    assert daemon.take_in(memory)
    assert not daemon.take_in(memory)
    assert reads == [path]


def test_a_failed_write_loses_none_of_this_processs_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    daemon = StateFile(path)
    memory = daemon.load()
    memory["hibernation"] = section({"t/a": A}, handled={"t/a": 1.0})
    daemon.save(memory)
    memory["hibernation"]["handled"]["t/a"] = 2.0
    memory["hibernation"]["overrides"]["t/b"] = B
    replace = os.replace
    with monkeypatch.context() as patched:

        def full(src: str, dst: Path) -> None:
            raise OSError(28, "No space left on device")

        patched.setattr(os, "replace", full)
        with pytest.raises(OSError):
            daemon.save(memory)
    assert os.replace is replace
    assert not daemon.take_in(memory)
    daemon.save(memory)  # the disk has room again
    saved = on_disk(path)["hibernation"]
    assert saved["handled"] == {"t/a": 2.0}
    assert saved["overrides"] == {"t/a": A, "t/b": B}


def test_a_handled_instant_removed_on_one_side_and_changed_on_the_other() -> None:
    base = section(handled={"t/a": 1.0, "t/b": 1.0, "t/c": 1.0, "t/d": 1.0})
    # t/a: changed here, removed in the file; t/b: removed here, changed in the file;
    # t/c and t/d: changed on both sides, the later instant in the file, then here.
    ours = section(handled={"t/a": 20.0, "t/c": 5.0, "t/d": 60.0})
    theirs = section(handled={"t/b": 30.0, "t/c": 40.0, "t/d": 50.0})
    merged = merge_hibernation(ours, base, theirs)
    assert merged["handled"] == {"t/a": 20.0, "t/b": 30.0, "t/c": 40.0, "t/d": 60.0}


def test_of_two_overrides_created_at_once_the_files_wins() -> None:
    mine, theirs = override("awake", 2e9, 100.0), override("hibernated", 3e9, 100.0)
    merged = merge_hibernation(section({"t/a": mine}), section({}), section({"t/a": theirs}))
    assert merged["overrides"] == {"t/a": theirs}


def test_an_override_without_a_creation_time_counts_as_the_oldest() -> None:
    # As the file's own validation reads it (``created`` 0.0 when absent).
    undated = {"kind": "keep", "state": "awake", "until": 2e9, "reason": ""}
    dated = override("hibernated", 2e9, 0.5)
    base: dict[str, Any] = {"overrides": {}}
    ours, theirs = {"overrides": {"t/a": undated}}, {"overrides": {"t/a": dated}}
    assert merge_hibernation(ours, base, theirs)["overrides"] == {"t/a": dated}
    ours, theirs = {"overrides": {"t/a": dated}}, {"overrides": {"t/a": undated}}
    assert merge_hibernation(ours, base, theirs) is ours
    # Both undated: created at once, the file's wins.
    other = {**undated, "state": "hibernated"}
    ours, theirs = {"overrides": {"t/a": undated}}, {"overrides": {"t/a": other}}
    assert merge_hibernation(ours, base, theirs)["overrides"] == {"t/a": other}


def test_taking_in_does_not_bring_back_what_this_process_removed(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    daemon, cli = StateFile(path), StateFile(path)
    memory = the_daemon_saved(daemon, {"t/a": A})
    del memory["hibernation"]["overrides"]["t/a"]  # removed here, not saved yet
    the_command_sets(cli, "t/cli", B)
    assert daemon.take_in(memory)
    assert memory["hibernation"]["overrides"] == {"t/cli": B}


def test_what_this_process_had_not_saved_survives_taking_in_and_the_next_save(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.json"
    daemon, cli = StateFile(path), StateFile(path)
    memory = daemon.load()
    memory["hibernation"] = section({"t/a": A}, handled={"t/a": 1.0})
    daemon.save(memory)
    # Changed here and not saved yet (a transition handled, an override whose save failed).
    memory["hibernation"]["handled"]["t/a"] = 2.0
    memory["hibernation"]["overrides"]["t/mine"] = B
    the_command_sets(cli, "t/cli", B)
    assert daemon.take_in(memory)
    assert not daemon.take_in(memory)
    daemon.save(memory)
    assert not daemon.take_in(memory)
    expected = {"t/a": A, "t/mine": B, "t/cli": B}
    assert memory["hibernation"]["overrides"] == expected
    assert memory["hibernation"]["handled"] == {"t/a": 2.0}
    saved = on_disk(path)["hibernation"]
    assert saved["overrides"] == expected
    assert saved["handled"] == {"t/a": 2.0}


def test_once_taken_in_the_file_is_not_merged_again_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    daemon, cli = StateFile(path), StateFile(path)
    memory = the_daemon_saved(daemon, {"t/a": A})
    the_command_sets(cli, "t/cli", B)
    merges: list[Any] = []
    merge = statefile.merge_hibernation

    def counted(ours: Any, base: Any, theirs: Any) -> Any:
        merges.append(theirs)
        return merge(ours, base, theirs)

    monkeypatch.setattr(statefile, "merge_hibernation", counted)
    assert daemon.take_in(memory)
    assert len(merges) == 1
    for _ in range(3):
        assert not daemon.take_in(memory)
    assert len(merges) == 1


def _entry(at: float | None, action: str = "hibernate") -> dict[str, Any]:
    entry: dict[str, Any] = {"action": action, "result": "success", "reason": "", "source": "cli"}
    return entry if at is None else {"at": at, **entry}


def test_history_both_sides_have_is_kept_once_and_in_time_order() -> None:
    shared, older, newer = _entry(5.0), _entry(1.0, "awake"), _entry(9.0)
    merged = merge_hibernation(
        section(history={"t/a": [shared, newer]}),
        section(),
        section(history={"t/a": [older, shared]}),
    )
    assert merged["history"]["t/a"] == [older, shared, newer]


def test_history_this_process_dropped_is_not_brought_back() -> None:
    dropped, kept = _entry(1.0), _entry(2.0)
    ours = section(history={"t/a": [kept]})
    both = section(history={"t/a": [dropped, kept]})
    assert merge_hibernation(ours, both, both) is ours


def test_history_entries_without_a_time_count_as_the_oldest() -> None:
    undated, dated = _entry(None), _entry(0.5)
    merged = merge_hibernation(
        {"history": {"t/a": [dated]}}, {"history": {}}, {"history": {"t/a": [undated]}}
    )
    assert merged["history"]["t/a"] == [undated, dated]


def test_a_history_that_is_not_a_list_is_passed_over_not_the_rest() -> None:
    entry = _entry(3.0)
    theirs = {"history": {"t/bad": "not a list", "t/a": [entry]}}
    merged = merge_hibernation({"history": {}}, {"history": {}}, theirs)
    assert merged["history"] == {"t/a": [entry]}


def test_an_override_both_sides_removed_stays_removed() -> None:
    base = section({"t/a": A, "t/b": B})
    merged = merge_hibernation(section({"t/b": B}), base, section({"t/b": B}))
    assert merged == section({"t/b": B})


def test_a_first_hibernation_section_is_the_files() -> None:
    assert merge_hibernation(None, None, section({"t/a": A})) == {"overrides": {"t/a": A}}


def test_a_removal_after_a_save_is_saved(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    daemon = StateFile(path)
    memory = daemon.load()
    memory["hibernation"] = section({"t/a": A, "t/b": B})
    daemon.save(memory)
    del memory["hibernation"]["overrides"]["t/a"]
    daemon.save(memory)
    assert on_disk(path)["hibernation"]["overrides"] == {"t/b": B}
    assert not daemon.take_in(memory)
    assert memory["hibernation"]["overrides"] == {"t/b": B}


def test_a_change_read_by_a_save_that_failed_is_still_taken_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    daemon, cli = StateFile(path), StateFile(path)
    memory = the_daemon_saved(daemon, {"t/a": A})
    the_command_sets(cli, "t/cli", B)
    with monkeypatch.context() as patched:

        def full(src: str, dst: Path) -> None:
            raise OSError(28, "No space left on device")

        patched.setattr(os, "replace", full)
        with pytest.raises(OSError):
            daemon.save(memory)  # read the command's change, then could not write
    assert daemon.take_in(memory)
    assert memory["hibernation"]["overrides"] == {"t/a": A, "t/cli": B}
