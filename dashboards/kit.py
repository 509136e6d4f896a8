"""The pieces the CCE dashboards are made of, on grafana-foundation-sdk's typed builders.

One function per panel shape (stat, time series, bars, bar gauge, state timeline, table, text),
each taking the panel's queries and the few settings that differ between panels; ``Board`` wraps
the SDK's dashboard builder with what every CCE dashboard shares (data source variable, links,
annotations, time range) and numbers the panels.

State sets (one 0/1 series per phase) become one number per resource for state timelines:
``phase_code()`` maps the phase whose series is 1 to its index, and a value mapping turns the
index back into the phase's name and colour. It relies on ``== 1`` only, so it also works when the
exporter is configured to export the current value only. The phases come from the models
(``exporter.cce.models``) with the state sets' ``unknown`` appended, as the exporter exports them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from grafana_foundation_sdk.builders import bargauge as sdk_bargauge
from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk_dashboard
from grafana_foundation_sdk.builders import prometheus as sdk_prometheus
from grafana_foundation_sdk.builders import stat as sdk_stat
from grafana_foundation_sdk.builders import statetimeline as sdk_statetimeline
from grafana_foundation_sdk.builders import table as sdk_table
from grafana_foundation_sdk.builders import text as sdk_text
from grafana_foundation_sdk.builders import timeseries as sdk_timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm
from grafana_foundation_sdk.models import text as tm

from exporter.cce import models
from exporter.metrics.spec import UNKNOWN

Json = dict[str, Any]
PanelBuilder = Builder[dm.Panel]

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["cce", "cce-exporter"]

PROJECT = 'project_id=~"$project"'
CLUSTER = 'project_id=~"$project", cluster=~"$cluster"'
EXPORTER = 'project_id=~"$project", instance=~"$instance"'

#: Colour of a phase, status or reason by what it means; a value not listed is a transition
#: (blue). The values themselves come from the models; tests/test_known_values.py checks
#: that every name here is one the exporter knows.
COLOURS: dict[str, tuple[str, ...]] = {
    "green": (
        "Available",
        "Active",
        "Normal",
        "Synchronized",
        "running",
        "available",
        "Success",
        "CertificateValid",
        "RotationSucceeded",
    ),
    "red": (
        "Unavailable",
        "RollbackFailed",
        "Error",
        "Abnormal",
        "RepairFailed",
        "Failed",
        "abnormal",
        "unavailable",
        "installFailed",
        "upgradeFailed",
        "deleteFailed",
        "rollbackFailed",
        "CertificateExpired",
        "RotationFailed",
    ),
    "orange": (
        "Deleting",
        "RollingBack",
        "Repairing",
        "SoldOut",
        "rollbacking",
        "deleting",
        "CertificateExpiringWithin30Days",
    ),
    "yellow": ("CertificateExpiringWithin180Days",),
    "purple": ("Hibernating", "Awaking"),
    "dark-purple": ("Hibernation",),
    "text": ("Empty", "ShutDown", "deleteSuccess", UNKNOWN),
}
_COLOUR_OF = {name: colour for colour, names in COLOURS.items() for name in names}
TRANSITION = "blue"


def coloured(names: Iterable[str]) -> dict[str, str]:
    """Each name with its colour, in the given order."""
    return {name: _COLOUR_OF.get(name, TRANSITION) for name in names}


def state_set(values: Sequence[str]) -> dict[str, str]:
    """A state set's values as exported (the known ones, then ``unknown``), coloured."""
    return coloured((*values, UNKNOWN))


# Phases and statuses as the exporter exports them (the models' values, then "unknown"); the
# order is the code phase_code() gives them.
CLUSTER_PHASES = state_set(models.CLUSTER_PHASES)
NODE_PHASES = state_set(models.NODE_PHASES)
NODEPOOL_PHASES = state_set(models.NODEPOOL_PHASES)
ADDON_STATUSES = state_set(models.ADDON_STATUSES)
JOB_PHASES = state_set(models.JOB_PHASES)
#: Certificate stages and rotation outcomes (the SDK's ClusterCondition reasons), as coloured cells.
CERTIFICATE_REASONS = coloured(models.CLUSTER_CONDITION_REASONS)
#: The codes hibernation_actual() gives (0, 1, 2): the dashboards' own, not phases.
HIBERNATION_STATES = {"Awake": "green", "Transition": "purple", "Hibernated": "dark-purple"}


