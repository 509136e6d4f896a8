"""Mutation testing of the safety-critical modules (``make mutate``).

``python -m mutation run``     mutmut over the functions below (``mutants/`` is rebuilt), then
                               the report
``python -m mutation survivors`` the last run's survivors again (after new tests), other
                               verdicts kept, then the report
``python -m mutation report``  the report of the last run: a Markdown table per module, then
                               every survivor (its diff, or the reason it is equivalent)

Which files are mutated and which tests guard them is ``[tool.mutmut]`` in pyproject.toml;
mutmut runs, for each mutant, only the tests that cover the function it changed. ``MODULES``
names, per module of the report, the mutants that are run (globs on mutmut's mutant names).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from mutation.equivalent import EQUIVALENT

#: Report row -> (source file, mutant-name globs). Whole modules where the whole module is a
#: safety rule; elsewhere the functions that decide (the controller's metric snapshot, plan and
#: notifications, the policy's error wording and the client's plumbing are left out). The
#: controller's rules live in its parts: planning, state, actions and the cluster view.
C = "exporter.hibernation.controller.xǁHibernationControllerǁ"
P = "exporter.hibernation.policy."
MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "signing": ("exporter/cce/signing.py", ("exporter.cce.signing.*",)),
    "auth": ("exporter/cce/auth.py", ("exporter.cce.auth.*",)),
    "auth-aksk": ("exporter/cce/aksk.py", ("exporter.cce.aksk.*",)),
    "auth-agency": ("exporter/cce/agency.py", ("exporter.cce.agency.*",)),
    "auth-refreshing": ("exporter/cce/refreshing.py", ("exporter.cce.refreshing.*",)),
    "client-retry": (
        "exporter/cce/transport.py",
        (
            "exporter.cce.transport.x__tls_failure__mutmut_*",
            "exporter.cce.transport.xǁCCETransportǁ_backoff__mutmut_*",
            "exporter.cce.transport.xǁCCETransportǁ_send__mutmut_*",
        ),
    ),
    "policy": (
        "exporter/hibernation/policy.py",
        (
            P + "x__day__mutmut_*",
            P + "x__minutes__mutmut_*",
            P + "x_parse_window__mutmut_*",
            P + "x_match_policies__mutmut_*",
            P + "xǁClusterSelectorǁ*",
            P + "xǁHolidaysǁ*",
            P + "xǁPolicyǁ*",
            P + "xǁPolicyFileǁ*",
            P + "xǁCronPairǁ*",
        ),
    ),
    "schedule": (
        "exporter/hibernation/schedule.py",
        ("exporter.hibernation.schedule.*",),
    ),
    "controller": (
        "exporter/hibernation/controller.py",
        tuple(
            f"{C}{name}__mutmut_*"
            for name in (
                "__init__",
                "reload_state",
                "refresh",
                "tick",
                "_due",
                "_record_skip",
                "set_override",
                "clear_override",
                "request",
                "_start",
                "_run",
                "_finish",
            )
        ),
    ),
    "planning": (
        "exporter/hibernation/planning.py",
        tuple(
            f"exporter.hibernation.planning.x_{name}__mutmut_*"
            for name in (
                "due_transition",
                "skip_applies",
                "keep_blocks",
                "effective_desired",
                "next_due",
            )
        ),
    ),
    "hibernation-state": (
        "exporter/hibernation/state.py",
        ("exporter.hibernation.state.xǁHibernationStateǁ*",),
    ),
    "actions": (
        "exporter/hibernation/actions.py",
        ("exporter.hibernation.actions.xǁActionRunnerǁ*",),
    ),
    "cluster-view": (
        "exporter/hibernation/view.py",
        ("exporter.hibernation.view.xǁClusterViewǁ*",),
    ),
    "statefile-merge": (
        "exporter/collect/statefile.py",
        tuple(
            f"exporter.collect.statefile.{name}__mutmut_*"
            for name in (
                "x_merge_hibernation",
                "x__newer",
                "x__later",
                "x__merge_map",
                "x__merge_history",
                "xǁStateFileǁtake_in",
                "xǁStateFileǁ_commit",
                "xǁStateFileǁ_on_disk",
            )
        ),
    ),
    "hooks": ("exporter/hibernation/hooks.py", ("exporter.hibernation.hooks.*",)),
    "webconfig": ("exporter/webconfig.py", ("exporter.webconfig.*",)),
    "sharding": ("exporter/ha/sharding.py", ("exporter.ha.sharding.*",)),
    "readiness": (
        "exporter/collect/service.py",
        ("exporter.collect.service.xǁExporterServiceǁreadiness__mutmut_*",),
    ),
}

#: mutmut's exit codes (mutmut/stats.py); anything else is "suspicious".
STATUS = {
    0: "survived",
    1: "killed",
    3: "killed",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    None: "not checked",
}


def _mutmut() -> list[str]:
    return [str(Path(sys.executable).with_name("mutmut"))]


def results(root: Path = Path()) -> dict[str, dict[str, str]]:
    """Report row -> {mutant name -> status} from the last run's ``mutants/*.meta``."""
    out: dict[str, dict[str, str]] = {}
    for row, (path, globs) in MODULES.items():
        meta = root / "mutants" / (path + ".meta")
        codes: dict[str, int | None] = {}
        if meta.exists():
            codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        out[row] = {
            name: STATUS.get(code, "suspicious")
            for name, code in sorted(codes.items())
            if any(fnmatch.fnmatchcase(name, g) for g in globs)
        }
    return out


