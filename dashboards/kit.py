"""The pieces the CCE dashboards are made of, on grafana-foundation-sdk's typed builders.

One function per panel shape (stat, time series, bars, bar gauge, state timeline, table, text),
each taking the panel's queries and the few settings that differ between panels, and the PromQL
pieces several panels share. The dashboards themselves are dashboards/board.py's; the phases and
their colours dashboards/phases.py's.

State sets (one 0/1 series per phase) become one number per resource for state timelines:
``phase_code()`` maps the phase whose series is 1 to its index, and a value mapping turns the
index back into the phase's name and colour. It relies on ``== 1`` only, so it also works when the
exporter is configured to export the current value only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm
from grafana_foundation_sdk.models import text as tm

from dashboards.phases import CLUSTER_PHASES

Json = dict[str, Any]

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

PROJECT = 'project_id=~"$project"'
CLUSTER = 'project_id=~"$project", cluster=~"$cluster"'
EXPORTER = 'project_id=~"$project", instance=~"$instance"'

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


def target(expr: str, legend: str = "", *, instant: bool = False) -> sdk_prometheus.Dataquery:
    """A Prometheus query in code mode; its refId is set by the panel (A, B, ...), tables make it
    a table query, single-value panels an instant one."""
    query = (
        sdk_prometheus.Dataquery()
        .datasource(DS)
        .expr(expr)
        .legend_format(legend or "__auto")
        .format(pm.PromQueryFormat.TIME_SERIES)
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


def _fixed(colour: str) -> dm.FieldColor:
    return dm.FieldColor(mode=dm.FieldColorModeId.FIXED, fixed_color=colour)


def colour_overrides(
    names: Mapping[str, str],
) -> list[sdk_dashboard.DashboardFieldConfigSourceOverrides]:
    """One override per series name giving it its fixed colour."""
    return [
        sdk_dashboard.DashboardFieldConfigSourceOverrides()
        .matcher(dm.MatcherConfig(id_val="byName", options=name))
        .properties([dm.DynamicConfigValue(id_val="color", value=_fixed(colour))])
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
    are given, the classic palette when not. ``panel`` is any of the SDK's panel builders: they
    share these methods by name, not through a common base class, hence ``Any``.
    """
    panel.title(title).datasource(DS).unit(unit).thresholds(thresholds or green())
    panel.targets([t.ref_id(_REFS[i]) for i, t in enumerate(targets)])
    if description:
        panel.description(description)
    if mappings:
        panel.mappings(list(mappings))
    if color:
        panel.color_scheme(
            sdk_dashboard.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color(color)
        )
    else:
        mode = dm.FieldColorModeId.THRESHOLDS if thresholds else dm.FieldColorModeId.PALETTE_CLASSIC
        panel.color_scheme(sdk_dashboard.FieldColor().mode(mode))
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


#: Table cells whose text takes the colour of its thresholds or value mapping.
COLOR_TEXT = cm.TableColorTextCellOptions()


def column(
    *,
    unit: str | None = None,
    mappings: Sequence[dm.ValueMap] = (),
    thresholds: sdk_dashboard.ThresholdsConfig | None = None,
    cells: cm.TableCellOptions | None = None,
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
        props.append(dm.DynamicConfigValue(id_val="custom.cellOptions", value=cells))
    return props


def state_column(names: Mapping[str, str]) -> list[dm.DynamicConfigValue]:
    """A phase text coloured like the state timelines."""
    background = cm.TableColoredBackgroundCellOptions(mode=cm.TableCellBackgroundDisplayMode.BASIC)
    return column(mappings=[state_mapping(names, by_index=False)], cells=background)


def _organize(hide: Sequence[str], rename: Mapping[str, str], order: Sequence[str]) -> Json:
    """Options of the "organize" transformation, as Grafana stores them: Grafana's schema leaves
    transformation options untyped (``DataTransformerConfig.options`` is ``Any`` in the SDK)."""
    return {
        "excludeByName": dict.fromkeys(("Time", "__name__", "instance", "job", *hide), True),
        "renameByName": dict(rename),
        "indexByName": {name: i for i, name in enumerate(order)},
    }


#: A table's query: the name of the column its value goes to (None: only its labels are shown)
#: and its PromQL.
TableQuery = tuple[str | None, str]


def table(
    title: str,
    queries: Sequence[TableQuery],
    *,
    hide: Sequence[str] = (),
    rename: Mapping[str, str] | None = None,
    order: Sequence[str] = (),
    columns: Mapping[str, list[dm.DynamicConfigValue]] | None = None,
    sort_by: str | None = None,
    **kw: Any,
) -> sdk_table.Panel:
    """Instant table queries merged on their common labels, then tidied up: ``hide`` and
    ``rename`` label columns, ``order`` puts columns first, ``columns`` sets field properties per
    (renamed) column (see ``column()``).
    """
    targets = [target(expr).format(pm.PromQueryFormat.TABLE) for _, expr in queries]
    _instant(targets)
    # Grafana names the value of a lone query "Value", else "Value #<refId>".
    fields = ["Value"] if len(queries) == 1 else [f"Value #{ref}" for ref in _REFS]
    values = list(zip(fields, (name for name, _ in queries), strict=False))
    hide = [field for field, name in values if name is None] + list(hide)
    rename = {field: name for field, name in values if name is not None} | dict(rename or {})
    transformations = (
        [dm.DataTransformerConfig(id_val="merge", options={})] if len(targets) > 1 else []
    )
    transformations.append(
        dm.DataTransformerConfig(id_val="organize", options=_organize(hide, rename, order))
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
