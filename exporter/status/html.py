"""HTML of the status console: the overview (``GET /``) and one cluster (``GET /cluster``).

Plain server-rendered HTML and CSS, no script: the page reloads itself with
``<meta http-equiv="refresh">`` every collection interval. Every value that comes from the API,
the configuration or the request goes through :func:`e` (``html.escape``); links are built with
``urllib.parse.urlencode`` and escaped too. Built with the standard library: the pages are a few
tables, and f-strings with one escaping helper keep them in one readable place without a template
engine dependency.

Accessibility: every table has a caption and column headers with ``scope``, wide tables scroll
inside a focusable region (readable at 420 px), form fields have labels, and no state is told by
colour alone (phases, severities and results are words; colour only repeats them).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from urllib.parse import urlencode

from exporter.status.view import (
    GROUPS,
    At,
    Cause,
    ClusterRow,
    Collection,
    HibernationRow,
    Problem,
    QuotaRow,
    StatusModel,
    phase_group,
)

__all__ = ["cluster_href", "filter_clusters", "format_age", "render_status"]

MAX_QUERY = 100  # characters of a filter value kept
#: Up to this many problems of one kind are listed as they are; more fold under a summary line.
GROUP_OPEN = 3
KIND_LABELS = {
    "cluster_failing": "failing clusters",
    "cluster_stuck": "clusters stuck in a transition",
    "cluster_condition": "cluster certificate problems",
    "cluster_locked": "locked clusters",
    "node_abnormal": "abnormal nodes",
    "nodepool_cannot_scale": "node pools that cannot scale",
    "addon_unhealthy": "unhealthy add-ons",
    "job_stuck": "stuck CCE jobs",
    "job_failed": "failed CCE jobs",
    "quota_exhausted": "quotas used up",
    "quota_near_limit": "quotas nearly used up",
    "collection_failed": "collection failures",
    "hibernation_failed": "failed hibernation actions",
    "policy_conflict": "clusters two policies select",
    "hibernation_pending": "pending hibernations or wake-ups",
}


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def format_age(seconds: float) -> str:
    """A short human duration: ``42 s``, ``5 min 3 s``, ``2 h 10 min``, ``3 d 4 h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s} s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} h {m} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def _utc(at: At) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(at: At | None, now: float, *, never: str = "never") -> str:
    if at is None:
        return f'<span class="muted">{e(never)}</span>'
    age = now - at
    text = f"{format_age(age)} ago" if age >= 0 else f"in {format_age(-age)}"
    return f'<time datetime="{e(at.iso())}" title="{e(_utc(at))}">{e(text)}</time>'


def _age(since: At | None, now: float) -> str:
    return "&ndash;" if since is None else e(format_age(now - since))


def _dash(value: object) -> str:
    return "&ndash;" if value is None or value == "" else e(value)


def cluster_href(target: str, cluster_id: str) -> str:
    """The relative link of a cluster's page (the console works behind a path prefix)."""
    return "cluster?" + urlencode({"target": target, "id": cluster_id})


def filter_clusters(rows: Sequence[ClusterRow], phase: str, name: str) -> list[ClusterRow]:
    """``phase``: a phase group (healthy, failing, ...) or an exact phase; ``name``: a
    case-insensitive part of the cluster's name or ID. Empty values do not filter."""
    phase = phase[:MAX_QUERY]
    needle = name[:MAX_QUERY].strip().lower()
    out = []
    for row in rows:
        if phase and phase not in (row.group, row.phase):
            continue
        if needle and needle not in row.name.lower() and needle not in row.id.lower():
            continue
        out.append(row)
    return out


# --- pieces ------------------------------------------------------------------------------------

