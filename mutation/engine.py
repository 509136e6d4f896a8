"""mutmut 3, run in this process so that the selection in ``mutation.modules`` steers it.

mutmut reads ``[tool.mutmut]`` in pyproject.toml for what does not depend on the selection
(the log-call pattern, the pytest options, the timeouts). Three things are set here instead:

* which files are mutated (the files that hold a selected function) and which lines (only the
  selected functions' lines, through mutmut's covered-lines filter, so no time goes into
  generating mutants nobody runs);
* which tests mutmut watches once to learn which test runs which function (every row's tests);
* which tests a mutant then runs: of the tests that ran its function, only its row's tests.

The wall time and the CPU time (user + system, this process and its children) of each phase
are kept in ``mutants/timing.json``: the CPU seconds say what a run costs on a machine shared
with other work, where wall times stretch.
"""

from __future__ import annotations

import ast
import filecmp
import json
import os
import resource
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mutation.modules import ROWS, Row, Selection, guards, select, watched_tests

TIMING = Path("mutants/timing.json")


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Clock:
    """Wall and CPU seconds per phase of one run."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        wall, cpu = time.monotonic(), _cpu()
        try:
            yield
        finally:
            spent = self.phases.setdefault(name, {"wall": 0.0, "cpu": 0.0})
            spent["wall"] += time.monotonic() - wall
            spent["cpu"] += _cpu() - cpu

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return function(*args, **kwargs)

        return timed


def module_path(mutant_or_key: str) -> tuple[str, str]:
    """mutmut's name of a mutant or function -> (source path, qualified name)."""
    from mutmut.utils.format_utils import parse_mutant_key

    module, _, mangled = mutant_or_key.partition("__mutmut_")[0].rpartition(".")
    function, cls = parse_mutant_key(mangled)
    path = module.replace(".", "/") + ".py"
    if not Path(path).exists() and Path(module.replace(".", "/"), "__init__.py").exists():
        path = module.replace(".", "/") + "/__init__.py"
    return path, f"{cls}.{function}" if cls else function


def prune(tests_by_function: dict[str, set[str]], selection: Selection) -> None:
    """Keep, for each function, only the tests of the row that claims it."""
    for key, tests in tests_by_function.items():
        row = selection.row_of(*module_path(key + "__mutmut_0"))
        patterns = ROWS[row].tests if row else ()
        tests.intersection_update({t for t in tests if any(guards(p, t) for p in patterns)})


def refresh_copies(mutated: set[str]) -> None:
    """Bring ``mutants/``'s copies of the code that is not mutated up to date (mutmut copies a
    file only when it is missing): a resumed run must test the mutants against today's code."""
    for source in Path("exporter").rglob("*.py"):
        copy = Path("mutants") / source
        if str(source) not in mutated and not (
            copy.exists() and filecmp.cmp(source, copy, shallow=False)
        ):
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy)
    for copy in Path("mutants/exporter").rglob("*.py"):
        if not Path(*copy.parts[1:]).exists():
            copy.unlink()


#: ``mypy --strict``, as ``make test`` runs it, over ``mutants/exporter``: a mutant it refuses
#: cannot land, so it runs no test ("caught by type check"). Two of mypy's checks are left out
#: because mutmut's copies of the code trip them, not the mutation: an ``# type: ignore`` in
#: mutmut's dispatch code, and an attribute annotated in ``__init__`` once per mutant of it.
TYPE_CHECK = [
    sys.executable,
    "-m",
    "mypy",  # mutmut reads mypy's JSON when a word of the command is "mypy"
    "--strict",
    "--no-warn-unused-ignores",
    "--disable-error-code",
    "no-redef",
    "--output",
    "json",
    "exporter",
]


def mutant_spans(path: Path) -> list[tuple[int, int, str]]:
    """``(first line, last line, name)`` of each mutant's function in one of mutmut's files.

    Python's own parser: mutmut's libcst visitor does the same in about twenty times the CPU
    (86 against 4 seconds over every mutated file).
    """
    from mutmut.utils.format_utils import is_mutated_method_name

    return [
        (node.lineno, node.end_lineno or node.lineno, node.name)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and is_mutated_method_name(node.name)
        and not node.name.endswith("__mutmut_orig")
    ]


def caught_by_mypy() -> dict[str, Any]:
    """mutmut's type-check filter, keeping only the errors inside a mutant's own function.

    An error elsewhere (in mutmut's dispatch code or in the code as it is) says nothing about a
    mutant: it is counted and printed, not fatal, and the mutants run their tests as usual.
    """
    from mutmut.mutation.file_mutation import (
        FailedTypeCheckMutant,
        MutatedMethodLocation,
        group_by_path,
    )
    from mutmut.type_checking import run_type_checker
    from mutmut.utils.file_utils import change_cwd
    from mutmut.utils.format_utils import get_mutant_name

    caught: dict[str, Any] = {}
    elsewhere: list[str] = []
    root = Path("mutants").absolute()
    with change_cwd(root):
        errors = run_type_checker(TYPE_CHECK)
    for path, errors_of_file in group_by_path(errors).items():
        spans = mutant_spans(path)
        for error in errors_of_file:
            span = next((s for s in spans if s[0] <= error.line_number <= s[1]), None)
            if span is None:
                where = f"{path.relative_to(root)}:{error.line_number}"
                elsewhere.append(f"{where}: {error.error_description}")
                continue
            name = get_mutant_name(path.relative_to(root), span[2])
            location = MutatedMethodLocation(path, span[2], span[0], span[1])
            caught[name] = FailedTypeCheckMutant(method_location=location, name=name, error=error)
    if elsewhere:
        print(f"warning: {len(elsewhere)} mypy error(s) outside any mutant, e.g. {elsewhere[0]}")
    return caught


