"""Policy parsing and schedules, checked against instants computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exporter.hibernation.policy import (
    PolicyError,
    load_policy_file,
    match_policies,
    parse_policy_file,
    parse_window,
)
from exporter.hibernation.schedule import Transition, desired_state, resolve_local, transitions


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def policy(body: str):  # type: ignore[no-untyped-def]
    doc = "policies:\n  - name: p\n    clusters: {names: ['*']}\n" + body
    return parse_policy_file(doc).policies[0]


def pairs(found: list[Transition]) -> list[tuple[str, datetime]]:
    return [(t.action, t.at) for t in found]


# --- windows ---------------------------------------------------------------------------------


def test_window_syntax() -> None:
    w = parse_window("Mon-Fri 08:00-20:00")
    assert (sorted(w.days), w.start, w.end) == ([0, 1, 2, 3, 4], 480, 1200)
    assert sorted(parse_window("Sat,Sun").days) == [5, 6]
    assert (parse_window("Sat,Sun").start, parse_window("Sat,Sun").end) == (0, 1440)
    assert sorted(parse_window("Fri-Mon 00:00-24:00").days) == [0, 4, 5, 6]
    assert parse_window("Fri 22:00-02:00").end == 26 * 60  # crosses midnight
    assert sorted(parse_window("monday-wed,FRI 09:00-10:00").days) == [0, 1, 2, 4]
    for bad in ("Mon-Fry 08:00-20:00", "Mon 8-20", "Mon 25:00-26:00", "Mon 24:00-02:00", ""):
        with pytest.raises(ValueError):
            parse_window(bad)


def test_berlin_spring_forward_and_fall_back() -> None:
    p = policy("    timezone: Europe/Berlin\n    awake: ['Mon-Sun 02:30-20:00']\n")
    # 2027-03-28 (Sunday): 02:00 CET -> 03:00 CEST; 02:30 does not exist -> 03:00 CEST = 01:00Z.
    assert pairs(transitions(p, utc(2027, 3, 27), utc(2027, 3, 29))) == [
        ("awake", utc(2027, 3, 27, 1, 30)),  # 02:30 CET
        ("hibernate", utc(2027, 3, 27, 19, 0)),  # 20:00 CET
        ("awake", utc(2027, 3, 28, 1, 0)),  # first valid instant after 02:30
        ("hibernate", utc(2027, 3, 28, 18, 0)),  # 20:00 CEST
    ]
    # 2027-10-31 (Sunday): 03:00 CEST -> 02:00 CET; 02:30 happens twice -> once, the first time.
    assert pairs(transitions(p, utc(2027, 10, 30, 12), utc(2027, 11, 1))) == [
        ("hibernate", utc(2027, 10, 30, 18, 0)),
        ("awake", utc(2027, 10, 31, 0, 30)),  # 02:30 CEST
        ("hibernate", utc(2027, 10, 31, 19, 0)),  # 20:00 CET
    ]


def test_new_york_cron_over_dst_weekends() -> None:
    p = policy(
        "    timezone: America/New_York\n"
        "    schedules: [{hibernate: '30 1 * * *', awake: '30 2 * * *'}]\n"
    )
    # 2027-03-14: 02:00 EST -> 03:00 EDT.
    assert pairs(transitions(p, utc(2027, 3, 13, 12), utc(2027, 3, 15))) == [
        ("hibernate", utc(2027, 3, 14, 6, 30)),  # 01:30 EST
        ("awake", utc(2027, 3, 14, 7, 0)),  # 02:30 does not exist: 03:00 EDT
    ]
    # 2027-11-07: 02:00 EDT -> 01:00 EST; 01:30 happens twice, acted on once (EDT).
    assert pairs(transitions(p, utc(2027, 11, 6, 12), utc(2027, 11, 8))) == [
        ("hibernate", utc(2027, 11, 7, 5, 30)),  # 01:30 EDT
        ("awake", utc(2027, 11, 7, 7, 30)),  # 02:30 EST
    ]


def test_resolve_local_gap_and_fold() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    assert resolve_local(datetime(2027, 3, 28, 2, 0), berlin) == utc(2027, 3, 28, 1, 0)
    assert resolve_local(datetime(2027, 3, 28, 2, 59), berlin) == utc(2027, 3, 28, 1, 0)
    assert resolve_local(datetime(2027, 10, 31, 2, 0), berlin) == utc(2027, 10, 31, 0, 0)


def test_window_across_midnight_and_weekend() -> None:
    p = policy("    awake: ['Fri 22:00-02:00', 'Sat,Sun']\n")  # UTC
    # Friday 2027-03-05 22:00 until Monday 00:00: one awake stretch, no transition at midnights.
    assert pairs(transitions(p, utc(2027, 3, 1), utc(2027, 3, 9))) == [
        ("awake", utc(2027, 3, 5, 22)),
        ("hibernate", utc(2027, 3, 8, 0)),
    ]
    assert desired_state(p, utc(2027, 3, 6, 1)) == "awake"
    assert desired_state(p, utc(2027, 3, 8, 1)) == "hibernated"


def test_full_day_windows_merge() -> None:
    p = policy("    awake: ['Mon-Sun 00:00-24:00']\n")
    assert transitions(p, utc(2027, 1, 1), utc(2027, 2, 1)) == []
    assert desired_state(p, utc(2027, 1, 10)) == "awake"


def test_holiday_hibernates_all_day() -> None:
    p = policy(
        "    timezone: Europe/Berlin\n"
        "    awake: ['Mon-Fri 08:00-20:00']\n"
        "    holidays: {country: DE, subdiv: BY, dates: ['2027-12-23']}\n"
    )
    # Thu 23 (explicit), Fri 24 is not a legal holiday but Sat/Sun are weekend, 25/26 legal.
    found = pairs(transitions(p, utc(2027, 12, 21, 12), utc(2027, 12, 29)))
    assert found == [
        ("hibernate", utc(2027, 12, 21, 19)),
        ("awake", utc(2027, 12, 22, 7)),
        ("hibernate", utc(2027, 12, 22, 19)),
        ("awake", utc(2027, 12, 24, 7)),  # Fri 24: a working day in Bavaria
        ("hibernate", utc(2027, 12, 24, 19)),
        ("awake", utc(2027, 12, 27, 7)),  # Mon 27 (26 is a Sunday)
        ("hibernate", utc(2027, 12, 27, 19)),
        ("awake", utc(2027, 12, 28, 7)),
        ("hibernate", utc(2027, 12, 28, 19)),
    ]
    assert desired_state(p, utc(2027, 12, 23, 12)) == "hibernated"
    # Epiphany (6 Jan) is a holiday in Bavaria, not in Berlin.
    assert desired_state(p, utc(2028, 1, 6, 12)) == "hibernated"


def test_holiday_with_cron() -> None:
    p = policy(
        "    schedules: [{awake: '0 8 * * 1-5', hibernate: '0 20 * * 1-5'}]\n"
        "    holidays: {dates: ['2027-03-03']}\n"
    )
    # Wednesday 3 March: no awake at 08:00; the cluster was hibernated at 20:00 the day before,
    # so nothing at midnight either; Thursday's 08:00 wakes it.
    assert pairs(transitions(p, utc(2027, 3, 2, 12), utc(2027, 3, 4, 12))) == [
        ("hibernate", utc(2027, 3, 2, 20)),
        ("awake", utc(2027, 3, 4, 8)),
    ]
    # A holiday on a day the cluster is awake at midnight: hibernated at midnight, woken after.
    q = policy(
        "    schedules: [{awake: '0 0 * * 1'}, {hibernate: '0 0 * * 6'}]\n"
        "    holidays: {dates: ['2027-03-03']}\n"
    )
    assert pairs(transitions(q, utc(2027, 3, 2), utc(2027, 3, 5))) == [
        ("hibernate", utc(2027, 3, 3)),
        ("awake", utc(2027, 3, 4)),
    ]


def test_one_sided_cron() -> None:
    p = policy("    schedules: [{hibernate: '0 19 * * *'}]\n")
    assert pairs(transitions(p, utc(2027, 3, 1), utc(2027, 3, 2, 12))) == [
        ("hibernate", utc(2027, 3, 1, 19))
    ]
    assert desired_state(p, utc(2027, 3, 1, 20)) == "hibernated"


def test_each_transition_once_over_a_year() -> None:
    p = policy("    timezone: Europe/Berlin\n    awake: ['Mon-Fri 02:30-20:00']\n")
    start = utc(2027, 1, 1)
    whole = transitions(p, start, start + timedelta(days=365))
    pieces: list[Transition] = []
    at = start
    while at < start + timedelta(days=365):
        pieces += transitions(p, at, at + timedelta(hours=7))
        at += timedelta(hours=7)
    assert pieces == whole
    assert len(whole) == 2 * 261  # 261 weekdays in 2027, each one wake-up and one hibernation
    actions = [t.action for t in whole]
    assert actions == ["awake", "hibernate"] * 261


# --- validation and matching --------------------------------------------------------------


def test_validation_names_policy_and_field(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "policies:\n"
        "  - name: office\n    clusters: {names: [a]}\n    timezone: Mars/Olympus\n"
        "    awake: ['Mon 08:00-09:00']\n"
        "  - name: nightly\n    clusters: {names: [b]}\n"
        "    schedules: [{hibernate: 'not cron'}]\n"
    )
    with pytest.raises(PolicyError) as info:
        load_policy_file(path)
    text = str(info.value)
    assert "policy 'office', field timezone" in text and "Mars/Olympus" in text
    assert "policy 'nightly', field schedules.0.hibernate" in text
    with pytest.raises(PolicyError, match="either 'awake' windows or 'schedules'"):
        parse_policy_file("policies: [{name: x, clusters: {names: [a]}}]")
    with pytest.raises(PolicyError, match="field holidays"):
        parse_policy_file(
            "policies: [{name: x, clusters: {names: [a]}, awake: [Sat], holidays: {country: XX}}]"
        )
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy_file(tmp_path / "missing.yaml")


def test_conflicts_and_exclusions() -> None:
    pf = parse_policy_file(
        "policies:\n"
        "  - {name: dev, clusters: {names: ['dev-*'], exclude: ['dev-critical']}, awake: [Sat]}\n"
        "  - {name: special, clusters: {ids: ['id-2']}, awake: [Sun]}\n"
        "  - {name: eu, clusters: {names: ['*'], targets: [eu]}, awake: [Sun]}\n"
    )
    matches, conflicts = match_policies(
        pf,
        [
            ("cn", "id-1", "dev-a"),
            ("cn", "id-2", "dev-b"),
            ("cn", "id-3", "dev-critical"),
            ("cn", "id-4", "prod"),
            ("eu", "id-5", "prod-eu"),
        ],
    )
    assert matches[("cn", "id-1")].policy.name == "dev"
    assert matches[("cn", "id-3")].excluded
    assert ("cn", "id-4") not in matches
    assert matches[("eu", "id-5")].policy.name == "eu"
    assert [(c.cluster_id, c.policies) for c in conflicts] == [("id-2", ("dev", "special"))]
    assert "'dev' and 'special'" in conflicts[0].message()