# --- PromQL helpers ------------------------------------------------------------------------------


def phase_code(
    metric: str, label: str, phases: Sequence[str], filters: str, by: str = "project_id, cluster"
) -> str:
    """One series per ``by`` group whose value is the index of its current phase."""
    branches = [
        f'(({metric}{{{filters}, {label}="{phase}"}} == 1) * {index})'
        for index, phase in enumerate(phases)
    ]
    return f"max by ({by}) (\n  " + "\n  or ".join(branches) + "\n)"


def hibernation_actual(filters: str) -> str:
    """0 awake, 1 hibernating or awaking, 2 hibernated."""
    metric = "cce_cluster_status_phase"
    return (
        f'(max by (project_id, cluster) ({metric}{{{filters}, phase="Hibernation"}} == 1) * 2)\n'
        f'or (max by (project_id, cluster) ({metric}{{{filters}, phase=~"Hibernating|Awaking"}}'
        " == 1))\n"
        f"or (max by (project_id, cluster) ({metric}{{{filters}}} == 1) * 0)"
    )


def with_cluster_name(expr: str) -> str:
    """Jobs carry cluster_id only: add the cluster name (and filter by it) from cce_cluster_info."""
    return (
        f"({expr})\n* on(project_id, cluster_id) group_left(cluster)\n"
        f"max by (project_id, cluster_id, cluster) (cce_cluster_info{{{CLUSTER}}})"
    )


# --- queries, thresholds, mappings ---------------------------------------------------------------


def target(
    expr: str, legend: str = "", *, instant: bool = False, table: bool = False
) -> sdk_prometheus.Dataquery:
    """A Prometheus query in code mode; its refId is set by the panel (A, B, ...)."""
    query = (
        sdk_prometheus.Dataquery()
        .datasource(DS)
        .expr(expr)
        .legend_format(legend or "__auto")
        .format(pm.PromQueryFormat.TABLE if table else pm.PromQueryFormat.TIME_SERIES)
        .editor_mode(pm.QueryEditorMode.CODE)
    )
    return query.instant() if instant else query.range()


def count_or_zero(selector: str) -> str:
    """How many series ``selector`` gives, 0 (not "no data") when it gives none."""
    return f"count({selector}) or vector(0)"


def steps(*pairs: tuple[str, float | None]) -> sdk_dashboard.ThresholdsConfig:
    return (
        sdk_dashboard.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(color=c, value=v) for c, v in pairs])
    )


def green() -> sdk_dashboard.ThresholdsConfig:
    return steps(("green", None))


def percent() -> sdk_dashboard.ThresholdsConfig:
    return steps(("green", None), ("yellow", 0.75), ("red", 0.9))


def firing(colour: str = "red") -> sdk_dashboard.ThresholdsConfig:
    """Green at 0, ``colour`` from 1: a count of things that need someone."""
    return steps(("green", None), (colour, 1))


def value_mapping(options: Mapping[str, tuple[str, str | None]]) -> dm.ValueMap:
    """Values (as text) to a display text and an optional colour, in order."""
    return dm.ValueMap(
        options={
            value: dm.ValueMappingResult(text=text, color=color, index=i)
            for i, (value, (text, color)) in enumerate(options.items())
        }
    )


def state_mapping(names: Mapping[str, str], *, by_index: bool) -> dm.ValueMap:
    """Map phase codes (by_index) or phase texts to the phase's name and colour."""
    return value_mapping(
        {(str(i) if by_index else name): (name, c) for i, (name, c) in enumerate(names.items())}
    )


def fixed_colour(colour: str) -> Json:
    return {"mode": "fixed", "fixedColor": colour}