#: mutmut's exit status for a mutant it cannot judge ("suspicious"): not counted as killed.
SUSPICIOUS = 35


def unselectable_is_suspicious(run_tests: Callable[..., int]) -> Callable[..., int]:
    """A mutant's tests that pytest cannot select (a node id it finds no test for) judge
    nothing: mutmut would count the error as a kill; here the mutant is *suspicious* (the
    report's *other*). On the clean code the error stops the run, as mutmut has it."""
    from mutmut.runners.harness import BadTestExecutionCommandsException

    def run(*, mutant_name: str | None, tests: Any) -> int:
        try:
            return run_tests(mutant_name=mutant_name, tests=tests)
        except BadTestExecutionCommandsException:
            if mutant_name is None:
                raise
            return SUSPICIOUS

    return run


def run(rows: list[Row], children: int, names: list[str]) -> Clock:
    """``mutmut run`` over the rows (``names``: only these mutants, keeping other verdicts)."""
    import mutmut.__main__ as mm
    from mutmut.configuration import config
    from mutmut.state import state

    selection = select(rows=tuple(rows))
    for message in selection.unmatched:
        print(f"warning: the pattern {message} selects no function: was it moved or renamed?")
    if Path("mutants").exists():
        refresh_copies(set(selection.lines()))
    cfg = config()
    cfg.only_mutate = sorted(selection.lines())
    cfg.pytest_add_cli_args_test_selection = watched_tests(tuple(rows))
    cfg.type_check_command = TYPE_CHECK
    state()._covered_lines = {
        str((Path("mutants") / path).absolute()): lines for path, lines in selection.lines().items()
    }
    clock = Clock()
    load = mm.collect_or_load_stats
    fresh = not Path("mutants/mutmut-stats.json").exists()

    def collect_and_prune(runner: Any, **kwargs: Any) -> None:
        with clock.phase("watch the tests once (which test runs which function)"):
            load(runner, **kwargs)
        prune(state().tests_by_mangled_function_name, selection)

    get_runner = mm.get_mutant_runner  # type: ignore[attr-defined]

    def timed_runner(*args: Any) -> Any:
        runner = get_runner(*args)
        if fresh:
            # The watching pass has just run every one of these tests on the same unmutated
            # code and stops the run if one fails: running them all again proves nothing.
            setattr(runner, "run_clean_tests", lambda tests: 0)  # noqa: B010
        else:
            timed = clock.wrap("the tests on clean code", runner.run_clean_tests)
            setattr(runner, "run_clean_tests", timed)  # noqa: B010
        tests = getattr(runner, "test_runner", None)  # the fork runner's (mutmut's default)
        if tests is not None:
            setattr(tests, "run_tests", unselectable_is_suspicious(tests.run_tests))  # noqa: B010
        return runner

    # mutmut's run looks these up in its module when it calls them.
    patches = {
        "collect_or_load_stats": collect_and_prune,
        "create_mutants": clock.wrap("generate the mutants", mm.create_mutants),
        "filter_mutants_with_type_checker": clock.wrap(
            "type-check the mutants (mypy --strict)", caught_by_mypy
        ),
        "run_forced_fail_test": clock.wrap("the forced-fail check", mm.run_forced_fail_test),
        "get_mutant_runner": timed_runner,
    }
    for name, function in patches.items():
        setattr(mm, name, function)
    os.environ["PYTHONHASHSEED"] = "0"
    # Stopped by SIGINT or SIGTERM (even from a background job, where SIGINT is ignored),
    # mutmut stops its children and the verdicts so far are reported.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with clock.phase("whole run"):
        mm._run(names, children)
    return clock


def save_timing(clock: Clock, mutants_run: int) -> dict[str, Any]:
    whole = clock.phases.get("whole run", {"wall": 0.0, "cpu": 0.0})
    fixed = {k: v for k, v in clock.phases.items() if k != "whole run"}
    mutants = {
        "wall": whole["wall"] - sum(v["wall"] for v in fixed.values()),
        "cpu": whole["cpu"] - sum(v["cpu"] for v in fixed.values()),
    }
    out = {
        "phases": {**fixed, "run the mutants": mutants, "whole run": whole},
        "mutants run": mutants_run,
        "mutants per second (wall)": mutants_run / mutants["wall"] if mutants["wall"] else 0.0,
        "load average at the end": os.getloadavg()[0],
    }
    TIMING.parent.mkdir(exist_ok=True)
    TIMING.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return out
