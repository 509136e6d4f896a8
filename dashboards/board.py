"""A CCE dashboard: grafana-foundation-sdk's dashboard builder with what all five share (data
source variable, links, annotations, time range, refresh), query variables, rows and panels laid
out left to right on Grafana's 24-column grid."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from grafana_foundation_sdk.builders import dashboard as sdk_dashboard
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.kit import DS

TAGS = ["cce", "cce-exporter"]


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