def colour_overrides(
    names: Mapping[str, str],
) -> list[sdk_dashboard.DashboardFieldConfigSourceOverrides]:
    """One override per series name giving it its fixed colour."""
    return [
        sdk_dashboard.DashboardFieldConfigSourceOverrides()
        .matcher(dm.MatcherConfig(id_val="byName", options=name))
        .properties([dm.DynamicConfigValue(id_val="color", value=fixed_colour(colour))])
        for name, colour in names.items()
    ]


# --- panels --------------------------------------------------------------------------------------

_REFS = "ABCDEFGHIJ"


def _common(
    panel: Any,
    title: str,
    targets: Sequence[sdk_prometheus.Dataquery],
    *,
    description: str = "",
    unit: str = "short",
    thresholds: sdk_dashboard.ThresholdsConfig | None = None,
    mappings: Sequence[dm.ValueMap] = (),
    color: str | None = None,
    overrides: Sequence[sdk_dashboard.DashboardFieldConfigSourceOverrides] = (),
    decimals: int | None = None,
    minmax: tuple[float, float] | None = None,
) -> Any:
    """Title, queries, data source and the field defaults every panel shape shares.

    ``color``: a fixed colour for every value; else thresholds colour the values when thresholds
    are given, the classic palette when not.
    """
    panel.title(title).datasource(DS).unit(unit).thresholds(thresholds or green())
    panel.targets([t.ref_id(_REFS[i]) for i, t in enumerate(targets)])
    if description:
        panel.description(description)
    if mappings:
        panel.mappings(list(mappings))
    mode = "thresholds" if thresholds else "palette-classic"
    scheme = sdk_dashboard.FieldColor()
    if color:
        scheme.mode(dm.FieldColorModeId.FIXED).fixed_color(color)
    else:
        scheme.mode(dm.FieldColorModeId(mode))
    panel.color_scheme(scheme)
    if overrides:
        panel.overrides(list(overrides))
    if decimals is not None:
        panel.decimals(decimals)
    if minmax:
        panel.min(minmax[0]).max(minmax[1])
    return panel


def _instant(targets: Sequence[sdk_prometheus.Dataquery]) -> Sequence[sdk_prometheus.Dataquery]:
    """Single values (stats, gauges, tables) need the latest sample only."""
    for t in targets:
        t.instant()
    return targets


