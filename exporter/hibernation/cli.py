"""Command-line pieces: ``cce-exporter plan`` and ``cce-exporter hibernate|awake CLUSTER``.

``exporter.cli`` owns the parser; it calls, for each sub-command::

    add_plan_arguments(parser)                 # plan [--days 7] [--from RFC3339] [--output ...]
    run_plan(args, settings) -> int
    add_action_arguments(parser)               # hibernate|awake CLUSTER [--until T] [--dry-run]
    run_action(args, settings, "hibernate") -> int

``plan --output json`` prints ``{"transitions": [{"cluster_id", "cluster", "policy", "action",
"at", "dry_run"}]}`` with ``at`` in RFC 3339 UTC, sorted by time, then cluster. Excluded clusters
and clusters in a policy conflict have no transitions (conflicts are reported on stderr).

The one-off action follows the same safety rules as the daemon (the cluster must be governed by a
policy, or ``--force`` given, and in the right phase), waits for the target phase printing each
phase change, and prints the outcome. Exit codes: 0 done (or dry run), 1 failed, 2 usage or
configuration error, 3 refused (not governed, wrong phase, unknown cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from exporter.cce.errors import CCEError
from exporter.cce.models import Cluster
from exporter.hibernation.controller import (
    ControllerTarget,
    HibernationController,
    MemoryStateStore,
    Outcome,
    StateStore,
)
from exporter.hibernation.hooks import parse_rfc3339
from exporter.hibernation.policy import PolicyError, PolicyFile, load_policy_file, match_policies
from exporter.hibernation.schedule import Action, transitions

if TYPE_CHECKING:
    from exporter.config import TargetConfig

__all__ = [
    "CommandSettings",
    "StateFileStore",
    "add_action_arguments",
    "add_plan_arguments",
    "compute_plan",
    "run_action",
    "run_plan",
]


class CommandSettings(Protocol):
    """What the commands need of the configuration (``exporter.config.Settings``)."""

    @property
    def policy_file(self) -> Path | str | None: ...
    @property
    def state_file(self) -> Path | str | None: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def targets(self) -> Sequence[TargetConfig]: ...


TargetFactory = Callable[[CommandSettings], Sequence[ControllerTarget]]


def _rfc3339(value: str) -> datetime:
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: The longest plan (``--days``): a year and a day.
MAX_DAYS = 366.0

ACTION_HELP = """\
Acts on one cluster now, named by name or ID, under the daemon's safety rules: only a cluster a
policy selects, only from the right phase (hibernate from Available, awake from Hibernation), and
waits for the target phase. --force also acts on a cluster no policy selects (no policy file
needed): a one-off, which no schedule follows, said so in the output. --until keeps the state
until then as an override in the state file (CCE_EXPORTER_STATE_FILE): it is refused without one.
A daemon that is running with the same state file takes the override in within seconds and keeps
it (the file's override wins over the daemon's older one for that cluster)."""


def _days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days") from None
    if not 0 < days <= MAX_DAYS:  # also refuses NaN
        raise argparse.ArgumentTypeError(
            f"{value!r}: the number of days must be more than 0 and at most {MAX_DAYS:g}"
        )
    return days


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--days", type=_days, default=7.0, help="how far ahead, more than 0 (default 7)"
    )
    parser.add_argument(
        "--from",
        dest="start",
        type=_rfc3339,
        default=None,
        metavar="RFC3339",
        help="start instead of now (e.g. 2027-03-26T00:00:00Z)",
    )
    parser.add_argument("--output", choices=("table", "json"), default="table")


def add_action_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ACTION_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("cluster", metavar="CLUSTER", help="cluster name or ID")
    parser.add_argument(
        "--until",
        type=_rfc3339,
        default=None,
        metavar="RFC3339",
        help="also keep it in that state until then (an override kept in the state file)",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")
    parser.add_argument(
        "--force",
        action="store_true",
        help="also act on a cluster no policy selects (a one-off); works without a policy file",
    )


class StateFileStore:
    """The ``hibernation`` section of the exporter's state file, read and written in place;
    a running daemon's changes to the file since it was read are kept (``StateFile``)."""

    def __init__(self, path: Path, section: str = "hibernation") -> None:
        from exporter.collect.statefile import StateFile

        self.file = StateFile(path)
        self.section = section

    def load(self) -> Any:
        return self.file.load().get(self.section)

    def save(self, value: Any) -> None:
        self.file.save_section(self.section, value)


def _settings_targets(settings: CommandSettings) -> list[ControllerTarget]:
    """Clients for the configured targets, as the collector builds them."""
    from prometheus_client import CollectorRegistry

    from exporter.cce.factory import build_client
    from exporter.cce.instrumentation import ApiMetrics

    metrics = ApiMetrics(CollectorRegistry())
    return [
        ControllerTarget(
            name=t.name,
            client=build_client(t, metrics),
            project_id=t.project_id or "",
            labels=dict(t.labels),
        )
        for t in settings.targets
    ]


