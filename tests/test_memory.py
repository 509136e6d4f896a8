"""Process-wide tuning: each knob applied where glibc has it, and switched off by its variable."""

from __future__ import annotations

import contextlib
import gc
import logging
import subprocess
import sys
import threading
import weakref
from typing import Any

import pytest


def _run(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_limit_malloc_arenas_applies_once_unless_the_environment_says() -> None:
    code = "from exporter.memory import limit_malloc_arenas as f; print(f())"
    base = {"PATH": "/usr/bin:/bin"}
    import ctypes
    import ctypes.util

    libc = ctypes.util.find_library("c")
    has_mallopt = (
        sys.platform.startswith("linux")
        and libc is not None
        and hasattr(ctypes.CDLL(libc), "mallopt")
    )
    assert _run(code, base) == str(has_mallopt)


def test_apply_process_tuning_reads_each_switch() -> None:
    from exporter.memory import Tuning, apply_process_tuning, tuning

    try:
        assert apply_process_tuning({}) == Tuning(gc=True, malloc_arenas=True, malloc_trim=True)
        off = {
            "CCE_EXPORTER_TUNING_GC": "off",
            "CCE_EXPORTER_TUNING_MALLOC_ARENAS": "False",
            "CCE_EXPORTER_TUNING_MALLOC_TRIM": " 0 ",
        }
        assert apply_process_tuning(off) == Tuning(gc=False, malloc_arenas=False, malloc_trim=False)
        assert tuning() == Tuning(gc=False, malloc_arenas=False, malloc_trim=False)
        on = {"CCE_EXPORTER_TUNING_GC": "YES", "CCE_EXPORTER_TUNING_MALLOC_TRIM": ""}
        assert apply_process_tuning(on).gc and tuning().malloc_trim
    finally:
        apply_process_tuning({})


def test_a_value_neither_on_nor_off_is_named_and_the_knob_stays_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from exporter.memory import apply_process_tuning

    try:
        with caplog.at_level(logging.WARNING, logger="exporter.memory"):
            applied = apply_process_tuning({"CCE_EXPORTER_TUNING_GC": "sometimes"})
        assert applied.gc
        assert "CCE_EXPORTER_TUNING_GC='sometimes' is neither on nor off" in caplog.text
    finally:
        apply_process_tuning({})


def test_the_arena_switch_and_malloc_arena_max_keep_mallopt_uncalled() -> None:
    code = (
        "import exporter.memory as m; calls = [];"
        " m.limit_malloc_arenas = lambda *a, **k: calls.append(1) or True;"
        " m.apply_process_tuning(); print(len(calls))"
    )
    base = {"PATH": "/usr/bin:/bin"}
    assert _run(code, base) == "1"
    assert _run(code, {**base, "CCE_EXPORTER_TUNING_MALLOC_ARENAS": "off"}) == "0"
    direct = "from exporter.memory import limit_malloc_arenas as f; print(f())"
    assert _run(direct, {**base, "MALLOC_ARENA_MAX": "4"}) == "False"


def test_gc_pause_is_reentrant_across_threads_and_off_with_its_switch() -> None:
    from exporter.memory import apply_process_tuning, gc_paused

    assert gc.isenabled()
    started, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            started.set()
            release.wait(30)

    try:
        worker = threading.Thread(target=other)
        with gc_paused():
            worker.start()
            assert started.wait(30)
            assert not gc.isenabled()
        assert not gc.isenabled()  # the other thread still holds its pause
        release.set()
        worker.join(30)
        assert gc.isenabled()
        apply_process_tuning({"CCE_EXPORTER_TUNING_GC": "off"})
        with gc_paused():
            assert gc.isenabled()
    finally:
        release.set()
        apply_process_tuning({})
        gc.enable()


def test_malloc_trim_and_heap_freeze_follow_their_switches() -> None:
    from exporter.memory import HeapFreezer, apply_process_tuning, trim_malloc

    try:
        apply_process_tuning({"CCE_EXPORTER_TUNING_MALLOC_TRIM": "off"})
        assert trim_malloc() is False
        apply_process_tuning({"CCE_EXPORTER_TUNING_GC": "off"})
        gc.unfreeze()
        HeapFreezer().settle()
        assert gc.get_freeze_count() == 0
    finally:
        apply_process_tuning({})
        gc.unfreeze()


def test_trim_malloc_runs_where_glibc_has_it() -> None:
    import ctypes
    import ctypes.util

    from exporter.memory import trim_malloc

    libc = ctypes.util.find_library("c")
    has_trim = (
        sys.platform.startswith("linux")
        and libc is not None
        and hasattr(ctypes.CDLL(libc), "malloc_trim")
    )
    assert trim_malloc() is has_trim


def test_heap_freezer_keeps_full_collections_off_the_frozen_heap_until_a_thaw() -> None:
    from exporter.memory import HeapFreezer

    now = [0.0]
    freezer = HeapFreezer(thaw_every=10.0, clock=lambda: now[0])

    class Node:
        other: object = None

    try:
        a, b = Node(), Node()
        a.other, b.other = b, a  # a reference cycle: only the cyclic collector frees it
        ref = weakref.ref(a)
        freezer.settle()
        assert gc.get_freeze_count() > 0
        del a, b
        gc.collect()
        assert ref() is not None  # frozen: a full collection does not look at it
        now[0] = 5.0
        freezer.settle()
        assert ref() is not None and freezer.thaws == 0
        now[0] = 10.0
        freezer.settle()  # the thaw is due: everything is collected once, then frozen again
        assert ref() is None and freezer.thaws == 1
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


async def test_a_collection_cycle_leaves_no_reference_cycles() -> None:
    """Garbage freed only by the cyclic collector costs full GC passes, and the daemon freezes its
    heap between them (HeapFreezer): a cycle's objects must all go by reference counting."""
    from bench.procs import SimProcess
    from bench.run import exporter_env
    from exporter.assemble import TargetBuilder
    from exporter.collect.service import ExporterService
    from exporter.config import load_settings

    with SimProcess(10, 20, latency_ms=0) as sim:
        service = ExporterService(
            load_settings(None, exporter_env(sim, 8, "all")), build_targets=TargetBuilder()
        )
        await service.setup()
        try:
            for _ in range(2):  # warm up: first-time caches and imports
                assert all((await service.collect_all()).values())
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                assert all((await service.collect_all()).values())
                gc.collect()
                kinds = sorted({type(o).__name__ for o in gc.garbage})
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()
        finally:
            await service.close()
    assert kinds == []


def test_the_configuration_leaves_the_tuning_switches_to_the_tuning() -> None:
    from exporter.config import load_settings

    env = {
        "CCE_EXPORTER_ENDPOINT": "https://cce.example.com",
        "CCE_EXPORTER_PROJECT_ID": "p",
        "CCE_EXPORTER_AUTH_METHOD": "token",
        "CCE_EXPORTER_TOKEN": "t",
        "CCE_EXPORTER_TUNING_GC": "off",
        "CCE_EXPORTER_TUNING_MALLOC_ARENAS": "off",
        "CCE_EXPORTER_TUNING_MALLOC_TRIM": "off",
        "CCE_EXPORTER_TUNING_GCC": "off",
    }
    notices = load_settings(None, env).notices
    # Only the misspelt one is named (the notice may suggest a close setting).
    assert len(notices) == 1
    assert notices[0].startswith("ignoring unknown variable CCE_EXPORTER_TUNING_GCC")


def test_rendering_shares_the_gc_pause_instead_of_ending_another_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The renderer used to disable and re-enable the collector on its own: a parse (another
    thread) that paused it first and finished mid-render switched it back on during the render."""
    from exporter.memory import gc_paused
    from exporter.metrics import TargetData
    from exporter.metrics import render as render_module

    target = TargetData(
        project_id="p",
        labels={},
        clusters=[],
        nodes={},
        nodepools={},
        addons={},
        jobs=[],
        quotas=[],
        phase_since={},
        health=[],
    )
    parse = contextlib.ExitStack()
    parse.enter_context(gc_paused())  # a parse pauses the collector first...
    during: list[bool] = []
    rows = render_module._rows

    def rows_while_the_parse_ends(*args: Any) -> Any:
        parse.close()  # ...and ends while the render runs
        during.append(gc.isenabled())
        return rows(*args)

    monkeypatch.setattr(render_module, "_rows", rows_while_the_parse_ends)
    try:
        render_module.render_group("nodes", [target], now=0.0)
    finally:
        parse.close()
    assert during and not any(during)  # still paused: the render holds its own pause
    assert gc.isenabled()
