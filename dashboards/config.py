"""Names every dashboard shares: uids, title prefix, tags, the data source they expect."""

from __future__ import annotations

from enum import StrEnum

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
DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"

# Where panel runbook links point: <base>/<AlertName>.md, the same base as the alerts'
# runbook_url (the `runbook_url_base` of the [alerts] section of breaking_points.toml, which
# alerts/ defaults to the local pager's runbook pages). `fleetops dashboards build
# --runbook-base-url` overrides it.
FALLBACK_RUNBOOK_BASE_URL = "http://127.0.0.1:9095/runbooks"


def default_runbook_base_url() -> str:
    from fleetops.breaking_points import current

    return str(current().extra_section("alerts").get("runbook_url_base", FALLBACK_RUNBOOK_BASE_URL))


class Uid(StrEnum):
    OVERVIEW = "fleetops-overview"
    QUEUE = "fleetops-queue"
    WORKER = "fleetops-worker"
    TASK = "fleetops-task"
    FLOWER = "fleetops-flower"
    EXPORTER = "fleetops-exporter"
