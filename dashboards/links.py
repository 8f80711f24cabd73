"""Links between the dashboards that keep the data source, job and time range."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import DashboardLink
from grafana_foundation_sdk.models.dashboard import DashboardLinkType

from dashboards.config import LINK_TAG, Uid


def dashboard_links() -> list[DashboardLink]:
    """The header dropdown listing every fleetops dashboard, carrying variables and time."""
    return [
        DashboardLink("Fleetops dashboards")
        .type(DashboardLinkType.DASHBOARDS)
        .tags([LINK_TAG])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
    ]


def drill_down(uid: Uid, title: str, keep: tuple[str, ...] = (), **variables: str) -> DashboardLink:
    """A data link to another dashboard: the series' labels become its variables.

    ``variables`` maps a variable of the target to the label of the clicked series, e.g.
    ``queue="queue_name"``; the data source, app, job, the variables named in ``keep`` and the time
    range are carried over as they are.
    """
    params = [f"${{{name}:queryparam}}" for name in ("datasource", "app", "job", *keep)]
    params += [f"var-{name}=${{__field.labels.{label}}}" for name, label in variables.items()]
    params.append("${__url_time_range}")
    return DashboardLink(title).url(f"/d/{uid}/{uid}?{'&'.join(params)}")