def _reduce_last() -> sdk_common.ReduceDataOptions:
    return sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def timeseries(
    title: str, targets: Sequence[sdk_prometheus.Dataquery], *, stack: bool = False, **kw: Any
) -> sdk_timeseries.Panel:
    panel = (
        sdk_timeseries.Panel()
        .draw_style(cm.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(20 if stack else 10)
        .show_points(cm.VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(
            sdk_common.StackingConfig()
            .mode(cm.StackingMode.NORMAL if stack else cm.StackingMode.NONE)
            .group("A")
        )
        .legend(
            sdk_common.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            sdk_common.VizTooltipOptions()
            .mode(cm.TooltipDisplayMode.MULTI)
            .sort(cm.SortOrder.DESCENDING)
        )
    )
    result: sdk_timeseries.Panel = _common(panel, title, targets, **kw)
    return result


def bars(
    title: str, targets: Sequence[sdk_prometheus.Dataquery], **kw: Any
) -> sdk_timeseries.Panel:
    """A time series drawn as stacked bars: counts per interval."""
    return (
        timeseries(title, targets, stack=True, **kw)
        .draw_style(cm.GraphDrawStyle.BARS)
        .fill_opacity(80)
    )


def stat(
    title: str,
    targets: Sequence[sdk_prometheus.Dataquery],
    *,
    color_mode: str = "background",
    **kw: Any,
) -> sdk_stat.Panel:
    panel = (
        sdk_stat.Panel()
        .reduce_options(_reduce_last())
        .color_mode(cm.BigValueColorMode(color_mode))
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.AUTO)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
    )
    result: sdk_stat.Panel = _common(panel, title, _instant(targets), **kw)
    return result


def bargauge(
    title: str, targets: Sequence[sdk_prometheus.Dataquery], **kw: Any
) -> sdk_bargauge.Panel:
    panel = (
        sdk_bargauge.Panel()
        .reduce_options(_reduce_last())
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .value_mode(cm.BarGaugeValueMode.COLOR)
    )
    result: sdk_bargauge.Panel = _common(panel, title, _instant(targets), **kw)
    return result


def state_timeline(
    title: str,
    targets: Sequence[sdk_prometheus.Dataquery],
    names: Mapping[str, str],
    **kw: Any,
) -> sdk_statetimeline.Panel:
    """States by index (0, 1, ...) drawn with the names and colours of ``names``."""
    panel = (
        sdk_statetimeline.Panel()
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
        .align_value(cm.TimelineValueAlignment.LEFT)
        .legend(
            sdk_common.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            sdk_common.VizTooltipOptions()
            .mode(cm.TooltipDisplayMode.SINGLE)
            .sort(cm.SortOrder.NONE)
        )
        .fill_opacity(80)
        .line_width(0)
    )
    result: sdk_statetimeline.Panel = _common(
        panel, title, targets, mappings=[state_mapping(names, by_index=True)], **kw
    )
    # Colours come from the value mappings; "thresholds" keeps unmapped values green.
    result.color_scheme(sdk_dashboard.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    return result


def cluster_phase_timeline(title: str, **kw: Any) -> sdk_statetimeline.Panel:
    """The phase of every selected cluster over time."""
    expr = phase_code("cce_cluster_status_phase", "phase", list(CLUSTER_PHASES), CLUSTER)
    return state_timeline(title, [target(expr, "{{cluster}}")], CLUSTER_PHASES, **kw)


def share_gauge(title: str, expr: str, legend: str, **kw: Any) -> sdk_bargauge.Panel:
    """Bars of a ratio (used against a limit), green to red by percent() unless told."""
    kw.setdefault("thresholds", percent())
    kw.setdefault("minmax", (0, 1))
    return bargauge(title, [target(expr, legend)], unit="percentunit", **kw)


def text(title: str, content: str) -> sdk_text.Panel:
    return sdk_text.Panel().title(title).mode(tm.TextMode.MARKDOWN).content(content)


def column(
    *,
    unit: str | None = None,
    mappings: Sequence[dm.ValueMap] = (),
    thresholds: sdk_dashboard.ThresholdsConfig | None = None,
    cells: str | None = None,
) -> list[dm.DynamicConfigValue]:
    """Field properties of one table column: unit, value mappings, thresholds, cell display."""
    props = []
    if mappings:
        props.append(dm.DynamicConfigValue(id_val="mappings", value=list(mappings)))
    if unit:
        props.append(dm.DynamicConfigValue(id_val="unit", value=unit))
    if thresholds:
        props.append(dm.DynamicConfigValue(id_val="thresholds", value=thresholds.build()))
    if cells:
        cell: Json = (
            {"type": cells, "mode": "basic"} if cells == "color-background" else {"type": cells}
        )
        props.append(dm.DynamicConfigValue(id_val="custom.cellOptions", value=cell))
    return props


def state_column(names: Mapping[str, str]) -> list[dm.DynamicConfigValue]:
    """A phase text coloured like the state timelines."""
    return column(mappings=[state_mapping(names, by_index=False)], cells="color-background")


def _organize(hide: Sequence[str], rename: Mapping[str, str], order: Sequence[str]) -> Json:
    return {
        "excludeByName": dict.fromkeys(("Time", "__name__", "instance", "job", *hide), True),
        "renameByName": dict(rename),
        "indexByName": {name: i for i, name in enumerate(order)},
    }


def table(
    title: str,
    targets: Sequence[sdk_prometheus.Dataquery],
    *,
    hide: Sequence[str] = (),
    rename: Mapping[str, str] | None = None,
    order: Sequence[str] = (),
    columns: Mapping[str, list[dm.DynamicConfigValue]] | None = None,
    sort_by: str | None = None,
    **kw: Any,
) -> sdk_table.Panel:
    """Instant table queries merged on their common labels, then tidied up.

    ``columns`` sets field properties per (renamed) column (see ``column()``).
    """
    for t in _instant(targets):
        t.format(pm.PromQueryFormat.TABLE)
    transformations = (
        [dm.DataTransformerConfig(id_val="merge", options={})] if len(targets) > 1 else []
    )
    transformations.append(
        dm.DataTransformerConfig(id_val="organize", options=_organize(hide, rename or {}, order))
    )
    panel = (
        sdk_table.Panel()
        .show_header(True)
        .cell_height(cm.TableCellHeight.SM)
        .footer(sdk_common.TableFooterOptions().show(False))
        .align(cm.FieldTextAlignment.AUTO)
        .cell_options(cm.TableAutoCellOptions())
        .filterable(True)
        .transformations(transformations)
    )
    if sort_by:
        panel.sort_by([sdk_common.TableSortByFieldState().display_name(sort_by).desc(True)])
    overrides = [
        sdk_dashboard.DashboardFieldConfigSourceOverrides()
        .matcher(dm.MatcherConfig(id_val="byName", options=name))
        .properties(props)
        for name, props in (columns or {}).items()
    ]
    result: sdk_table.Panel = _common(panel, title, targets, overrides=overrides, **kw)
    return result


# --- dashboards ----------------------------------------------------------------------------------


class Board:
    """A CCE dashboard: the SDK's builder with the shared settings, panels laid out left to right
    on Grafana's 24-column grid by the SDK, numbered from 1 in order."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self.sdk = (
            sdk_dashboard.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(TAGS)
            .editable()
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .version(1)
            .refresh("1m")
            .time("now-6h", "now")
            .timezone("browser")
            .fiscal_year_start_month(0)
            .live_now(False)
            .week_start("")
            .annotation(
                sdk_dashboard.AnnotationQuery()
                .built_in(1)
                .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
                .enable(True)
                .hide(True)
                .icon_color("rgba(0, 211, 255, 1)")
                .name("Annotations & Alerts")
                .type("dashboard")
            )
            .link(
                sdk_dashboard.DashboardLink("CCE dashboards")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags(["cce"])
                .as_dropdown(True)
                .include_vars(True)
                .keep_time(True)
                .target_blank(False)
                .icon("external link")
                .tooltip("")
                .url("")
            )
            .with_variable(
                sdk_dashboard.DatasourceVariable("datasource")
                .label("Data source")
                .type("prometheus")
                .hide(dm.VariableHide.DONT_HIDE)
                .regex("")
            )
        )

    def variable(self, name: str, label: str, query: str) -> None:
        self.sdk.with_variable(
            sdk_dashboard.QueryVariable(name)
            .label(label)
            .datasource(DS)
            .query(query)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .hide(dm.VariableHide.DONT_HIDE)
            .regex("")
            .options([])
        )

    def row(self, title: str) -> None:
        self.sdk.with_row(sdk_dashboard.Row(title))

    def add(self, panel: Any, w: int, h: int) -> None:
        self.sdk.with_panel(panel.span(w).height(h))

    def build(self) -> dm.Dashboard:
        model = self.sdk.build()
        for number, panel in enumerate(model.panels or [], start=1):
            panel.id_val = number
        return model


Section = Callable[[Board], None]
#: (name, label, query) of the variables that select projects and clusters.
CLUSTER_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("project", "Project", "label_values(cce_cluster_info, project_id)"),
    ("cluster", "Cluster", 'label_values(cce_cluster_info{project_id=~"$project"}, cluster)'),
)


def board(
    uid: str,
    title: str,
    description: str,
    variables: Sequence[tuple[str, str, str]],
    sections: Sequence[Section],
) -> Board:
    """A dashboard with its query variables (name, label, query), laid out section by section."""
    result = Board(uid, title, description)
    for name, label, query in variables:
        result.variable(name, label, query)
    for section in sections:
        section(result)
    return result
