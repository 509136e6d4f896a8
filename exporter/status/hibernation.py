"""The console's view of the hibernation controller: one row per governed cluster, and the
problems (failed actions, pending transitions, policy conflicts) it shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from exporter.status.view import (
    DAY,
    PENDING_FROM,
    ActionRecord,
    At,
    HibernationRow,
    NextTransition,
    OverrideView,
    Problem,
    _at,
)

# --- hibernation -------------------------------------------------------------------------------


def _hibernation(controller: Any, now: float) -> tuple[list[HibernationRow], list[Problem], int]:
    """Rows per governed cluster, the problems they show, and actions in the last 24 h."""
    rows: list[HibernationRow] = []
    problems: list[Problem] = []
    recent = 0
    by_name = sorted(controller.matches.items(), key=lambda kv: (kv[1].cluster, kv[0]))
    for ident, match in by_name:
        history = controller.state["history"].get(controller.key(*ident)) or []
        row = _row(controller, ident, match, history, now)
        rows.append(row)
        problems += _row_problems(row, now)
        recent += _recent(history, now)
    for conflict in controller.conflicts:
        problems.append(
            Problem(
                "policy_conflict",
                "warning",
                conflict.target,
                conflict.message(),
                conflict.cluster_id,
                conflict.cluster,
            )
        )
    return rows, problems, recent


def _row(
    controller: Any, ident: tuple[str, str], match: Any, history: list[Any], now: float
) -> HibernationRow:
    """One governed cluster: its policy, desired and actual state, next transition, override."""
    from exporter.hibernation.schedule import desired_state

    key = controller.key(*ident)
    cluster = controller.clusters.get(ident)
    phase = (cluster.phase if cluster is not None else None) or ""
    policy = match.policy
    now_dt = datetime.fromtimestamp(now, UTC)
    override, keep_state, skip_created = _override(controller.state["overrides"].get(key), now)
    policy_desired = desired_state(policy, now_dt)
    desired = keep_state if keep_state in ("awake", "hibernated") else policy_desired
    return HibernationRow(
        target=ident[0],
        cluster_id=ident[1],
        cluster=match.cluster,
        policy=policy.name,
        timezone=policy.timezone,
        dry_run=bool(policy.dry_run or controller.dry_run),
        excluded=match.excluded,
        phase=phase,
        desired=desired,
        policy_desired=policy_desired,
        actual={"Available": "awake", "Hibernation": "hibernated"}.get(phase, phase or "unknown"),
        pending=not match.excluded and phase in PENDING_FROM.get(desired or "", ()),
        next=_next_transition(policy, now_dt, skip_created),
        override=override,
        last_action=_last_action(history),
    )


def _override(raw: Any, now: float) -> tuple[OverrideView | None, Any, float | None]:
    """The override's view, the state a live ``keep`` holds, when a ``skip`` was made."""
    if not isinstance(raw, dict):
        return None, None, None
    keep_state = None
    skip_created = None
    until = raw.get("until")
    until_at = _at(float(until)) if isinstance(until, int | float) else None
    kind = "skip_next" if raw.get("kind") == "skip" else f"keep_{raw.get('state')}"
    override = OverrideView(kind, until_at, str(raw.get("reason", ""))[:200])
    if raw.get("kind") == "keep" and (until_at is None or until_at > now):
        keep_state = raw.get("state")
    if raw.get("kind") == "skip":
        skip_created = float(raw.get("created", 0.0))
    return override, keep_state, skip_created


def _next_transition(
    policy: Any, now_dt: datetime, skip_created: float | None
) -> NextTransition | None:
    from exporter.hibernation.schedule import next_transitions

    upcoming = next_transitions(policy, now_dt, timedelta(days=8))
    if not upcoming:
        return None
    first = upcoming[0]
    skipped = skip_created is not None and first.at.timestamp() > skip_created
    return NextTransition(
        first.action,
        At(first.at.timestamp()),
        first.at.astimezone(policy.tz).strftime("%a %Y-%m-%d %H:%M %Z"),
        skipped,
    )


def _last_action(history: list[Any]) -> ActionRecord | None:
    if not history or not isinstance(history[-1], dict):
        return None
    h = history[-1]
    at = h.get("at")
    return ActionRecord(
        _at(float(at)) if isinstance(at, int | float) else None,
        str(h.get("action", "")),
        str(h.get("result", "")),
        str(h.get("reason", "")),
        str(h.get("source", "")),
    )


def _recent(history: list[Any], now: float) -> int:
    """Actions (not skips) in the last 24 h."""
    return sum(
        1
        for h in history
        if isinstance(h, dict)
        and isinstance(h.get("at"), int | float)
        and h["at"] >= now - DAY
        and h.get("result") != "skipped"
    )


def _row_problems(row: HibernationRow, now: float) -> list[Problem]:
    """A pending transition, and a recent failed action."""
    problems: list[Problem] = []
    last = row.last_action
    if row.pending:
        verb = "hibernation" if row.desired == "hibernated" else "wake-up"
        how = " (dry run: nothing will be called)" if row.dry_run else ""
        problems.append(
            Problem(
                "hibernation_pending",
                "info",
                row.target,
                f"{verb} pending: policy {row.policy} wants it {row.desired}, "
                f"the cluster is {row.phase}{how}",
                row.cluster_id,
                row.cluster,
                subject=row.policy,
            )
        )
    if last is not None and last.result == "failed" and last.at and last.at >= now - DAY:
        problems.append(
            Problem(
                "hibernation_failed",
                "critical" if last.action == "awake" else "warning",
                row.target,
                f"{last.action} failed: {last.reason}",
                row.cluster_id,
                row.cluster,
                subject=row.policy,
                since=last.at,
            )
        )
    return problems
