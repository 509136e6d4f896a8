"""Planning: what the policies, the overrides and the clock want, as pure functions.

Nothing here calls an API, reads a file or keeps state: each function takes a policy, the
override of one cluster (a state-file entry, see :class:`exporter.collect.statefile.Override`)
and instants, and answers. The controller acts on the answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from exporter.hibernation.policy import Conflict, Match, Policy
from exporter.hibernation.schedule import (
    Action,
    State,
    Transition,
    desired_state,
    next_transitions,
    transitions,
)

__all__ = [
    "ACTIONS",
    "ACTION_FOR",
    "SOURCE",
    "STATE_OF",
    "TARGET",
    "TIMER_HORIZON",
    "TRANSIT",
    "conflict_view",
    "due_transition",
    "effective_desired",
    "keep_blocks",
    "next_due",
    "override_view",
    "plan_row",
    "plan_view",
    "skip_applies",
]

ACTIONS: tuple[Action, ...] = ("hibernate", "awake")
#: The phase an action needs, the phase it goes through, the phase it ends in.
SOURCE = {"hibernate": "Available", "awake": "Hibernation"}
TRANSIT = {"hibernate": "Hibernating", "awake": "Awaking"}
TARGET = {"hibernate": "Hibernation", "awake": "Available"}
STATE_OF: dict[str, State] = {"hibernate": "hibernated", "awake": "awake"}
ACTION_FOR: dict[str, Action] = {"hibernated": "hibernate", "awake": "awake"}
#: How far ahead the timer looks for the next transition.
TIMER_HORIZON = timedelta(days=2)

Override = Mapping[str, Any]


def ts(at: datetime) -> float:
    return at.timestamp()


def dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def iso(seconds: float) -> str:
    return dt(seconds).isoformat().replace("+00:00", "Z")


def wrong_phase(phase: str, action: str) -> str:
    return f"the cluster is {phase or 'in an unknown phase'}; {action} needs {SOURCE[action]}"


def _keep_until(override: Override | None) -> float | None:
    if override and override.get("kind") == "keep" and override.get("until") is not None:
        return float(override["until"])
    return None


def due_transition(
    policy: Policy, override: Override | None, since: float, now: float
) -> Transition | None:
    """The latest transition in ``(since, now]``: the policy's, or the end of a keep override
    when the policy then wants the other state (and no later transition says otherwise)."""
    found = transitions(policy, dt(since), dt(now))
    due = found[-1] if found else None
    until = _keep_until(override)
    if override is not None and until is not None and since < until <= now:
        wanted = desired_state(policy, dt(until))
        if wanted and wanted != override.get("state") and (due is None or ts(due.at) < until):
            due = Transition(dt(until), ACTION_FOR[wanted])
    return due


def skip_applies(override: Override | None, at: float) -> bool:
    """Whether a skip override, made before the transition at ``at``, consumes it."""
    if not override or override.get("kind") != "skip":
        return False
    return float(override.get("created", 0)) < at


def keep_blocks(override: Override | None, action: str, now: float) -> str | None:
    """Why a keep override in force stops ``action`` now (None: it does not)."""
    if not override or override.get("kind") != "keep":
        return None
    if override.get("state") == STATE_OF[action]:
        return None
    until = override.get("until")
    if until is not None and float(until) <= now:
        return None
    return (
        f"override keeps it {override.get('state')} until "
        f"{iso(float(until)) if until else 'removed'}"
    )


def effective_desired(policy: Policy, override: Override | None, now: float) -> State | None:
    """What is wanted now: a keep override in force wins over the policy."""
    if override and override.get("kind") == "keep" and override.get("state") in STATE_OF.values():
        until = override.get("until")
        if until is None or float(until) > now:
            state: State = override["state"]
            return state
    return desired_state(policy, dt(now))


def override_view(override: Override | None) -> dict[str, Any] | None:
    if not override:
        return None
    until = override.get("until")
    return {
        "kind": "skip_next" if override.get("kind") == "skip" else f"keep_{override.get('state')}",
        "until": iso(float(until)) if until is not None else None,
        "reason": override.get("reason", ""),
    }


def next_due(matches: Iterable[Match], overrides: Iterable[Any], now: float) -> float | None:
    """The next instant after ``now`` at which a tick has something to do: a transition of a
    policy that governs a cluster, or the end of a keep override."""
    due: float | None = None
    seen: set[str] = set()
    for match in matches:
        if match.excluded or match.policy.name in seen:
            continue
        seen.add(match.policy.name)
        upcoming = next_transitions(match.policy, dt(now), TIMER_HORIZON)
        if upcoming:
            at = ts(upcoming[0].at)
            due = at if due is None else min(due, at)
    for override in overrides:
        until = override.get("until") if isinstance(override, dict) else None
        if isinstance(until, int | float) and until > now:
            due = float(until) if due is None else min(due, float(until))
    return due


def plan_row(
    ident: tuple[str, str],
    match: Match,
    *,
    phase: str | None,
    dry_run: bool,
    override: Override | None,
    history: Iterable[Any],
    now: float,
    days: float,
) -> dict[str, Any]:
    """A governed cluster's policy, phase, desired state, override and next transitions (a skip
    override marks the transition it will skip)."""
    nxt = next_transitions(match.policy, dt(now), timedelta(days=days))
    skip_at = None
    if override and override.get("kind") == "skip":
        skip_at = next((t.at for t in nxt if ts(t.at) > float(override["created"])), None)
    return {
        "target": ident[0],
        "cluster_id": ident[1],
        "cluster": match.cluster,
        "policy": match.policy.name,
        "timezone": match.policy.timezone,
        "dry_run": match.policy.dry_run or dry_run,
        "excluded": match.excluded,
        "phase": phase,
        "desired": effective_desired(match.policy, override, now),
        "policy_desired": desired_state(match.policy, dt(now)),
        "override": override_view(override),
        "history": [
            {**h, "at": iso(float(h["at"]))}
            if isinstance(h, dict) and isinstance(h.get("at"), int | float)
            else h
            for h in history
        ],
        "next": [
            {
                "action": t.action,
                "at": iso(ts(t.at)),
                **({"skipped": True} if t.at == skip_at else {}),
            }
            for t in nxt
        ],
    }


def plan_view(
    matches: Mapping[tuple[str, str], Match],
    conflicts: Iterable[Conflict],
    *,
    phases: Mapping[tuple[str, str], str | None],
    state: Mapping[str, Any],
    dry_run: bool,
    now: float,
    days: float,
) -> dict[str, Any]:
    """The plan: every governed cluster (:func:`plan_row`, the last five history entries) and
    the policy conflicts."""
    rows = []
    for ident, match in sorted(matches.items()):
        k = f"{ident[0]}/{ident[1]}"
        rows.append(
            plan_row(
                ident,
                match,
                phase=phases[ident],
                dry_run=dry_run,
                override=state["overrides"].get(k),
                history=state["history"].get(k, [])[-5:],
                now=now,
                days=days,
            )
        )
    return {"now": iso(now), "clusters": rows, "conflicts": [conflict_view(c) for c in conflicts]}


def conflict_view(conflict: Conflict) -> dict[str, Any]:
    return {
        "target": conflict.target,
        "cluster_id": conflict.cluster_id,
        "cluster": conflict.cluster,
        "policies": list(conflict.policies),
        "message": conflict.message(),
    }
