"""Mutation testing of the safety-critical modules (``make mutate``).

``python -m mutation run``       mutmut over the rows of ``mutation.modules`` (``mutants/`` is
                                 rebuilt), then the report
``python -m mutation survivors`` the last run's survivors again (after new tests), other
                                 verdicts kept, then the report
``python -m mutation report``    the report of the last run: a Markdown table per row, then
                                 every survivor with its diff, every equivalent mutant with its
                                 reason, and every equivalent entry that matched nothing

``mutation.modules`` says which functions are mutated and which tests guard them;
``mutation.equivalent`` lists the mutants no test can tell from the code, by their content.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

from mutation import engine
from mutation.equivalent import EQUIVALENT, Equivalent, changed_lines, match
from mutation.modules import MODULES, ROWS, Row, select

COLUMNS = (
    "killed",
    "timeout",
    "caught by type check",
    "survived",
    "equivalent",
    "no tests",
    "not checked",
    "other",
)
#: What the table calls mutmut's statuses.
HEADINGS = {"caught by type check": "mypy", "not checked": "not run"}
KILLED = ("killed", "timeout", "caught by type check")


def results(rows: list[Row]) -> dict[str, dict[str, str]]:
    """Report row -> {mutant name -> status} from the last run's ``mutants/*.meta``."""
    from mutmut.stats import status_by_exit_code

    selection = select(rows=tuple(rows))
    out: dict[str, dict[str, str]] = {row.name: {} for row in rows}
    for path in sorted(selection.lines()):
        meta = Path("mutants") / (path + ".meta")
        if not meta.exists():
            continue
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        for name, code in sorted(codes.items()):
            row = selection.row_of(*engine.module_path(name))
            if row is not None:
                out[row][name] = status_by_exit_code[code]
    return out


def diff(name: str) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    return get_diff_for_mutant(name, path=engine.module_path(name)[0])


def judge(found: dict[str, dict[str, str]]) -> dict[str, list[tuple[str, Equivalent | None]]]:
    """Each survivor, by row, with the equivalent entry that matches it (or None)."""
    judged: dict[str, list[tuple[str, Equivalent | None]]] = {}
    for row, statuses in found.items():
        for name, status in statuses.items():
            if status == "survived":
                function = engine.module_path(name)[1]
                entry = match(function, *changed_lines(diff(name)))
                judged.setdefault(row, []).append((name, entry))
    return judged


def report(found: dict[str, dict[str, str]], *, complete: bool) -> str:
    judged = judge(found)
    head = [
        "| module | mutants | "
        + " | ".join(HEADINGS.get(c, c) for c in COLUMNS)
        + " | kill rate |",
        "| --- | ---: |" + " ---: |" * len(COLUMNS) + " ---: |",
    ]
    total: Counter[str] = Counter()
    rows = []
    for row, statuses in found.items():
        count: Counter[str] = Counter()
        for status in statuses.values():
            count[status if status in COLUMNS else "other"] += 1
        equivalent = sum(1 for _, entry in judged.get(row, []) if entry)
        count["survived"] -= equivalent
        count["equivalent"] += equivalent
        count["mutants"] = len(statuses)
        total.update(count)
        rows.append(_row(row, count))
    rows.append(_row("**all**", total))
    text = "\n".join(head + rows) + "\n"
    text += (
        "\nKill rate: (killed + timeout + mypy) / (mutants - equivalent - not run); mypy: "
        "refused by `mypy --strict` (no test run); a mutant no selected test covers (no "
        "tests) counts as not killed.\n"
    )
    survivors = [(r, n) for r, names in judged.items() for n, e in names if e is None]
    if survivors:
        text += "\nSurvivors:\n\n"
        text += "".join(f"- {row}: `{name}`:\n\n{_block(diff(name))}\n" for row, name in survivors)
    used = {id(e): (r, n, e) for r, names in judged.items() for n, e in names if e}
    if used:
        text += "\nEquivalent mutants (they survive; the reason each cannot be told apart):\n\n"
        text += "".join(f"- {r}: `{n}`: {e.reason}\n" for r, n, e in used.values())
    stale = [e for e in EQUIVALENT if id(e) not in used]
    if stale and complete:
        text += "\nEquivalent entries that matched no survivor (stale: the line changed, was "
        text += "removed, or a test now kills the mutant; remove or update them):\n\n"
        text += "".join(f"- `{e.function}`: `{e.before}` -> `{e.after}`\n" for e in stale)
    return text