_CSS = """
:root{--fg:#1f2328;--muted:#57606a;--line:#d0d7de;--head:#f6f8fa}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:80em;
padding:.8em;color:var(--fg);background:#fff}
a{color:#0550ae}
a:focus,.scroll:focus,input:focus,select:focus,button:focus{outline:3px solid #0969da;
outline-offset:1px}
h1{font-size:1.45em;margin:.2em 0}h2{font-size:1.2em;margin:1.4em 0 .4em;
border-bottom:1px solid var(--line);padding-bottom:.2em}h3{font-size:1.05em;margin:1em 0 .3em}
.muted,.meta{color:var(--muted)}.meta{margin:.2em 0}
.skip{position:absolute;left:-999px}.skip:focus{left:.5em;top:.5em;background:#fff;padding:.3em}
nav ul{list-style:none;padding:0;margin:.4em 0;display:flex;flex-wrap:wrap;gap:.2em 1em}
.counts{display:grid;grid-template-columns:repeat(auto-fit,minmax(10.5em,1fr));gap:.5em;
margin:.8em 0;padding:0}
.counts div{border:1px solid var(--line);border-radius:6px;padding:.4em .6em;margin:0}
.counts dt{color:var(--muted);font-size:.85em}.counts dd{margin:0;font-size:1.25em;font-weight:600}
.counts dd small{font-size:.7em;font-weight:400;color:var(--muted);display:block}
.scroll{overflow-x:auto;max-width:100%;border:1px solid var(--line);border-radius:6px;
margin:.3em 0 1em}
table{border-collapse:collapse;width:100%;min-width:36em}
caption{text-align:left;padding:.4em .6em;color:var(--muted);font-size:.9em}
th,td{text-align:left;padding:.35em .6em;border-top:1px solid var(--line);vertical-align:top}
th{background:var(--head);font-weight:600;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font-size:.9em;word-break:break-all}
.badge{display:inline-block;border-radius:10px;padding:0 .55em;font-weight:600;font-size:.9em;
white-space:nowrap;border:1px solid transparent}
.healthy,.ok,.awake{background:#dafbe1;color:#0a4d1f;border-color:#4ac26b}
.failing,.critical,.failed{background:#ffebe9;color:#82071e;border-color:#ff8182}
.transitioning,.warning{background:#fff8c5;color:#5c3b00;border-color:#d4a72c}
.hibernated,.info{background:#ddf4ff;color:#033d8b;border-color:#54aeff}
.other,.unknown,.pending,.skipped,.dry_run{background:#eef1f4;color:#3d444d;border-color:#afb8c1}
ul.problems{list-style:none;padding:0;margin:.3em 0}
ul.problems li{border:1px solid var(--line);border-left-width:6px;border-radius:6px;
padding:.25em .6em;margin:.25em 0;overflow-wrap:anywhere}
ul.problems li.sev-critical{border-left-color:#cf222e}
ul.problems li.sev-warning{border-left-color:#bf8700}
ul.problems li.sev-info{border-left-color:#0969da}
.cause{display:block;color:var(--muted);font-size:.9em}
details.group{border:1px solid var(--line);border-left-width:6px;border-radius:6px;
margin:.25em 0;padding:.25em .6em}
details.group.sev-warning{border-left-color:#bf8700}details.group.sev-info{border-left-color:#0969da}
details.group summary{cursor:pointer;font-weight:600}
details.group ul.problems li{border-left-width:1px}
form.filters{display:flex;flex-wrap:wrap;gap:.5em 1em;align-items:end;margin:.4em 0}
form.filters label{display:flex;flex-direction:column;font-size:.9em}
input,select,button{font:inherit;padding:.25em .4em}
.ok-msg{padding:.5em .7em;border:1px solid #4ac26b;border-radius:6px;background:#f0fff4}
footer{margin:2em 0 1em;color:var(--muted);font-size:.9em}
"""


def _head(title: str, refresh: int | None) -> str:
    meta = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"{meta}<title>{e(title)}</title><style>{_CSS}</style></head><body>"
        '<a class=skip href="#problems">Skip to problems</a>'
    )


def _badge(text: str, css: str) -> str:
    return f'<span class="badge {e(css)}">{e(text)}</span>'


def _phase(phase: str) -> str:
    return _badge(phase or "unknown", phase_group(phase) if phase else "unknown")