async def _resolve_projects(targets: Sequence[ControllerTarget], settings: CommandSettings) -> None:
    from prometheus_client import CollectorRegistry

    from exporter.cce.client import CCEClient
    from exporter.cce.factory import build_client
    from exporter.cce.instrumentation import ApiMetrics

    by_name = {t.name: t for t in settings.targets}
    for target in targets:
        if target.project_id:
            continue
        config = by_name[target.name]
        client = target.client
        assert isinstance(client, CCEClient)  # built by _settings_targets
        target.project_id = await client.resolve_project_id(config.project_name or "")
        await client.aclose()
        target.client = build_client(config, ApiMetrics(CollectorRegistry()), target.project_id)


def _load_policies(settings: CommandSettings, err: TextIO) -> PolicyFile | None:
    path = getattr(settings, "policy_file", None)
    if not path:
        print("no policy file configured (CCE_EXPORTER_POLICY_FILE or policy_file)", file=err)
        return None
    try:
        return load_policy_file(path)
    except PolicyError as exc:
        print(f"policy error: {exc}", file=err)
        return None


def compute_plan(
    policy_file: PolicyFile,
    clusters: dict[str, list[tuple[str, str]]],
    start: datetime,
    days: float,
    *,
    dry_run: bool = False,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Transitions in ``(start, start + days]`` of every governed, not excluded cluster
    (``clusters``: ``{target: [(cluster_id, name)]}``); and the conflict messages."""
    matches, conflicts = match_policies(
        policy_file, ((t, cid, name) for t, items in clusters.items() for cid, name in items)
    )
    end = start + timedelta(days=days)
    rows: list[dict[str, Any]] = []
    for (_, cluster_id), match in matches.items():
        if match.excluded:
            continue
        for t in transitions(match.policy, start, end):
            rows.append(
                {
                    "cluster_id": cluster_id,
                    "cluster": match.cluster,
                    "policy": match.policy.name,
                    "action": t.action,
                    "at": t.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "dry_run": bool(dry_run or match.policy.dry_run),
                    "_at": t.at,
                    "_tz": match.policy.tz,
                }
            )
    rows.sort(key=lambda r: (r["_at"], r["cluster"], r["cluster_id"]))
    return rows, [c.message() for c in conflicts]


async def _list_all(
    targets: Sequence[ControllerTarget],
) -> tuple[dict[str, list[Cluster]], list[str]]:
    found: dict[str, list[Cluster]] = {}
    errors: list[str] = []
    for target in targets:
        try:
            found[target.name] = await target.client.list_clusters()
        except CCEError as exc:
            errors.append(f"target {target.name}: {exc}")
    return found, errors


async def _close(targets: Sequence[ControllerTarget]) -> None:
    for target in targets:
        close = getattr(target.client, "aclose", None)
        if close is not None:
            await close()


def run_plan(
    args: argparse.Namespace,
    settings: CommandSettings,
    *,
    targets: TargetFactory | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``cce-exporter plan``; ``targets`` (tests) replaces the clients built from settings."""
    out = out or sys.stdout
    err = err or sys.stderr
    policy_file = _load_policies(settings, err)
    if policy_file is None:
        return 2
    start = args.start or datetime.now(UTC)

    async def work() -> tuple[dict[str, list[Cluster]], list[str], dict[tuple[str, str], str]]:
        built = list((targets or _settings_targets)(settings))
        try:
            if targets is None:
                await _resolve_projects(built, settings)
            listed, errors = await _list_all(built)
        finally:
            await _close(built)
        phases = {(t, c.id or ""): c.phase or "" for t, items in listed.items() for c in items}
        return listed, errors, phases

    listed, errors, phases = asyncio.run(work())
    for error in errors:
        print(f"cannot list clusters: {error}", file=err)
    clusters = {
        t: [(c.id or "", c.name or "") for c in items if c.id] for t, items in listed.items()
    }
    dry_run = bool(getattr(settings, "dry_run", False))
    rows, conflicts = compute_plan(policy_file, clusters, start, args.days, dry_run=dry_run)
    for message in conflicts:
        print(f"policy conflict: {message}", file=err)
    if args.output == "json":
        clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        print(json.dumps({"transitions": clean}, indent=2), file=out)
    else:
        _print_table(rows, phases, out)
    return 1 if errors and not listed else 0


def _print_table(
    rows: list[dict[str, Any]], phases: dict[tuple[str, str], str], out: TextIO
) -> None:
    phase_by_id = {cid: phase for (_, cid), phase in phases.items()}
    header = ("CLUSTER", "POLICY", "NOW", "ACTION", "LOCAL TIME", "UTC")
    table = [header]
    for r in rows:
        local = r["_at"].astimezone(r["_tz"]).strftime("%a %Y-%m-%d %H:%M %Z")
        table.append(
            (
                r["cluster"],
                r["policy"] + (" (dry run)" if r["dry_run"] else ""),
                phase_by_id.get(r["cluster_id"], ""),
                r["action"],
                local,
                r["at"],
            )
        )
    if len(table) == 1:
        print("no transitions in that period", file=out)
        return
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print(
            "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=out
        )
    if any(r["dry_run"] for r in rows):
        print(
            "(dry run): the policy only computes and logs its actions; nothing is called", file=out
        )


def _action_policies(
    args: argparse.Namespace,
    settings: CommandSettings,
    action: Action,
    store: StateStore | None,
    err: TextIO,
    poll_seconds: float | None,
) -> PolicyFile | None:
    """The policies a one-off action runs under (none needed with ``--force``; ``poll_seconds``
    replaces theirs); None, said on ``err``, when the command cannot run (no or bad policy
    file, ``--until`` without a state file)."""
    if getattr(args, "force", False) and not getattr(settings, "policy_file", None):
        policy_file: PolicyFile | None = PolicyFile()
    else:
        policy_file = _load_policies(settings, err)
    if policy_file is None:
        if not getattr(settings, "policy_file", None):
            print("(use --force to act on a cluster no policy selects)", file=err)
        return None
    if args.until is not None and store is None and not getattr(settings, "state_file", None):
        print(
            f"{action}: --until needs a state file (CCE_EXPORTER_STATE_FILE) to keep the override "
            "in: without one it would be lost when this command ends; for a running daemon, use "
            "its /hooks/ endpoints",
            file=err,
        )
        return None
    if poll_seconds is not None:
        options = policy_file.controller.model_copy(update={"poll_seconds": poll_seconds})
        policy_file = policy_file.model_copy(update={"controller": options})
    return policy_file


def run_action(
    args: argparse.Namespace,
    settings: CommandSettings,
    action: Action,
    *,
    targets: TargetFactory | None = None,
    store: StateStore | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    poll_seconds: float | None = None,
) -> int:
    """``cce-exporter hibernate|awake CLUSTER``: one action now, followed to the target phase."""
    out = out or sys.stdout
    err = err or sys.stderr
    force = bool(getattr(args, "force", False))
    policy_file = _action_policies(args, settings, action, store, err, poll_seconds)
    if policy_file is None:
        return 2
    if store is None:
        state_file = getattr(settings, "state_file", None)
        store = StateFileStore(Path(state_file)) if state_file else MemoryStateStore()
    dry_run = bool(args.dry_run or getattr(settings, "dry_run", False))
    started = time.monotonic()

    def progress(phase: str) -> None:
        print(
            f"  {time.monotonic() - started:6.0f}s  {args.cluster}: {phase or 'unknown'}",
            file=out,
            flush=True,
        )

    async def work() -> int:
        built = list((targets or _settings_targets)(settings))
        controller = HibernationController(policy_file, built, store=store, dry_run=dry_run)
        try:
            if targets is None:
                await _resolve_projects(built, settings)
            errors = await controller.refresh()
            for name, error in errors.items():
                print(f"cannot list clusters of target {name}: {error}", file=err)
            found = controller.find(args.cluster)
            if found is None:
                print(f"{action}: no cluster named or with ID {args.cluster!r}", file=err)
                return 3
            cluster_id = found[1].id or ""
            print(
                f"{action} {found[1].name} ({cluster_id}), now {found[1].phase}",
                file=out,
                flush=True,
            )
            governed = (found[0], cluster_id) in controller.matches
            if force and not governed:
                print(
                    f"--force: no policy selects {found[1].name}; acting on it once "
                    "(no schedule follows)",
                    file=out,
                    flush=True,
                )
            outcome = await controller.request(
                cluster_id,
                action,
                until=args.until,
                reason="command line",
                source="cli",
                dry_run=dry_run,
                wait=True,
                progress=progress,
                force=force,
            )
            await controller.wait_idle()
        finally:
            await controller.close()
            await _close(built)
        print(_outcome_line(args, action, outcome), file=out)
        return {"success": 0, "dry_run": 0, "failed": 1}.get(outcome.result, 3)

    return asyncio.run(work())


def _outcome_line(args: argparse.Namespace, action: Action, outcome: Outcome) -> str:
    """The command's last line: the outcome, why, and the override kept."""
    line = f"{action} {outcome.cluster or args.cluster}: {outcome.result}"
    if outcome.reason:
        line += f" ({outcome.reason})"
    if outcome.result == "skipped" and "no policy selects" in outcome.reason:
        line += "; use --force to act on it anyway"
    kept = outcome.result in ("success", "started", "dry_run", "skipped")
    if args.until is not None and kept and not outcome.reason.startswith("--until"):
        state = "hibernated" if action == "hibernate" else "awake"
        line += f"; kept {state} until {args.until.isoformat()}"
    return line