def _judged(found: dict[str, dict[str, str]]) -> int:
    return sum(1 for statuses in found.values() for s in statuses.values() if s != "not checked")


def _block(text: str) -> str:
    return "".join(f"      {line}\n" for line in text.splitlines())


def _row(name: str, count: Counter[str]) -> str:
    judged = count["mutants"] - count["equivalent"] - count["not checked"]
    rate = f"{sum(count[c] for c in KILLED) / judged * 100:.1f}%" if judged else "-"
    cells = " | ".join(str(count[c]) for c in COLUMNS)
    return f"| {name} | {count['mutants']} | {cells} | {rate} |"


def rerun_survivors(rows: list[Row], children: int) -> engine.Clock | None:
    """Run the last run's survivors (and mutants no test ran) again after new tests; keep the
    other verdicts.

    mutmut forgets its verdicts when the tests it watches change, so they are kept here and
    the new verdicts of the survivors laid over them.
    """
    found = results(rows)
    again = ("survived", "no tests")
    names = [n for statuses in found.values() for n, s in statuses.items() if s in again]
    if not names:
        print("no survivors to run again")
        return None
    metas = [Path("mutants") / (p + ".meta") for p in select(rows=tuple(rows)).lines()]
    saved = {m: json.loads(m.read_text(encoding="utf-8")) for m in metas if m.exists()}
    clock = engine.run(rows, children, names)
    for meta, old in saved.items():
        new = json.loads(meta.read_text(encoding="utf-8"))
        codes = old["exit_code_by_key"]
        codes.update(
            (n, c) for n, c in new["exit_code_by_key"].items() if c is not None and n in codes
        )
        new["exit_code_by_key"] = codes
        meta.write_text(json.dumps(new, indent=4), encoding="utf-8")
    return clock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutation", description=__doc__)
    parser.add_argument("command", choices=["run", "survivors", "report"])
    parser.add_argument(
        "modules", nargs="*", metavar="MODULE", help=f"report rows to run: {', '.join(ROWS)}"
    )
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--resume", action="store_true", help="run: go on with the mutants a stopped run left"
    )
    args = parser.parse_intermixed_args(argv)
    unknown = sorted(set(args.modules) - set(ROWS))
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(ROWS)}")
    rows = [row for row in MODULES if not args.modules or row.name in args.modules]
    # The mutants this invocation judges, for the rate: a resumed run goes on from the judged
    # ones, a survivors pass judges its survivors and mutants no test ran again.
    before = results(rows) if args.command == "survivors" or args.resume else {}
    again = sum(1 for st in before.values() for s in st.values() if s in ("survived", "no tests"))
    clock = None
    if args.command == "run":
        # A fresh mutants/ each time (a verdict cached from other code or tests would be a lie),
        # unless a stopped run is resumed: mutmut keeps each verdict as it comes, and runs again
        # the functions whose code changed since.
        if not args.resume:
            shutil.rmtree("mutants", ignore_errors=True)
        clock = engine.run(rows, args.max_children, [])
    elif args.command == "survivors":
        clock = rerun_survivors(rows, args.max_children)
    found = results(rows)
    # Stale equivalents can only be told after every mutant of every module was judged.
    complete = not args.modules and all(
        s != "not checked" for st in found.values() for s in st.values()
    )
    text = report(found, complete=complete)
    if clock is not None:
        ran = again if args.command == "survivors" else _judged(found) - _judged(before)
        timing = engine.save_timing(clock, ran)
        text += "\nTiming (seconds; CPU is user + system of the run and its children):\n\n"
        text += "".join(
            f"- {phase}: wall {t['wall']:.0f}, CPU {t['cpu']:.0f}\n"
            for phase, t in timing["phases"].items()
        )
        text += f"- mutants per second: {timing['mutants per second (wall)']:.2f}\n"
    Path("mutants").mkdir(exist_ok=True)
    Path("mutants/report.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