def _table(caption: str, headers: Sequence[str], rows: Iterable[str], *, label: str) -> str:
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in headers)
    return (
        f'<div class=scroll role=region aria-label="{e(label)}" tabindex=0>'
        f"<table><caption>{e(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _cause(cause: Cause | None) -> str:
    if cause is None:
        return ""
    parts = []
    if cause.status_code is not None:
        parts.append(f"HTTP {cause.status_code}")
    if cause.code:
        parts.append(f"API error code {cause.code}")
    if cause.api_message:
        parts.append(f"message: {cause.api_message}")
    if not parts:
        parts.append(f"{cause.error}: {cause.message}")
    return f"<span class=cause>cause: {e('; '.join(parts))}</span>"


def _problem_item(p: Problem, now: float, show_target: bool) -> str:
    where = ""
    if p.cluster_id:
        href = cluster_href(p.target, p.cluster_id)
        where = f'<a href="{e(href)}">{e(p.cluster or p.cluster_id)}</a>: '
    elif p.kind.startswith("quota"):
        where = '<a href="#quotas">quotas</a>: '
    elif p.kind == "collection_failed":
        where = '<a href="#collections">collections</a>: '
    since = f' <span class="muted">(since {_ago(p.since, now)})</span>' if p.since else ""
    target = f' <span class="muted">[target {e(p.target)}]</span>' if show_target else ""
    return (
        f'<li class="sev-{e(p.severity)}" data-kind="{e(p.kind)}">'
        f"{_badge(p.severity, p.severity)} {where}{e(p.summary)}{since}{target}"
        f"{_cause(p.cause)}</li>"
    )


def _problems(
    problems: Sequence[Problem], total: int, now: float, *, show_target: bool = False
) -> str:
    out = [f"<section aria-labelledby=problems><h2 id=problems>Problems ({total})</h2>"]
    if not problems:
        out.append(
            "<p class=ok-msg>No problems: every cluster, collection and schedule is fine.</p>"
        )
    else:
        # Problems of one kind stay together (they are sorted so); past GROUP_OPEN of a kind that
        # is not critical, they fold into a <details> that says how many there are.
        groups: dict[tuple[str, str], list[Problem]] = {}
        for p in problems:
            groups.setdefault((p.severity, p.kind), []).append(p)
        for (_, kind), items in groups.items():
            listed = "".join(_problem_item(p, now, show_target) for p in items)
            severity = items[0].severity
            if len(items) <= GROUP_OPEN or severity == "critical":
                out.append(f"<ul class=problems>{listed}</ul>")
                continue
            label = KIND_LABELS.get(kind, kind.replace("_", " "))
            out.append(
                f'<details class="group sev-{e(severity)}"><summary>{_badge(severity, severity)} '
                f"{len(items)} {e(label)}</summary><ul class=problems>{listed}</ul></details>"
            )
        if total > len(problems):
            out.append(f"<p class=muted>{total - len(problems)} more not shown.</p>")
    out.append("</section>")
    return "".join(out)


def _hib_rows(rows: Sequence[HibernationRow], now: float, *, link: bool = True) -> list[str]:
    out = []
    for r in rows:
        name = (
            f'<a href="{e(cluster_href(r.target, r.cluster_id))}">{e(r.cluster)}</a>'
            if link
            else e(r.cluster)
        )
        mode = _badge("dry run", "dry_run") if r.dry_run else ""
        if r.excluded:
            mode += " " + _badge("excluded", "other")
        desired = _dash(r.desired)
        if r.override is not None and r.desired != r.policy_desired:
            desired += f" <span class=muted>(policy: {_dash(r.policy_desired)})</span>"
        actual = _badge(
            r.actual, {"awake": "awake", "hibernated": "hibernated"}.get(r.actual, "transitioning")
        )
        if r.pending:
            actual += " " + _badge("pending", "pending")
        if r.next is None:
            nxt = '<span class="muted">none in 8 days</span>'
        else:
            nxt = (
                f"{e(r.next.action)} {_ago(r.next.at, now)}<br>{e(r.next.local)}"
                f'<br><span class="muted">{e(_utc(r.next.at))}</span>'
            )
            if r.next.skipped:
                nxt += " " + _badge("will be skipped", "skipped")
        if r.override is None:
            override = '<span class="muted">none</span>'
        else:
            until = (
                "until removed" if r.override.until is None else f"until {_utc(r.override.until)}"
            )
            override = f"{e(r.override.kind.replace('_', ' '))} {e(until)}"
            if r.override.reason:
                override += f'<br><span class="muted">{e(r.override.reason)}</span>'
        if r.last_action is None:
            last = '<span class="muted">none recorded</span>'
        else:
            a = r.last_action
            last = f"{e(a.action)} {_badge(a.result.replace('_', ' '), a.result)} {_ago(a.at, now)}"
            if a.reason:
                last += f'<br><span class="muted">{e(a.reason)}</span>'
            if a.source:
                last += f'<br><span class="muted">by {e(a.source)}</span>'
        out.append(
            f"<tr><td>{name}</td><td>{e(r.policy)} {mode}<br>"
            f'<span class="muted">{e(r.timezone)}</span></td>'
            f"<td>{desired}</td><td>{actual}</td><td>{nxt}</td><td>{override}</td>"
            f"<td>{last}</td></tr>"
        )
    return out


_HIB_HEADERS = (
    "cluster",
    "policy",
    "desired",
    "actual",
    "next transition",
    "override",
    "last action",
)


def _hib_table(
    caption: str, rows: Sequence[HibernationRow], now: float, *, label: str, link: bool = True
) -> str:
    return _table(caption, _HIB_HEADERS, _hib_rows(rows, now, link=link), label=label)


def _hibernation(model: StatusModel, now: float) -> str:
    out = ["<section aria-labelledby=hibernation><h2 id=hibernation>Hibernation</h2>"]
    if not model.hibernation_enabled:
        out.append("<p class=muted>No hibernation policy file is configured.</p>")
    elif not model.hibernation:
        out.append("<p class=muted>No cluster is selected by a policy (yet).</p>")
    else:
        dry = sum(1 for r in model.hibernation if r.dry_run)
        out.append(
            f"<p class=meta>{len(model.hibernation)} cluster(s) selected by a policy; "
            f"{sum(1 for r in model.hibernation if r.pending)} pending; "
            f"{dry} in dry run (nothing is called for them).</p>"
        )
        caption = "Clusters a policy selects: what it wants, what they are, what happens next"
        out.append(_hib_table(caption, model.hibernation, now, label="Hibernation table"))
    out.append("</section>")
    return "".join(out)


def _cluster_rows(rows: Sequence[ClusterRow], now: float) -> list[str]:
    out = []
    for c in rows:
        nodes = "&ndash;" if c.nodes_total is None else f"{_dash(c.nodes_active)} / {c.nodes_total}"
        pools = str(c.nodepools)
        if c.nodepools_cannot_scale:
            pools += f" ({c.nodepools_cannot_scale} cannot scale)"
        addons = str(c.addons)
        if c.addons_unhealthy:
            addons += f" ({c.addons_unhealthy} unhealthy)"
        problems = _badge(str(c.problems), "warning") if c.problems else "0"
        since = "&ndash;" if c.phase_since is None else e(format_age(now - c.phase_since))
        out.append(
            f'<tr><td><a href="{e(cluster_href(c.target, c.id))}">{e(c.name)}</a>'
            f"<br><code class=muted>{e(c.id)}</code></td><td>{_phase(c.phase)}</td>"
            f"<td class=num>{since}</td><td class=num>{nodes}</td><td>{e(pools)}</td>"
            f"<td>{e(addons)}</td><td class=num>{c.jobs_running}</td>"
            f"<td class=num>{problems}</td><td>{e(c.target)}</td></tr>"
        )
    return out


def _clusters(model: StatusModel, now: float, phase: str, name: str) -> str:
    phases = sorted({c.phase for c in model.clusters if c.phase})
    options = ['<option value="">all phases</option>']
    for value, text in [(g, f"group: {g}") for g in GROUPS] + [(p, p) for p in phases]:
        selected = " selected" if value == phase else ""
        options.append(f'<option value="{e(value)}"{selected}>{e(text)}</option>')
    rows = filter_clusters(model.clusters, phase, name)
    shown = f"{len(rows)} of {len(model.clusters)} cluster(s)"
    return (
        "<section aria-labelledby=clusters><h2 id=clusters>Clusters</h2>"
        '<form class=filters method=get action="./#clusters" role=search'
        ' aria-label="Filter clusters">'
        f"<label for=f-phase>Phase<select id=f-phase name=phase>{''.join(options)}</select></label>"
        f"<label for=f-name>Name or ID contains<input id=f-name name=q type=search "
        f'maxlength={MAX_QUERY} value="{e(name[:MAX_QUERY])}"></label>'
        '<button type=submit>Filter</button> <a href="./#clusters">clear</a></form>'
        f"<p class=meta>{e(shown)}</p>"
        + _table(
            "Clusters: select a name for its nodes, node pools, add-ons, jobs and quotas",
            (
                "cluster",
                "phase",
                "in phase for",
                "nodes active / total",
                "node pools",
                "add-ons",
                "jobs running",
                "problems",
                "target",
            ),
            _cluster_rows(rows, now),
            label="Clusters table",
        )
        + "</section>"
    )


def _quota_rows(quotas: Sequence[QuotaRow]) -> list[str]:
    out = []
    for q in quotas:
        ratio = "&ndash;" if q.ratio is None else f"{q.ratio:.0%}"
        state = ""
        if q.ratio is not None and q.ratio >= 1:
            state = " " + _badge("used up", "critical")
        elif q.ratio is not None and q.ratio >= 0.9:
            state = " " + _badge("nearly used up", "warning")
        where = " / ".join(x for x in (q.region, q.zone) if x)
        out.append(
            f"<tr><td>{e(q.key)}</td><td>{_dash(where)}</td><td class=num>{_dash(q.used)}</td>"
            f"<td class=num>{_dash(q.limit)}</td><td class=num>{ratio}{state}</td>"
            f"<td>{e(q.target)}</td></tr>"
        )
    return out


def _quotas(quotas: Sequence[QuotaRow]) -> str:
    if not quotas:
        return "<p class=muted>No quotas collected.</p>"
    return _table(
        "CCE quotas of each target",
        ("quota", "region / zone", "used", "limit", "usage", "target"),
        _quota_rows(quotas),
        label="Quotas table",
    )


def _collection_rows(collections: Sequence[Collection], now: float) -> list[str]:
    out = []
    for c in collections:
        if c.success is None:
            result = _badge("pending", "pending")
        elif c.success and c.errors:
            result = _badge(f"partial: {len(c.errors)} failed", "warning")
        elif c.success:
            result = _badge("ok", "ok")
        else:
            result = _badge("failed", "failed")
        causes = []
        for err in c.errors[:20]:
            who = f"{err.cluster or err.cluster_id}: " if err.cluster_id else ""
            causes.append(f"<li>{e(who)}{e(err.cause.message)}{_cause(err.cause)}</li>")
        if len(c.errors) > 20:
            causes.append(f"<li>{len(c.errors) - 20} more</li>")
        cause = f"<ul>{''.join(causes)}</ul>" if causes else _dash(c.error)
        duration = "&ndash;" if c.duration is None else f"{c.duration:.2f} s"
        out.append(
            f"<tr><td>{e(c.resource)}</td><td>{e(c.target)}</td>"
            f"<td class=num>{e(format_age(c.interval))}</td>"
            f"<td>{_ago(c.last_attempt, now)}</td><td>{_ago(c.last_success, now)}</td>"
            f"<td class=num>{duration}</td><td>{result}</td><td>{cause}</td></tr>"
        )
    return out


_COLLECTION_HEADERS = (
    "resource",
    "target",
    "every",
    "last attempt",
    "last success",
    "duration",
    "result",
    "error cause",
)


def _counts(model: StatusModel) -> str:
    c = model.counts
    g = c.clusters

    def item(title: str, value: object, note: str = "") -> str:
        small = f"<small>{e(note)}</small>" if note else ""
        return f"<div><dt>{e(title)}</dt><dd>{e(value)}{small}</dd></div>"

    return (
        '<dl class=counts aria-label="Summary counts">'
        + item("Clusters healthy", g.get("healthy", 0), f"of {c.clusters_total}")
        + item("Clusters transitioning", g.get("transitioning", 0))
        + item("Clusters hibernated", g.get("hibernated", 0))
        + item("Clusters failing", g.get("failing", 0))
        + (item("Clusters other", g["other"], "Empty or unknown") if g.get("other") else "")
        + item("Nodes not Active", c.nodes_not_active, f"of {c.nodes_total}")
        + item("Firing conditions", c.firing_conditions, "critical or warning problems")
        + item("Quotas at or above 90%", c.quotas_near_limit)
        + item("Jobs stuck or failed", c.jobs_stuck_or_failed)
        + item("Hibernation actions", c.hibernation_actions_24h, "last 24 h")
        + "</dl>"
    )


def _header(model: StatusModel, now: float, refresh: int | None) -> str:
    if model.ready:
        ready = _badge("ready", "ok")
    else:
        ready = _badge("not ready", "failed") + " " + e("; ".join(model.not_ready_reasons[:5]))
    updated = (
        "no collection yet"
        if model.data_updated_at is None
        else f"data updated {format_age(now - model.data_updated_at)} ago"
    )
    auto = f"refreshes every {refresh} s" if refresh else "automatic refresh off"
    toggle = "?refresh=0" if refresh else "./"
    toggle_text = "stop refreshing" if refresh else "refresh automatically"
    return (
        "<header><h1>cce-exporter status</h1>"
        f"<p class=meta>version {e(model.version)} &middot; up "
        f"{e(format_age(now - model.started_at))} &middot; {ready}</p>"
        f"<p class=meta><strong>{e(updated)}</strong> &middot; page generated {e(_utc(At(now)))}"
        f' &middot; {e(auto)} (<a href="{e(toggle)}">{e(toggle_text)}</a>)</p>'
        '<nav aria-label="Sections"><ul><li><a href="#problems">Problems</a></li>'
        '<li><a href="#hibernation">Hibernation</a></li><li><a href="#clusters">Clusters</a></li>'
        '<li><a href="#quotas">Quotas</a></li><li><a href="#collections">Collections</a></li>'
        '<li><a href="status.json">status.json</a></li><li><a href="metrics">/metrics</a></li>'
        '<li><a href="readyz">/readyz</a></li></ul></nav></header>'
    )


def render_status(
    model: StatusModel, *, phase: str = "", name: str = "", refresh: bool = True
) -> str:
    """The overview page."""
    now = float(model.generated_at)
    interval = model.refresh_seconds if refresh else None
    targets = "".join(
        f"<li>{e(t.name)}: project <code>{e(t.project_id)}</code>"
        + "".join(f" <code>{e(k)}={e(v)}</code>" for k, v in sorted(t.labels.items()))
        + "</li>"
        for t in model.targets
    )
    parts = [
        _head("cce-exporter status", interval),
        "<main>",
        _header(model, now, interval),
        _counts(model),
        _problems(model.problems, model.problems_total, now, show_target=len(model.targets) > 1),
        _hibernation(model, now),
        _clusters(model, now, phase, name),
        "<section aria-labelledby=quotas><h2 id=quotas>Quotas</h2>",
        _quotas(model.quotas),
        "</section><section aria-labelledby=collections><h2 id=collections>Collections</h2>",
        _table(
            "Last collection of each resource, with the cause of failures",
            _COLLECTION_HEADERS,
            _collection_rows(model.collections, now),
            label="Collections table",
        )
        if model.collections
        else "<p class=muted>No targets configured.</p>",
        "</section>",
        f"<section aria-label=Targets><h2>Targets</h2><ul>{targets}</ul></section>"
        if targets
        else "",
        '</main><footer>The same data as JSON: <a href="status.json">status.json</a> '
        "(schema in docs/status.md).</footer></body></html>\n",
    ]
    return "".join(parts)