def diff(name: str) -> str:
    shown = subprocess.run(
        [*_mutmut(), "show", name], capture_output=True, text=True, check=False
    ).stdout
    lines = [
        line
        for line in shown.splitlines()
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    return " / ".join(line.strip() for line in lines) or shown.strip()


def report(found: dict[str, dict[str, str]], *, diffs: bool = True) -> str:
    head = [
        "| module | mutants | killed | timeout | survived | equivalent | no tests | not run "
        "| kill rate |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    total: Counter[str] = Counter()
    rows = []
    survivors: list[tuple[str, str]] = []
    for row, statuses in found.items():
        count: Counter[str] = Counter()
        for name, status in statuses.items():
            if status == "survived" and name in EQUIVALENT:
                status = "equivalent"
            elif status == "survived":
                survivors.append((row, name))
            count[status] += 1
        count["mutants"] = len(statuses)
        total.update(count)
        rows.append(_row(row, count))
    rows.append(_row("**all**", total))
    text = "\n".join(head + rows) + "\n"
    text += (
        "\nKill rate: (killed + timeout) / (mutants - equivalent - not run); a mutant no "
        "selected test covers (no tests) counts as not killed.\n"
    )
    if survivors:
        text += "\nSurvivors:\n\n"
        for row, name in survivors:
            text += f"- {row}: `{name}`" + (f": `{diff(name)}`" if diffs else "") + "\n"
    equivalent = [(row, n) for row, st in found.items() for n in st if n in EQUIVALENT]
    if equivalent:
        text += "\nEquivalent mutants (they survive; the reason each cannot be told apart):\n\n"
        for row, name in equivalent:
            shown = f" (`{diff(name)}`)" if diffs else ""
            text += f"- {row}: `{name}`{shown}: {EQUIVALENT[name]}\n"
    return text


def _row(name: str, count: Counter[str]) -> str:
    judged = count["mutants"] - count["equivalent"] - count["not checked"]
    rate = f"{(count['killed'] + count['timeout']) / judged * 100:.1f}%" if judged else "-"
    return (
        f"| {name} | {count['mutants']} | {count['killed']} | {count['timeout']} | "
        f"{count['survived']} | {count['equivalent']} | {count['no tests']} | "
        f"{count['not checked']} | {rate} |"
    )


def run(children: int, modules: list[str]) -> int:
    globs = [g for row, (_, gs) in MODULES.items() if not modules or row in modules for g in gs]
    # A fresh mutants/ each time: a result cached from other code or tests would be a lie.
    subprocess.run(["rm", "-rf", "mutants"], check=True)
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(
        [*_mutmut(), "run", "--max-children", str(children), *globs], env=env, check=False
    )
    return done.returncode


def rerun_survivors(children: int, modules: list[str]) -> int:
    """Run the last run's survivors again (after new tests) and keep every other verdict.

    mutmut forgets all verdicts when its test selection changed, so they are kept here and the
    new verdicts of the survivors laid over them.
    """
    found = results()
    names = [
        name
        for row, statuses in found.items()
        if not modules or row in modules
        for name, status in statuses.items()
        if status == "survived" and name not in EQUIVALENT
    ]
    if not names:
        print("no survivors to run again")
        return 0
    saved = {
        path: json.loads(meta.read_text(encoding="utf-8"))
        for path, meta in ((p, Path("mutants") / (p + ".meta")) for p, _ in MODULES.values())
        if meta.exists()
    }
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(
        [*_mutmut(), "run", "--max-children", str(children), *names], env=env, check=False
    )
    for path, old in saved.items():
        meta = Path("mutants") / (path + ".meta")
        new = json.loads(meta.read_text(encoding="utf-8")) if meta.exists() else old
        codes = old["exit_code_by_key"]
        for name, code in new["exit_code_by_key"].items():
            if code is not None and name in codes:
                codes[name] = code
        new["exit_code_by_key"] = codes
        meta.write_text(json.dumps(new, indent=4), encoding="utf-8")
    return done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutation", description=__doc__)
    parser.add_argument("command", choices=["run", "survivors", "report"])
    parser.add_argument(
        "modules", nargs="*", metavar="MODULE", help=f"report rows to run: {', '.join(MODULES)}"
    )
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-diffs", action="store_true", help="survivors without their diff")
    args = parser.parse_intermixed_args(argv)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}")
    if args.command == "run":
        code = run(args.max_children, args.modules)
        if code:
            return code
    if args.command == "survivors":
        code = rerun_survivors(args.max_children, args.modules)
        if code:
            return code
    found = results()
    if args.modules:
        found = {row: v for row, v in found.items() if row in args.modules}
    text = report(found, diffs=not args.no_diffs)
    Path("mutants").mkdir(exist_ok=True)
    Path("mutants/report.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
