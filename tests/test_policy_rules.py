"""Policy and schedule rules at their edges: window bounds, holidays meeting cron firings at
midnight, schedules in the past, and the error messages a policy author reads."""

from __future__ import annotations

import pytest

from exporter.hibernation.policy import PolicyError, parse_policy_file
from exporter.hibernation.schedule import desired_state, transitions
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
