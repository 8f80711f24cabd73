"""Names every dashboard shares: uids, title prefix, tags, the data source they expect."""

from __future__ import annotations

from enum import StrEnum

from fleetops import ports

TITLE_PREFIX = "Fleetops / "
TAGS = ["fleetops", "celery"]
# Dashboard links with this tag list every fleetops dashboard in the header dropdown.
LINK_TAG = "fleetops"

FOLDER_UID = "fleetops"
FOLDER_TITLE = "Fleetops"

# The Prometheus data source `fleetops dashboards provision` and the file-provisioning YAML
# create; dashboards select it through their `datasource` variable, never by a fixed uid.
DATASOURCE_UID = "fleetops-prometheus"
DATASOURCE_NAME = "Fleetops Prometheus"
DEFAULT_PROMETHEUS_URL = ports.local_url(ports.PROMETHEUS)


def default_runbook_base_url() -> str:
    """Where panel runbook links point: <base>/<AlertName>.md, the same base as the alerts'
    runbook_url (`runbook_url_base` of [alerts], defaulted by alerts/config.py). `fleetops
    dashboards build --runbook-base-url` overrides it."""
    from fleetops.breaking_points import current

    return current().alerts.runbook_url_base


class Uid(StrEnum):
    OVERVIEW = "fleetops-overview"
    QUEUE = "fleetops-queue"
    WORKER = "fleetops-worker"
    TASK = "fleetops-task"
    FLOWER = "fleetops-flower"
    EXPORTER = "fleetops-exporter"
