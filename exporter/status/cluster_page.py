"""The status console's page of one cluster (``GET /cluster``), escaping every value."""

from __future__ import annotations

from collections.abc import Sequence

from exporter.status.html import (
    _COLLECTION_HEADERS,
    _age,
    _ago,
    _badge,
    _collection_rows,
    _dash,
    _head,
    _hib_table,
    _phase,
    _problems,
    _quotas,
    _table,
    _utc,
    e,
    format_age,
)
from exporter.status.view import ADDON_UNHEALTHY, NODE_ABNORMAL, At, ClusterDetail

__all__ = ["render_cluster"]


def render_cluster(detail: ClusterDetail, *, refresh: bool = True) -> str:
    now = float(detail.generated_at)
    parts = [
        _header(detail, now, detail.refresh_seconds if refresh else None),
        _problems(detail.problems, len(detail.problems), now),
    ]
    if detail.hibernation is not None:
        parts.append(
            _section(
                "hibernation",
                "Hibernation",
                _hib_table(
                    "The policy that selects this cluster",
                    [detail.hibernation],
                    now,
                    label="Hibernation of this cluster",
                    link=False,
                ),
            )
        )
    parts += [_nodes(detail, now), _pools(detail), _addons(detail), _jobs(detail, now)]
    parts.append(
        _section(
            "quotas",
            "Quota context",
            f"<p class=meta>Quotas are per project: these are target {e(detail.target.name)}'s.</p>"
            + _quotas(detail.quotas),
        )
    )
    if detail.collection_errors:
        parts.append(
            _table_section(
                "collections",
                "Collection failures",
                "Collections of this cluster that failed",
                _COLLECTION_HEADERS,
                _collection_rows(detail.collection_errors, now),
                "Collection failures table",
            )
        )
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _section(anchor: str, heading: str, body: str) -> str:
    return f"<section aria-labelledby={anchor}><h2 id={anchor}>{heading}</h2>{body}</section>"


def _table_section(
    anchor: str, heading: str, caption: str, headers: Sequence[str], rows: list[str], label: str
) -> str:
    return _section(anchor, heading, _table(caption, headers, rows, label=label))


def _header(detail: ClusterDetail, now: float, interval: int | None) -> str:
    c = detail.cluster
    why = " ".join(x for x in (detail.reason, detail.message) if x)
    return "".join(
        [
            _head(f"{c.name}: cce-exporter status", interval),
            "<main><header>",
            '<p class=meta><a href="./">&larr; all clusters</a></p>',
            f"<h1>Cluster {e(c.name)}</h1>",
            f"<p class=meta><code>{e(c.id)}</code> &middot; target {e(detail.target.name)} "
            f"(project <code>{e(detail.target.project_id)}</code>)</p>",
            f"<p>{_phase(c.phase)} "
            + (f"for {e(format_age(now - c.phase_since))} " if c.phase_since is not None else "")
            + (f"&middot; {e(why)} " if why else "")
            + f"&middot; flavor {_dash(c.flavor)} &middot; version {_dash(c.version)}</p>",
            f"<p class=meta>page generated {e(_utc(At(now)))}; "
            + (f"refreshes every {interval} s" if interval else "automatic refresh off")
            + "</p></header>",
        ]
    )


def _nodes(detail: ClusterDetail, now: float) -> str:
    rows = [
        f"<tr><td>{e(n.name)}<br><code class=muted>{e(n.id)}</code></td>"
        f"<td>{_node_phase(n.phase)}</td><td class=num>{_age(n.phase_since, now)}</td>"
        f"<td>{_dash(n.flavor)}</td><td>{_dash(n.az)}</td><td>{_dash(n.private_ip)}</td>"
        f"<td><code>{_dash(n.nodepool_id)}</code></td></tr>"
        for n in detail.nodes
    ]
    shown = len(detail.nodes)
    more = f" (first {shown} shown)" if detail.nodes_total > shown else ""
    return _table_section(
        "nodes",
        f"Nodes ({detail.nodes_total})",
        "Nodes, those not Active first" + more,
        ("node", "phase", "in phase for", "flavor", "zone", "private IP", "node pool"),
        rows,
        "Nodes table",
    )


def _pools(detail: ClusterDetail) -> str:
    rows = [
        f"<tr><td>{e(p.name)}</td><td>{_pool_phase(p.phase)}</td>"
        f"<td class=num>{_dash(p.nodes)}</td>"
        f"<td>{_dash(p.flavor)}</td><td>{e(p.autoscaling)}</td>"
        f"<td>{_dash(', '.join(p.blocked_by))}</td></tr>"
        for p in detail.nodepools
    ]
    return _table_section(
        "pools",
        f"Node pools ({len(detail.nodepools)})",
        "Node pools",
        ("pool", "phase", "nodes", "flavor", "autoscaling", "blocked by"),
        rows,
        "Node pools table",
    )


def _addons(detail: ClusterDetail) -> str:
    rows = [
        f"<tr><td>{e(a.name)}</td><td>{_dash(a.version)}</td><td>{_addon_status(a.status)}</td>"
        f"<td>{e(' '.join(x for x in (a.reason, a.message) if x))}</td></tr>"
        for a in detail.addons
    ]
    return _table_section(
        "addons",
        f"Add-ons ({len(detail.addons)})",
        "Add-ons",
        ("add-on", "version", "status", "reason"),
        rows,
        "Add-ons table",
    )


def _jobs(detail: ClusterDetail, now: float) -> str:
    rows = [
        f"<tr><td><code>{e(j.id)}</code></td><td>{_dash(j.type)}</td><td>{_job_phase(j.phase)}</td>"
        f"<td>{_dash(j.resource)}</td><td>{_ago(j.created, now)}</td>"
        f"<td class=num>{'&ndash;' if j.duration is None else e(format_age(j.duration))}</td>"
        f"<td>{_dash(j.reason)}</td></tr>"
        for j in detail.jobs
    ]
    return _table_section(
        "jobs",
        f"CCE jobs ({len(detail.jobs)})",
        "CCE jobs the exporter follows for this cluster",
        ("job", "type", "phase", "resource", "created", "duration", "reason"),
        rows,
        "Jobs table",
    )


def _node_phase(phase: str) -> str:
    css = "healthy" if phase == "Active" else "failing" if phase in NODE_ABNORMAL else "other"
    return _badge(phase or "unknown", css)


def _pool_phase(phase: str) -> str:
    css = (
        "healthy" if phase == "Normal" else "failing" if phase in ("SoldOut", "Error") else "other"
    )
    return _badge(phase or "unknown", css)


def _addon_status(status: str) -> str:
    css = (
        "healthy"
        if status in ("running", "available")
        else "failing"
        if status in ADDON_UNHEALTHY
        else "other"
    )
    return _badge(status or "unknown", css)


def _job_phase(phase: str) -> str:
    css = {"Success": "healthy", "Failed": "failing", "Running": "transitioning"}.get(
        phase, "other"
    )
    return _badge(phase or "unknown", css)
