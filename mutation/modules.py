"""Which code is mutated, by report row, and which tests may kill its mutants.

A row names its code by *where it may live* (file globs) and *what it is called* (function
globs), not by mutmut's numbered mutant names, so that code moved to another module or class
stays selected. A function glob without a dot matches the function's own name (``_send``
matches ``CCEClient._send`` and a module-level ``_send``); with a dot it matches the qualified
name (``Policy.*``). The first row that claims a function keeps it.

``tests`` are the fast, focused test files (globs) or single tests (node ids) that guard the row: a
mutant runs only those of them that ran its function when mutmut watched the suite once.
Tests that start subprocesses, a Prometheus or the simulated month are not among them.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    name: str
    files: tuple[str, ...]
    functions: tuple[str, ...]
    tests: tuple[str, ...]
    exclude: tuple[str, ...] = ()


_SAFETY = "tests/test_safety_rules.py"
_CONTROLLER_TESTS = (
    "tests/test_hibernation_controller.py",
    "tests/test_controller_rules.py",
    "tests/test_hibernation_timer.py",
    "tests/test_hibernation_reload.py",
    "tests/test_planning_rules.py",
    "tests/test_actions_rules.py",
    "tests/test_controller_parts_rules.py",
    _SAFETY,
)

#: The safety-critical code, one report row each. Whole modules where the whole module is a
#: safety rule; elsewhere the functions that decide (the controller's metric snapshot, plan and
#: notifications, the policy's error wording and the client's plumbing are left out).
MODULES: tuple[Row, ...] = (
    Row(
        "signing",
        ("exporter/cce/signing*.py",),
        ("*",),
        ("tests/test_signing.py", "tests/test_signing_rules.py"),
    ),
    Row(
        "auth",
        (
            "exporter/cce/auth*.py",
            "exporter/cce/auth/*.py",
            "exporter/cce/aksk*.py",
            "exporter/cce/agency*.py",
            "exporter/cce/refreshing*.py",
        ),
        ("*",),
        (
            "tests/test_auth.py",
            "tests/test_auth_rules.py",
            "tests/test_agency.py",
            "tests/test_agency_rules.py",
            "tests/test_signing.py",
        ),
    ),
    Row(
        "client-retry",
        (
            "exporter/cce/client*.py",
            "exporter/cce/client/*.py",
            "exporter/cce/transport*.py",
            "exporter/cce/retry*.py",
        ),
        ("_tls_failure", "_backoff", "_send"),
        ("tests/test_client.py", "tests/test_client_tls.py", "tests/test_client_retry_rules.py"),
    ),
    Row(
        "policy",
        ("exporter/hibernation/policy*.py",),
        (
            "_day",
            "_minutes",
            "parse_window",
            "match_policies",
            "ClusterSelector.*",
            "Holidays.*",
            "Policy.*",
            "PolicyFile.*",
            "CronPair.*",
        ),
        ("tests/test_policy_rules.py", "tests/test_hibernation_schedule.py", _SAFETY),
    ),
    Row(
        "schedule",
        ("exporter/hibernation/schedule*.py",),
        ("*",),
        ("tests/test_hibernation_schedule.py", "tests/test_policy_rules.py", _SAFETY),
    ),
    Row(
        "hooks",
        ("exporter/hibernation/hooks*.py",),
        ("*",),
        (
            "tests/test_hibernation_hooks.py",
            "tests/test_hooks_rules.py",
            "tests/test_hooks_limits.py",
            _SAFETY,
        ),
    ),
    # The controller's parts (planning, state and overrides, actions, the cluster view), before
    # the controller's own row so that each keeps its functions.
    Row(
        "planning",
        ("exporter/hibernation/planning*.py",),
        ("due_transition", "skip_applies", "keep_blocks", "effective_desired", "next_due"),
        _CONTROLLER_TESTS,
    ),
    Row(
        "hibernation-state",
        ("exporter/hibernation/state*.py",),
        ("HibernationState.*",),
        _CONTROLLER_TESTS,
    ),
    Row("actions", ("exporter/hibernation/actions*.py",), ("ActionRunner.*",), _CONTROLLER_TESTS),
    Row("cluster-view", ("exporter/hibernation/view*.py",), ("ClusterView.*",), _CONTROLLER_TESTS),
    Row(
        "controller",
        ("exporter/hibernation/*.py",),
        (
            "HibernationController.__init__",
            "reload_state",
            "_finish",
            "find",
            "refresh",
            "tick",
            "_due",
            "_record_skip",
            "_governed",
            "set_override",
            "clear_override",
            "request",
            "_start",
            "_run",
            "_count",
            "_history",
        ),
        _CONTROLLER_TESTS,
        exclude=("exporter/hibernation/cli.py", "exporter/hibernation/notify.py"),
    ),
    Row(
        "statefile-merge",
        ("exporter/collect/statefile*.py",),
        (
            "merge_hibernation",
            "_newer",
            "_later",
            "_merge_map",
            "_merge_history",
            "StateFile.take_in",
            "StateFile._commit",
            "StateFile._on_disk",
        ),
        ("tests/test_statefile_merge.py",),
    ),
    Row(
        "webconfig",
        ("exporter/webconfig*.py", "exporter/webconfig/*.py"),
        ("*",),
        (
            "tests/test_webconfig.py",
            "tests/test_webconfig_rules.py",
            # the basic-auth checks' own pool and queue
            "tests/test_web_limits.py::test_bcrypt_runs_in_its_own_pool",
            "tests/test_web_limits.py::test_a_full_queue_refuses_and_suspects_make_room",
            "tests/test_web_limits.py::test_a_failed_login_flood_does_not_keep_a_real_login_out",
            "tests/test_web_limits.py::test_truncated_or_unknown_hashes_are_refused_at_start_up",
        ),
    ),
    Row(
        "sharding",
        ("exporter/ha/sharding*.py",),
        ("*",),
        ("tests/test_sharding.py", _SAFETY),
    ),
    Row(
        "readiness",
        ("exporter/collect/*.py", "exporter/app.py", "exporter/web.py"),
        ("readiness",),
        (
            "tests/test_readiness_rules.py",
            "tests/test_e2e_exporter.py::test_readyz_follows_the_first_collection_and_staleness",
            "tests/test_e2e_exporter.py::test_readyz_names_a_resource_that_never_succeeded",
        ),
    ),
)

ROWS = {row.name: row for row in MODULES}


@dataclass(frozen=True)
class Function:
    """A function mutmut mutates: a module-level function or a method of a module-level class."""

    path: str
    qualname: str
    first: int
    last: int


def functions_in(path: Path) -> Iterator[Function]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield Function(str(path), node.name, node.lineno, node.end_lineno or node.lineno)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield Function(
                        str(path),
                        f"{node.name}.{item.name}",
                        item.lineno,
                        item.end_lineno or item.lineno,
                    )


def name_matches(pattern: str, qualname: str) -> bool:
    if "." in pattern:
        return fnmatch.fnmatchcase(qualname, pattern)
    return fnmatch.fnmatchcase(qualname.rpartition(".")[2], pattern)


@dataclass
class Selection:
    """The functions each row claims, and the patterns that claimed nothing."""

    by_row: dict[str, list[Function]]
    unmatched: list[str]

    def row_of(self, path: str, qualname: str) -> str | None:
        for row, functions in self.by_row.items():
            if any(f.path == path and f.qualname == qualname for f in functions):
                return row
        return None

    def lines(self) -> dict[str, set[int]]:
        """Source path -> the lines of the selected functions (the only lines mutated)."""
        out: dict[str, set[int]] = {}
        for functions in self.by_row.values():
            for f in functions:
                out.setdefault(f.path, set()).update(range(f.first, f.last + 1))
        return out


def select(root: Path = Path(), rows: tuple[Row, ...] = MODULES) -> Selection:
    claimed: set[tuple[str, str]] = set()
    by_row: dict[str, list[Function]] = {}
    unmatched: list[str] = []
    for row in rows:
        paths = sorted(
            {
                p.relative_to(root)
                for glob in row.files
                for p in root.glob(glob)
                if str(p.relative_to(root)) not in row.exclude
            }
        )
        chosen: list[Function] = []
        used: set[str] = set()
        for path in paths:
            for f in functions_in(root / path):
                f = Function(str(path), f.qualname, f.first, f.last)
                hits = [p for p in row.functions if name_matches(p, f.qualname)]
                used.update(hits)  # found, even if an earlier row keeps the function
                if hits and (f.path, f.qualname) not in claimed:
                    claimed.add((f.path, f.qualname))
                    chosen.append(f)
        by_row[row.name] = chosen
        unmatched += [f"{row.name}: {p!r}" for p in row.functions if p not in used]
    return Selection(by_row, unmatched)


def guards(pattern: str, nodeid: str) -> bool:
    """Whether a row's test entry (a file glob or a test's node id) covers a collected test."""
    if "::" in pattern:
        return nodeid == pattern or nodeid.startswith((pattern + "[", pattern + "::"))
    return fnmatch.fnmatchcase(nodeid.partition("::")[0], pattern)


def watched_tests(rows: tuple[Row, ...] = MODULES) -> list[str]:
    """Every test file (or node-id glob) some row uses: the suite mutmut watches once."""
    return sorted({t for row in rows for t in row.tests})
