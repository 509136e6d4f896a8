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
    from exporter.hibernation.schedule import desired_state, next_transitions

    rows: list[HibernationRow] = []
    problems: list[Problem] = []
    recent = 0
    state = controller.state
    now_dt = datetime.fromtimestamp(now, UTC)
    by_name = sorted(controller.matches.items(), key=lambda kv: (kv[1].cluster, kv[0]))
    for ident, match in by_name:
        key = controller.key(*ident)
        cluster = controller.clusters.get(ident)
        phase = (cluster.phase if cluster is not None else None) or ""
        policy = match.policy
        dry_run = bool(policy.dry_run or controller.dry_run)
        raw = state["overrides"].get(key)
        override = None
        keep_state = None
        skip_created = None
        if isinstance(raw, dict):
            until = raw.get("until")
            until_at = _at(float(until)) if isinstance(until, int | float) else None
            kind = "skip_next" if raw.get("kind") == "skip" else f"keep_{raw.get('state')}"
            override = OverrideView(kind, until_at, str(raw.get("reason", ""))[:200])
            if raw.get("kind") == "keep" and (until_at is None or until_at > now):
                keep_state = raw.get("state")
            if raw.get("kind") == "skip":
                skip_created = float(raw.get("created", 0.0))
        policy_desired = desired_state(policy, now_dt)
        desired = keep_state if keep_state in ("awake", "hibernated") else policy_desired
        actual = {"Available": "awake", "Hibernation": "hibernated"}.get(phase, phase or "unknown")
        upcoming = next_transitions(policy, now_dt, timedelta(days=8))
        nxt = None
        if upcoming:
            first = upcoming[0]
            skipped = skip_created is not None and first.at.timestamp() > skip_created
            nxt = NextTransition(
                first.action,
                At(first.at.timestamp()),
                first.at.astimezone(policy.tz).strftime("%a %Y-%m-%d %H:%M %Z"),
                skipped,
            )
        history = state["history"].get(key) or []
        last = None
        if history and isinstance(history[-1], dict):
            h = history[-1]
            at = h.get("at")
            last = ActionRecord(
                _at(float(at)) if isinstance(at, int | float) else None,
                str(h.get("action", "")),
                str(h.get("result", "")),
                str(h.get("reason", "")),
                str(h.get("source", "")),
            )
        for h in history:
            if (
                isinstance(h, dict)
                and isinstance(h.get("at"), int | float)
                and h["at"] >= now - DAY
                and h.get("result") != "skipped"
            ):
                recent += 1
        pending = not match.excluded and phase in PENDING_FROM.get(desired or "", ())
        row = HibernationRow(
            target=ident[0],
            cluster_id=ident[1],
            cluster=match.cluster,
            policy=policy.name,
            timezone=policy.timezone,
            dry_run=dry_run,
            excluded=match.excluded,
            phase=phase,
            desired=desired,
            policy_desired=policy_desired,
            actual=actual,
            pending=pending,
            next=nxt,
            override=override,
            last_action=last,
        )
        rows.append(row)
        if pending:
            verb = "hibernation" if desired == "hibernated" else "wake-up"
            how = " (dry run: nothing will be called)" if dry_run else ""
            problems.append(
                Problem(
                    "hibernation_pending",
                    "info",
                    ident[0],
                    f"{verb} pending: policy {policy.name} wants it {desired}, "
                    f"the cluster is {phase}{how}",
                    ident[1],
                    match.cluster,
                    subject=policy.name,
                )
            )
        if last is not None and last.result == "failed" and last.at and last.at >= now - DAY:
            problems.append(
                Problem(
                    "hibernation_failed",
                    "critical" if last.action == "awake" else "warning",
                    ident[0],
                    f"{last.action} failed: {last.reason}",
                    ident[1],
                    match.cluster,
                    subject=policy.name,
                    since=last.at,
                )
            )
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
