"""Policy and schedule rules at their edges: window bounds, holidays meeting windows and cron
firings at midnight, cron holidays asked one tick at a time, DST gaps and folds, schedules in the
past or read on a machine in another time zone, which policy governs a cluster, and the error
messages a policy author reads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from exporter.hibernation.policy import (
    Conflict,
    Match,
    PolicyError,
    Window,
    match_policies,
    parse_policy_file,
    parse_window,
)
from exporter.hibernation.schedule import (
    LOOKBACK,
    Transition,
    desired_state,
    next_transitions,
    resolve_local,
    transitions,
)
from tests.test_hibernation_schedule import pairs, policy, utc

# --- awake windows, minute by minute -------------------------------------------------------------

MON, FRI, SAT, SUN = 0, 4, 5, 6


@pytest.mark.parametrize(
    ("window", "weekday", "minute", "awake"),
    [
        ("Mon-Fri 08:00-20:00", MON, 8 * 60, True),  # the start is inside
        ("Mon-Fri 08:00-20:00", MON, 8 * 60 - 1, False),
        ("Mon-Fri 08:00-20:00", FRI, 20 * 60 - 1, True),
        ("Mon-Fri 08:00-20:00", FRI, 20 * 60, False),  # the end is outside
        ("Mon-Fri 08:00-20:00", SAT, 10 * 60, False),  # inside the hours, not the days
        # Crossing midnight: Friday night until Saturday 02:00.
        ("Fri 22:00-02:00", FRI, 23 * 60, True),
        ("Fri 22:00-02:00", SAT, 60, True),
        ("Fri 22:00-02:00", SAT, 119, True),
        ("Fri 22:00-02:00", SAT, 120, False),
        ("Fri 22:00-02:00", SAT, 600, False),
        ("Fri 22:00-02:00", FRI, 60, False),  # Friday 01:00 belongs to Thursday night
        ("Fri 22:00-02:00", SUN, 60, False),
        # Sunday night runs into Monday: the week wraps.
        ("Sun 22:00-02:00", MON, 60, True),
        ("Sun 22:00-02:00", SUN, 60, False),
    ],
)
def test_wall_time_awake_at_the_edges(window: str, weekday: int, minute: int, awake: bool) -> None:
    assert policy(f"    awake: ['{window}']\n").wall_time_awake(weekday, minute) is awake


def test_desired_state_without_a_recent_transition_reads_the_windows() -> None:
    # Nine holidays in a row (Sat 6 to Sun 14 March): no transition in the 8 days before
    # Monday 15 March, so the windows decide.
    days = ", ".join(f"'2027-03-{d:02d}'" for d in range(6, 15))
    p = policy(f"    awake: ['Mon-Fri 08:00-20:00']\n    holidays: {{dates: [{days}]}}\n")
    assert desired_state(p, utc(2027, 3, 14, 12)) == "hibernated"  # a holiday
    assert desired_state(p, utc(2027, 3, 15, 7, 59)) == "hibernated"  # before the window
    assert desired_state(p, utc(2027, 3, 15, 8)) == "awake"
    # Night windows, always on: no transition ever, awake through the previous day's window.
    q = policy("    awake: ['Mon-Sun 22:00-22:00']\n")
    assert transitions(q, utc(2027, 3, 1), utc(2027, 3, 20)) == []
    assert desired_state(q, utc(2027, 3, 9, 10)) == "awake"


# --- cron and holidays at midnight ---------------------------------------------------------------


def test_a_holiday_starting_when_a_hibernate_fires_still_hibernates() -> None:
    # Hibernate every midnight, awake at 08:00; Wednesday 3 March is a holiday. The firing at the
    # holiday's first instant must not be lost: the cluster sleeps through the holiday.
    p = policy(
        "    schedules: [{hibernate: '0 0 * * *', awake: '0 8 * * *'}]\n"
        "    holidays: {dates: ['2027-03-03']}\n"
    )
    assert pairs(transitions(p, utc(2027, 3, 2, 12), utc(2027, 3, 4, 12))) == [
        ("hibernate", utc(2027, 3, 3)),
        ("hibernate", utc(2027, 3, 4)),
        ("awake", utc(2027, 3, 4, 8)),
    ]
    assert desired_state(p, utc(2027, 3, 3, 12)) == "hibernated"


def test_a_holiday_starting_when_an_awake_fires_stays_asleep() -> None:
    # Awake every midnight, hibernate at 20:00: asleep since Tuesday 20:00, the holiday's
    # midnight wake-up is dropped; Thursday's midnight wakes it.
    p = policy(
        "    schedules: [{awake: '0 0 * * *', hibernate: '0 20 * * *'}]\n"
        "    holidays: {dates: ['2027-03-03']}\n"
    )
    assert pairs(transitions(p, utc(2027, 3, 2, 12), utc(2027, 3, 4, 12))) == [
        ("hibernate", utc(2027, 3, 2, 20)),
        ("awake", utc(2027, 3, 4)),
    ]


def test_a_holiday_ending_when_a_hibernate_fires_does_not_wake() -> None:
    # Awake at 12:00, hibernate at midnight; the holiday ends Thursday 00:00, exactly when the
    # cron hibernates: no wake-up at its end.
    p = policy(
        "    schedules: [{awake: '0 12 * * *', hibernate: '0 0 * * *'}]\n"
        "    holidays: {dates: ['2027-03-03']}\n"
    )
    assert pairs(transitions(p, utc(2027, 3, 2, 6), utc(2027, 3, 4, 13))) == [
        ("awake", utc(2027, 3, 2, 12)),
        ("hibernate", utc(2027, 3, 3)),
        ("hibernate", utc(2027, 3, 4)),
        ("awake", utc(2027, 3, 4, 12)),
    ]


def test_a_cron_pair_may_only_wake() -> None:
    p = policy("    schedules: [{awake: '0 8 * * *'}]\n")
    assert pairs(transitions(p, utc(2027, 3, 1), utc(2027, 3, 2, 12))) == [
        ("awake", utc(2027, 3, 1, 8)),
        ("awake", utc(2027, 3, 2, 8)),
    ]


def test_cron_transitions_in_the_past() -> None:
    p = policy("    schedules: [{hibernate: '0 20 * * 1-5', awake: '0 8 * * 1-5'}]\n")
    assert pairs(transitions(p, utc(2020, 3, 2), utc(2020, 3, 3))) == [
        ("awake", utc(2020, 3, 2, 8)),
        ("hibernate", utc(2020, 3, 2, 20)),
    ]


# --- what the policy author reads ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            "controller: {max_in_flight: 0, poll_seconds: 0}",
            "<p>: invalid policy file (2 problems):\n"
            "  - controller.max_in_flight: Input should be greater than or equal to 1\n"
            "  - controller.poll_seconds: Input should be greater than 0",
        ),
        ("pricing: 5", "<p>: pricing: Input should be a valid dictionary or instance of Pricing"),
        (
            "policies: [{name: x, clusters: {names: [a]}}]",
            "<p>: policy 'x', field (the policy): "
            "give either 'awake' windows or 'schedules', exactly one of them",
        ),
        (
            "policies: [{name: ok, clusters: {names: [a]}, awake: [Sat]}, "
            "{clusters: {names: [b]}, awake: [Sun]}]",
            "<p>: policy #2, field name: is required",
        ),
        (
            "policies: [just-a-name]",
            "<p>: policy #1, field (the policy): "
            "Input should be a valid dictionary or instance of Policy",
        ),
        (
            "policies: [{name: z, clusters: {names: [a]}, schedules: [{awake: '0 0 30 2 *'}]}]",
            "<p>: policy 'z', field schedules.0.awake: '0 0 30 2 *' never fires "
            "(a day that does not exist)",
        ),
        (
            "policies: [{name: y, clusters: {names: [a]}, awake: ['Mon 25:00-26:00']}]",
            "<p>: policy 'y', field awake: invalid time '25:00' in window 'Mon 25:00-26:00' "
            "(00:00 to 24:00)",
        ),
    ],
)
def test_policy_errors_name_the_policy_and_the_field(doc: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy_file(doc, "<p>")
    assert str(caught.value) == message


def test_a_holiday_ends_into_the_state_its_first_instant_set() -> None:
    # Awake every Monday at midnight and never hibernated by the cron; Monday to Wednesday are
    # holidays. Asked about Wednesday noon onwards, the Monday firing lies at the very start of
    # the range the schedule looks back over: the cluster still wakes when the holidays end.
    p = policy(
        "    schedules: [{awake: '0 0 * * 1'}]\n"
        "    holidays: {dates: ['2027-03-01', '2027-03-02', '2027-03-03']}\n"
    )
    assert pairs(transitions(p, utc(2027, 3, 3, 12), utc(2027, 3, 4, 12))) == [
        ("awake", utc(2027, 3, 4)),
    ]


# --- window syntax: the bounds and the messages ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Fry-Mon 08:00-20:00",
            "unknown day 'Fry' in window 'Fry-Mon 08:00-20:00' (use Mon, Tue, ... Sun)",
        ),
        (
            "Mon-Fry 08:00-20:00",
            "unknown day 'Fry' in window 'Mon-Fry 08:00-20:00' (use Mon, Tue, ... Sun)",
        ),
        ("Mon,,Tue", "empty day in window 'Mon,,Tue'"),
        (
            "Mon 8-20",
            "window 'Mon 8-20' is not '<days> <HH:MM>-<HH:MM>' (e.g. 'Mon-Fri 08:00-20:00')",
        ),
        ("Mon 24:00-02:00", "window 'Mon 24:00-02:00' cannot start at 24:00"),
        ("Mon 08:00-24:01", "invalid time '24:01' in window 'Mon 08:00-24:01' (00:00 to 24:00)"),
        ("Mon 08:60-09:00", "invalid time '08:60' in window 'Mon 08:60-09:00' (00:00 to 24:00)"),
    ],
)
def test_a_bad_window_is_refused_with_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_window(text)
    assert str(caught.value) == message


def test_the_last_minute_of_an_hour_and_of_the_day() -> None:
    assert parse_window("Mon 08:59-23:59") == Window(frozenset({0}), 539, 1439)
    assert parse_window("Sunday 00:00-24:00") == Window(frozenset({6}), 0, 1440)


# --- which policy governs a cluster ---------------------------------------------------------------


def test_a_match_and_a_conflict_name_the_target_the_cluster_and_the_policy() -> None:
    pf = parse_policy_file(
        "policies:\n"
        "  - {name: dev, clusters: {names: ['dev-*'], exclude: [id-3, dev-keep]}, awake: [Sat]}\n"
        "  - {name: special, clusters: {ids: [id-2]}, awake: [Sun]}\n"
    )
    dev, special = pf.policies
    matches, conflicts = match_policies(
        pf,
        [
            ("cn", "id-1", "dev-a"),
            ("cn", "id-2", "dev-b"),
            ("eu", "id-3", "dev-c"),  # excluded by its ID
            ("cn", "id-4", "dev-keep"),  # excluded by its name
        ],
    )
    assert matches == {
        ("cn", "id-1"): Match("cn", "id-1", "dev-a", dev, excluded=False),
        ("eu", "id-3"): Match("eu", "id-3", "dev-c", dev, excluded=True),
        ("cn", "id-4"): Match("cn", "id-4", "dev-keep", dev, excluded=True),
    }
    assert conflicts == [Conflict("cn", "id-2", "dev-b", (dev.name, special.name))]
    assert conflicts[0].message() == (
        "cluster 'dev-b' (id-2) of target 'cn' is selected by policies 'dev' and 'special'; "
        "it is left alone until only one policy selects it"
    )


# --- holidays meeting windows -----------------------------------------------------------------


def test_consecutive_holidays_hibernate_every_one_of_them() -> None:
    # Monday 1 and Tuesday 2 March are holidays: the first wake-up is Wednesday's.
    p = policy(
        "    awake: ['Mon-Fri 08:00-20:00']\n    holidays: {dates: ['2027-03-01', '2027-03-02']}\n"
    )
    assert pairs(transitions(p, utc(2027, 2, 28), utc(2027, 3, 4))) == [
        ("awake", utc(2027, 3, 3, 8)),
        ("hibernate", utc(2027, 3, 3, 20)),
    ]


def test_a_night_window_is_cut_at_a_holidays_midnights() -> None:
    # Night windows; Wednesday 3 March is a holiday: Tuesday night ends at the holiday's start,
    # Wednesday night's part after midnight (Thursday) still happens.
    p = policy("    awake: ['Mon-Fri 22:00-02:00']\n    holidays: {dates: ['2027-03-03']}\n")
    assert pairs(transitions(p, utc(2027, 3, 2, 12), utc(2027, 3, 5, 12))) == [
        ("awake", utc(2027, 3, 2, 22)),
        ("hibernate", utc(2027, 3, 3)),
        ("awake", utc(2027, 3, 4)),
        ("hibernate", utc(2027, 3, 4, 2)),
        ("awake", utc(2027, 3, 4, 22)),
        ("hibernate", utc(2027, 3, 5, 2)),
    ]


# --- cron and holidays, whatever range is asked -------------------------------------------------


def test_cron_holiday_transitions_do_not_depend_on_the_range_asked() -> None:
    # Awake from Monday 08:00 to Friday 20:00. Friday 5 March is a holiday: hibernated at its
    # midnight, though the cron last fired four days before. Monday 15 to Thursday 18 March are
    # holidays: the cluster wakes when they end, as the cron has wanted since their Monday.
    p = policy(
        "    schedules: [{awake: '0 8 * * 1', hibernate: '0 20 * * 5'}]\n"
        "    holidays: {dates: ['2027-03-05', '2027-03-15', '2027-03-16', '2027-03-17',"
        " '2027-03-18']}\n"
    )
    start, end = utc(2027, 3, 1), utc(2027, 3, 22, 12)
    whole = transitions(p, start, end)
    assert pairs(whole) == [
        ("awake", utc(2027, 3, 1, 8)),
        ("hibernate", utc(2027, 3, 5)),
        ("awake", utc(2027, 3, 8, 8)),
        ("hibernate", utc(2027, 3, 12, 20)),
        ("awake", utc(2027, 3, 19)),
        ("hibernate", utc(2027, 3, 19, 20)),
        ("awake", utc(2027, 3, 22, 8)),
    ]
    # The controller asks one tick at a time: every transition is found in the tick holding it.
    ticks: list[Transition] = []
    at = start
    while at < end:
        ticks += transitions(p, at, at + timedelta(hours=1))
        at += timedelta(hours=1)
    assert ticks == whole


def test_a_holiday_ends_into_the_state_of_its_last_minute() -> None:
    # Awake at 08:00, hibernated at 00:01; Wednesday 3 March is a holiday. It ends (Thursday
    # 00:00) into the state the cron has then (awake since Wednesday 08:00), not the one a
    # minute later.
    p = policy(
        "    schedules: [{awake: '0 8 * * *', hibernate: '1 0 * * *'}]\n"
        "    holidays: {dates: ['2027-03-03']}\n"
    )
    assert pairs(transitions(p, utc(2027, 3, 2, 12), utc(2027, 3, 4, 12))) == [
        ("hibernate", utc(2027, 3, 3)),
        ("awake", utc(2027, 3, 4)),
        ("hibernate", utc(2027, 3, 4, 0, 1)),
        ("awake", utc(2027, 3, 4, 8)),
    ]


def test_a_cron_policy_sleeps_on_a_holiday_it_has_nothing_else_to_say_about() -> None:
    # Hibernated every New Year's Day and never woken: no transition in the days before the
    # holiday, which still says the cluster sleeps; the day after, the policy says nothing.
    p = policy("    schedules: [{hibernate: '0 0 1 1 *'}]\n    holidays: {dates: ['2027-03-03']}\n")
    assert desired_state(p, utc(2027, 3, 3, 12)) == "hibernated"
    assert desired_state(p, utc(2027, 3, 4, 12)) is None


# --- upcoming transitions ---------------------------------------------------------------------


def test_next_transitions_are_those_after_the_instant_within_the_horizon() -> None:
    p = policy("    awake: ['Mon-Fri 08:00-20:00']\n")
    assert pairs(next_transitions(p, utc(2027, 3, 1, 8), timedelta(hours=12))) == [
        ("hibernate", utc(2027, 3, 1, 20)),  # not the wake-up at the instant itself
    ]
    assert pairs(next_transitions(p, utc(2027, 3, 1, 7), timedelta(hours=13))) == [
        ("awake", utc(2027, 3, 1, 8)),
        ("hibernate", utc(2027, 3, 1, 20)),  # the horizon's end is inside
    ]


# --- daylight saving time -----------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")


def test_a_repeated_wall_time_is_taken_at_its_first_occurrence_whatever_its_fold() -> None:
    # 2027-10-31: 02:30 happens at 00:30Z (CEST) and again at 01:30Z (CET).
    assert resolve_local(datetime(2027, 10, 31, 2, 30, fold=1), BERLIN) == utc(2027, 10, 31, 0, 30)
    assert resolve_local(datetime(2027, 10, 31, 2, 30), BERLIN) == utc(2027, 10, 31, 0, 30)


def test_a_window_inside_the_spring_forward_gap_never_happens() -> None:
    # Sunday 28 March 2027, Berlin: 02:00 CET jumps to 03:00 CEST (01:00Z).
    p = policy("    timezone: Europe/Berlin\n    awake: ['Sun 02:10-02:50']\n")
    assert pairs(transitions(p, utc(2027, 3, 20), utc(2027, 4, 5))) == [
        ("awake", utc(2027, 3, 21, 1, 10)),  # CET
        ("hibernate", utc(2027, 3, 21, 1, 50)),
        ("awake", utc(2027, 4, 4, 0, 10)),  # CEST
        ("hibernate", utc(2027, 4, 4, 0, 50)),
    ]
    # Asked about that Sunday alone (the last interval the schedule computes is the empty one).
    assert transitions(p, utc(2027, 3, 27), utc(2027, 3, 28, 12)) == []


def test_a_break_inside_the_spring_forward_gap_never_happens() -> None:
    # Awake all day but from 02:00 to 03:00, which does not exist on 28 March: the cluster
    # stays awake through that night.
    p = policy("    timezone: Europe/Berlin\n    awake: ['Mon-Sun 03:00-02:00']\n")
    assert pairs(transitions(p, utc(2027, 3, 26, 12), utc(2027, 3, 29, 12))) == [
        ("hibernate", utc(2027, 3, 27, 1)),  # 02:00 CET
        ("awake", utc(2027, 3, 27, 2)),  # 03:00 CET
        ("hibernate", utc(2027, 3, 29)),  # 02:00 CEST
        ("awake", utc(2027, 3, 29, 1)),
    ]
    assert desired_state(p, utc(2027, 3, 28, 12)) == "awake"
    # An empty window, then an empty break, then a window: awake at the jump.
    q = policy("    timezone: Europe/Berlin\n    awake: ['Sun 02:10-02:20', 'Sun 02:30-04:00']\n")
    assert pairs(transitions(q, utc(2027, 3, 27), utc(2027, 3, 29))) == [
        ("awake", utc(2027, 3, 28, 1)),
        ("hibernate", utc(2027, 3, 28, 2)),  # 04:00 CEST
    ]


@pytest.mark.parametrize(
    ("at", "state"),
    [
        (utc(2027, 3, 14, 5, 0), "hibernated"),  # 01:00 EDT, just after the jump
        (utc(2027, 3, 14, 5, 1), "hibernated"),  # 01:01 EDT
        (utc(2027, 3, 14, 14, 30), "hibernated"),  # 10:30 EDT
    ],
)
def test_the_windows_verdict_reads_the_local_hour_and_minute(at: datetime, state: str) -> None:
    # Havana's clocks jump from 00:00 to 01:00 on Sunday 14 March 2027: the Sunday window is
    # empty that day, the Sunday before is a holiday, so no transition in the eight days before:
    # the windows' verdict at the local hour and minute decides.
    p = policy(
        "    timezone: America/Havana\n    awake: ['Sun 00:00-01:00']\n"
        "    holidays: {dates: ['2027-03-07']}\n"
    )
    assert transitions(p, at - LOOKBACK, at) == []
    assert desired_state(p, at) == state


# --- the machine's own time zone plays no part ----------------------------------------------------


@pytest.fixture
def kiritimati_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is 14 hours ahead of UTC."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    assert time.timezone == -14 * 3600
    yield
    monkeypatch.undo()
    time.tzset()


def test_schedules_ignore_the_machines_time_zone(kiritimati_local_time: None) -> None:
    # Pago Pago is 11 hours behind UTC: Tuesday 23:00 there is already Thursday in Kiritimati.
    # A 24-hour window from Monday 23:30 ends on Tuesday 23:30, Pago Pago time.
    p = policy("    timezone: Pacific/Pago_Pago\n    awake: ['Mon 23:30-23:30']\n")
    found = transitions(p, utc(2027, 3, 3, 10), utc(2027, 3, 3, 11))  # Tue 23:00 to Wed 00:00
    assert pairs(found) == [("hibernate", utc(2027, 3, 3, 10, 30))]
    assert all(t.at.utcoffset() == timedelta(0) for t in found)
    at = resolve_local(datetime(2027, 3, 1, 12), BERLIN)
    assert (at, at.utcoffset()) == (utc(2027, 3, 1, 11), timedelta(0))
    # A holiday is the policy's date, not the machine's (already 4 March in Kiritimati).
    q = policy("    schedules: [{hibernate: '0 0 1 1 *'}]\n    holidays: {dates: ['2027-03-03']}\n")
    assert desired_state(q, utc(2027, 3, 3, 12)) == "hibernated"
