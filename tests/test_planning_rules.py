"""The planning rules edge by edge: which transition is due, when a skip or a keep override
applies, what is wanted now and when the timer next has something to do.

Planning is pure (a policy, one cluster's override, instants in, an answer out), so these tests
call it directly with small inputs. The policy: awake Monday to Friday 08:00-20:00 UTC, so on
Monday 2027-03-01 it wakes at 08:00 and hibernates at 20:00.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.hibernation.planning import (
    due_transition,
    effective_desired,
    keep_blocks,
    next_due,
    skip_applies,
)
from exporter.hibernation.policy import Match, Policy, parse_policy_file
from exporter.hibernation.schedule import Transition

POLICIES = """
policies:
  - name: office
    clusters: {names: ["dev-*"]}
    timezone: UTC
    awake: ["Mon-Fri 08:00-20:00"]
  - name: late
    clusters: {names: ["late-*"]}
    timezone: UTC
    awake: ["Mon-Fri 10:00-22:00"]
  - name: yearly
    clusters: {names: ["year-*"]}
    timezone: UTC
    schedules: [{hibernate: "0 0 1 1 *"}]
"""
_FILE = parse_policy_file(POLICIES)
OFFICE: Policy = _FILE.policies[0]
LATE: Policy = _FILE.policies[1]
#: A cron policy that says nothing for most of the year: no desired state, no next transition.
YEARLY: Policy = _FILE.policies[2]


def at(hour: float, day: int = 1) -> datetime:
    """Monday 2027-03-01 (or another day of that week) at ``hour`` (fractions are minutes)."""
    whole = int(hour)
    return datetime(2027, 3, day, whole, round((hour - whole) * 60), tzinfo=UTC)


def t(hour: float, day: int = 1) -> float:
    return at(hour, day).timestamp()


def keep(state: str, until: float | None, **more: Any) -> dict[str, Any]:
    return {"kind": "keep", "state": state, "until": until, "created": t(0), **more}


def match(policy: Policy, excluded: bool = False, name: str = "dev-a") -> Match:
    return Match("t", f"id-{name}", name, policy, excluded)


# --- due_transition ---------------------------------------------------------------------------


def test_the_latest_policy_transition_in_the_interval_is_due() -> None:
    assert due_transition(OFFICE, None, t(7), t(9)) == Transition(at(8), "awake")
    # Both of the day's transitions in the interval: the later one.
    assert due_transition(OFFICE, None, t(7), t(21)) == Transition(at(20), "hibernate")
    assert due_transition(OFFICE, None, t(9), t(19)) is None


def test_the_interval_excludes_its_start_and_includes_its_end() -> None:
    assert due_transition(OFFICE, None, t(7), t(8)) == Transition(at(8), "awake")
    assert due_transition(OFFICE, None, t(8), t(9)) is None


def test_the_end_of_a_keep_override_is_due_when_the_policy_then_wants_the_other_state() -> None:
    kept = keep("awake", t(22))  # the policy hibernated it at 20:00
    assert due_transition(OFFICE, kept, t(21), t(23)) == Transition(at(22), "hibernate")
    # Its end exactly now is due; exactly at the start of the interval it was handled already.
    assert due_transition(OFFICE, kept, t(21), t(22)) == Transition(at(22), "hibernate")
    assert due_transition(OFFICE, kept, t(22), t(23)) is None
    # Not ended yet.
    assert due_transition(OFFICE, kept, t(21), t(21.5)) is None
    # The other way round: kept hibernated past the morning's wake-up.
    sleeping = keep("hibernated", t(9))
    assert due_transition(OFFICE, sleeping, t(8.5), t(10)) == Transition(at(9), "awake")


def test_the_end_of_a_keep_override_is_not_due_when_the_policy_wants_that_state() -> None:
    assert due_transition(OFFICE, keep("hibernated", t(22)), t(21), t(23)) is None
    assert due_transition(OFFICE, keep("awake", t(12)), t(11), t(13)) is None


def test_the_end_of_a_keep_override_is_not_due_when_the_policy_wants_nothing() -> None:
    assert due_transition(YEARLY, keep("awake", t(12)), t(11), t(13)) is None


def test_a_policy_transition_after_the_end_of_a_keep_override_wins() -> None:
    kept = keep("hibernated", t(9))  # ends at 09:00; the policy hibernates at 20:00
    assert due_transition(OFFICE, kept, t(8.5), t(20.5)) == Transition(at(20), "hibernate")
    # One before its end does not: the end is the latest.
    assert due_transition(OFFICE, kept, t(7), t(10)) == Transition(at(9), "awake")


def test_only_a_keep_override_with_an_end_makes_a_transition() -> None:
    assert due_transition(OFFICE, keep("awake", None), t(21), t(23)) is None
    skip = {"kind": "skip", "state": None, "until": t(22), "created": t(0)}
    assert due_transition(OFFICE, skip, t(21), t(23)) is None
    assert due_transition(OFFICE, {}, t(21), t(23)) is None


# --- skip_applies -----------------------------------------------------------------------------


def test_a_skip_override_consumes_a_transition_after_it_was_made() -> None:
    skip = {"kind": "skip", "created": t(12)}
    assert skip_applies(skip, t(20)) is True
    assert skip_applies(skip, t(12)) is False  # made at the very instant: not before it
    assert skip_applies(skip, t(8)) is False
    # An entry without its creation time (an older state file) counts as made long ago.
    assert skip_applies({"kind": "skip"}, 1.0) is True


def test_only_a_skip_override_skips() -> None:
    assert skip_applies(None, t(20)) is False
    assert skip_applies({}, t(20)) is False
    assert skip_applies(keep("awake", None), t(20)) is False
    assert skip_applies({"created": t(12)}, t(20)) is False


# --- keep_blocks ------------------------------------------------------------------------------


def test_a_keep_override_in_force_blocks_the_other_action() -> None:
    assert (
        keep_blocks(keep("hibernated", t(22)), "awake", t(21))
        == "override keeps it hibernated until 2027-03-01T22:00:00Z"
    )
    assert (
        keep_blocks(keep("awake", t(22)), "hibernate", t(21))
        == "override keeps it awake until 2027-03-01T22:00:00Z"
    )
    assert (
        keep_blocks(keep("awake", None), "hibernate", t(21))
        == "override keeps it awake until removed"
    )


def test_a_keep_override_does_not_block_its_own_state_nor_after_its_end() -> None:
    assert keep_blocks(keep("awake", t(22)), "awake", t(21)) is None
    assert keep_blocks(keep("hibernated", None), "hibernate", t(21)) is None
    assert keep_blocks(keep("awake", t(22)), "hibernate", t(22)) is None  # ends now
    assert keep_blocks(keep("awake", t(22)), "hibernate", t(23)) is None


def test_only_a_keep_override_blocks() -> None:
    assert keep_blocks(None, "hibernate", t(21)) is None
    assert keep_blocks({}, "hibernate", t(21)) is None
    skip = {"kind": "skip", "state": None, "until": t(22), "created": t(0)}
    assert keep_blocks(skip, "hibernate", t(21)) is None
    assert keep_blocks({"state": "awake", "until": None}, "hibernate", t(21)) is None


# --- effective_desired ------------------------------------------------------------------------


def test_a_keep_override_in_force_wins_over_the_policy() -> None:
    assert effective_desired(OFFICE, None, t(12)) == "awake"
    assert effective_desired(OFFICE, keep("hibernated", t(13)), t(12)) == "hibernated"
    assert effective_desired(OFFICE, keep("hibernated", None), t(12)) == "hibernated"
    assert effective_desired(OFFICE, keep("awake", t(23)), t(22)) == "awake"


def test_the_policy_wants_again_from_the_end_of_a_keep_override() -> None:
    assert effective_desired(OFFICE, keep("hibernated", t(13)), t(13)) == "awake"
    assert effective_desired(OFFICE, keep("hibernated", t(13)), t(14)) == "awake"


@pytest.mark.parametrize(
    "override",
    [
        {"kind": "skip", "state": None, "until": None, "created": 0},
        {"kind": "keep", "state": "asleep", "until": None, "created": 0},
        {"kind": "keep", "until": None, "created": 0},
        {"state": "hibernated", "until": None},
        {},
    ],
    ids=["skip", "unknown-state", "no-state", "no-kind", "empty"],
)
def test_anything_but_a_keep_override_leaves_the_policy_wanting(override: Any) -> None:
    assert effective_desired(OFFICE, override, t(12)) == "awake"
    assert effective_desired(OFFICE, override, t(22)) == "hibernated"


# --- next_due ---------------------------------------------------------------------------------


def test_the_next_transition_of_a_governing_policy() -> None:
    assert next_due([match(OFFICE)], [], t(12)) == t(20)
    assert next_due([match(OFFICE)], [], t(20)) == t(8, day=2)  # strictly after now
    assert next_due([], [], t(12)) is None


def test_the_earliest_of_the_policies_whatever_their_order() -> None:
    office, late = match(OFFICE), match(LATE, name="late-a")
    assert next_due([office, late], [], t(12)) == t(20)
    assert next_due([late, office], [], t(12)) == t(20)
    assert next_due([late, office], [], t(9)) == t(10)


def test_an_excluded_match_brings_no_transition() -> None:
    assert next_due([match(OFFICE, excluded=True)], [], t(12)) is None
    office_excluded = match(OFFICE, excluded=True)
    assert next_due([office_excluded, match(LATE, name="late-a")], [], t(12)) == t(22)
    # The same policy governing another cluster still counts.
    assert next_due([office_excluded, match(OFFICE, name="dev-b")], [], t(12)) == t(20)


def test_a_policy_with_nothing_ahead_brings_no_transition() -> None:
    assert next_due([match(YEARLY, name="year-a")], [], t(12)) is None
    assert next_due([match(YEARLY, name="year-a"), match(OFFICE)], [], t(12)) == t(20)
    assert next_due([match(OFFICE), match(YEARLY, name="year-a")], [], t(12)) == t(20)


def test_the_timer_looks_two_days_ahead() -> None:
    # Friday 21:00: the next wake-up is Monday 08:00, 59 hours on.
    friday = datetime(2027, 3, 5, 21, tzinfo=UTC).timestamp()
    assert next_due([match(OFFICE)], [], friday) is None
    thursday = datetime(2027, 3, 4, 21, tzinfo=UTC).timestamp()
    assert next_due([match(OFFICE)], [], thursday) == t(8, day=5)


def test_the_end_of_an_override_is_due() -> None:
    assert next_due([], [keep("awake", t(13))], t(12)) == t(13)
    assert next_due([match(OFFICE)], [keep("awake", t(13))], t(12)) == t(13)
    assert next_due([match(OFFICE)], [keep("awake", t(21))], t(12)) == t(20)
    overrides = [keep("awake", t(15)), keep("awake", t(14)), keep("awake", t(16))]
    assert next_due([], overrides, t(12)) == t(14)
    assert next_due([], [{"until": int(t(13))}], t(12)) == t(13)


def test_an_override_end_that_is_not_ahead_or_not_a_time_is_not_due() -> None:
    assert next_due([], [keep("awake", t(12))], t(12)) is None
    assert next_due([], [keep("awake", t(11))], t(12)) is None
    assert next_due([], [keep("awake", None)], t(12)) is None
    assert next_due([], [{"until": str(t(13))}], t(12)) is None
    assert next_due([], [[("until", t(13))]], t(12)) is None
    assert next_due([match(OFFICE)], [keep("awake", t(11))], t(12)) == t(20)
