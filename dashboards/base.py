"""The frame every dashboard shares: prefix, tags, time, header links, panel ids."""

from __future__ import annotations

from dataclasses import dataclass, field

from grafana_foundation_sdk.builders.dashboard import Dashboard, DashboardLink, QueryVariable, Row
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as models

from dashboards.config import TAGS, TITLE_PREFIX, Uid, default_runbook_base_url
from dashboards.links import dashboard_links
from dashboards.runbooks import Topic, runbook_links
from dashboards.variables import app as app_variable
from dashboards.variables import datasource_variable

Rows = list[tuple[str, list[Builder[models.Panel]]]]


@dataclass(frozen=True)
class BuildOptions:
    runbook_base_url: str = field(default_factory=default_runbook_base_url)

    def runbooks(self, topic: Topic) -> list[DashboardLink]:
        """Panel links to the runbooks of the topic's alerts, under this build's base URL."""
        return runbook_links(topic, self.runbook_base_url)


def new_dashboard(
    uid: Uid, title: str, description: str, variables: list[QueryVariable]
) -> Dashboard:
    return (
        Dashboard(TITLE_PREFIX + title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .links(dashboard_links())
        .variables([datasource_variable(), app_variable(), *variables])
    )


def with_rows(dashboard: Dashboard, rows: Rows) -> Dashboard:
    for title, panels in rows:
        dashboard = dashboard.with_row(Row(title))
        for panel in panels:
            dashboard = dashboard.with_panel(panel)
    return dashboard


def finish(dashboard: Dashboard) -> models.Dashboard:
    """Build the model and number the panels in reading order (ids must be unique)."""
    model = dashboard.build()
    next_id = 1
    for panel in model.panels or []:
        panel.id_val = next_id
        next_id += 1
        for child in getattr(panel, "panels", None) or []:
            child.id_val = next_id
            next_id += 1
    return model


def assemble(
    uid: Uid, title: str, description: str, variables: list[QueryVariable], rows: Rows
) -> models.Dashboard:
    """A whole dashboard: the shared frame, then each titled row and its panels."""
    return finish(with_rows(new_dashboard(uid, title, description, variables), rows))
