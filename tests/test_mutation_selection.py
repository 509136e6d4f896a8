"""``make mutate``'s selection and equivalents list survive code being moved or renumbered."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from mutation import engine
from mutation.__main__ import _row
from mutation.equivalent import EQUIVALENT, changed_lines, match
from mutation.modules import MODULES, Row, guards, select


def test_every_module_selects_code_to_mutate() -> None:
    selection = select()
    assert {row: bool(functions) for row, functions in selection.by_row.items()} == {
        row.name: True for row in MODULES
    }


def test_a_moved_function_stays_selected_and_a_lost_pattern_is_reported(tmp_path: Path) -> None:
    row = Row("rules", ("pkg/*.py",), ("_decide", "Keeper.*", "_gone"), ("tests/t.py",))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "old.py").write_text("def other():\n    return 1\n")
    (tmp_path / "pkg" / "new.py").write_text(
        "class Planner:\n"
        "    def _decide(self):\n"
        "        return 2\n"
        "\n"
        "class Keeper:\n"
        "    def keep(self):\n"
        "        return 3\n"
    )
    selection = select(tmp_path, (row,))
    chosen = {(f.path, f.qualname) for f in selection.by_row["rules"]}
    assert chosen == {("pkg/new.py", "Planner._decide"), ("pkg/new.py", "Keeper.keep")}
    assert selection.lines() == {"pkg/new.py": {2, 3, 6, 7}}
    assert selection.unmatched == ["rules: '_gone'"]


def test_the_first_module_that_claims_a_function_keeps_it(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("def a():\n    pass\n\ndef b():\n    pass\n")
    first = Row("first", ("m.py",), ("a",), ())
    rest = Row("rest", ("*.py",), ("*",), ())
    selection = select(tmp_path, (first, rest))
    assert [f.qualname for f in selection.by_row["rest"]] == ["b"]
    assert selection.row_of("m.py", "a") == "first"


def test_a_module_runs_its_files_and_named_tests_only() -> None:
    assert guards("tests/test_auth*.py", "tests/test_auth_rules.py::test_x[1]")
    assert guards("tests/t.py::test_a", "tests/t.py::test_a[p1]")
    assert not guards("tests/t.py::test_a", "tests/t.py::test_ab")
    assert not guards("tests/test_auth.py", "tests/test_client.py::test_x")


def test_an_equivalent_mutant_is_known_by_its_function_and_line_wherever_it_lives() -> None:
    diff = (
        "--- exporter/ha/sharding.py\n"
        "+++ exporter/ha/sharding.py\n"
        "@@ -1,3 +1,3 @@\n"
        " def shard_of(cluster_id, total):\n"
        '-    digest = hashlib.sha256(cluster_id.encode("utf-8")).digest()\n'
        '+    digest = hashlib.sha256(cluster_id.encode("UTF-8")).digest()\n'
    )
    before, after = changed_lines(diff)
    assert before == 'digest = hashlib.sha256(cluster_id.encode("utf-8")).digest()'
    entry = match("shard_of", before, after)
    assert entry is not None and "same codec" in entry.reason
    assert match("Sharder.shard_of", before, after) is entry
    assert match("shard_of", before, before) is None
    assert match("other", before, after) is None


def test_equivalent_entries_are_one_per_mutation_and_give_a_reason() -> None:
    keys = [(e.function.rpartition(".")[2], e.before, e.after) for e in EQUIVALENT]
    assert len(keys) == len(set(keys))
    assert all(e.reason and e.before != e.after for e in EQUIVALENT)


def test_a_mutant_mypy_refuses_is_caught_and_an_error_elsewhere_is_blamed_on_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    package = tmp_path / "mutants" / "exporter"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "m.py").write_text(
        "def x_f__mutmut_orig(a: str) -> str:\n"
        "    return a.upper()\n"
        "\n"
        "def x_f__mutmut_1(a: str) -> str:\n"
        "    return None\n"
        "\n"
        "def x_f__mutmut_2(a: str) -> str:\n"
        "    return a.lower()\n"
        "\n"
        "OUTSIDE: int = 'not an int'\n"
    )
    monkeypatch.chdir(tmp_path)
    caught = engine.caught_by_mypy()
    assert set(caught) == {"exporter.m.x_f__mutmut_1"}
    assert "1 mypy error(s) outside any mutant, e.g. exporter/m.py:10" in capsys.readouterr().out


def test_a_mutant_mypy_refuses_counts_as_killed() -> None:
    count = Counter({"mutants": 9, "killed": 5, "caught by type check": 3, "equivalent": 1})
    assert _row("auth", count) == "| auth | 9 | 5 | 0 | 3 | 0 | 1 | 0 | 0 | 0 | 100.0% |"
    count["caught by type check"] -= 1
    count["survived"] += 1
    assert _row("auth", count).endswith("| 87.5% |")


def test_a_mutant_whose_tests_cannot_be_selected_is_not_a_kill() -> None:
    from mutmut.runners.harness import BadTestExecutionCommandsException
    from mutmut.stats import status_by_exit_code

    def pytest_finds_no_such_test(*, mutant_name: str | None, tests: list[str]) -> int:
        raise BadTestExecutionCommandsException(tests)

    run = engine.unselectable_is_suspicious(pytest_finds_no_such_test)
    assert status_by_exit_code[run(mutant_name="m__mutmut_1", tests=["t.py::x[\\xc3]"])] == (
        "suspicious"
    )
    with pytest.raises(BadTestExecutionCommandsException):
        run(mutant_name=None, tests=["t.py::x[\\xc3]"])
    assert engine.unselectable_is_suspicious(lambda **_: 1)(mutant_name="m", tests=[]) == 1
