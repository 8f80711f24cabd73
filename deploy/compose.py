"""The Docker Compose stack as the ADRs run it: `docker compose up --scale celery-worker=5`.

Redis, PostgreSQL, the fleetops image's parts (deploy/parts.py), Prometheus with the generated
rules, Alertmanager routing to the pager, Grafana provisioned with the generated dashboards.
Files under deploy/compose/ are rendered here; rules and dashboards are mounted from where
`fleetops alerts generate` and `fleetops dashboards build` commit them, never copied.
"""

from __future__ import annotations

from alerts import alertmanager, prometheus
from alerts.config import AlertsConfig
from alerts.generate import ALERTS_FILE, RULES_FILE
from deploy.parts import DATA_DIR, HISTORY_DB, IMAGE, common_env, fleet_parts
from fleetops import ports

COMPOSE_FILE = "docker-compose.yml"
PROMETHEUS_FILE = "prometheus.yml"
ALERTMANAGER_FILE = "alertmanager.yml"
POSTGRES_INIT_FILE = "postgres-init.sql"
# Paths are relative to deploy/compose/, where the Compose file lives.
REPO = "../.."
PG_USER = "fleetops"
# A Compose example: override it with an .env file (docs/deployment.md).
PG_PASSWORD = "${FLEETOPS_POSTGRES_PASSWORD:-fleetops}"
DATABASE_URL = f"postgresql+psycopg://{PG_USER}:{PG_PASSWORD}@postgres:5432/fleetops"
HISTORY_URL = f"postgresql+psycopg://{PG_USER}:{PG_PASSWORD}@postgres:5432/{HISTORY_DB}"
PROMETHEUS_IMAGE = "prom/prometheus:v2.53.0"
ALERTMANAGER_IMAGE = "prom/alertmanager:v0.27.0"
GRAFANA_IMAGE = "grafana/grafana:11.1.0"
REDIS_IMAGE = "redis:7.2-alpine"
POSTGRES_IMAGE = "postgres:15-alpine"


def _healthcheck(port: int, path: str) -> dict:
    # The image has Python; curl and wget may not be there.
    probe = (
        "import sys, urllib.request;"
        f" sys.exit(urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=3).status"
        " != 200)"
    )
    return {"test": ["CMD", "python", "-c", probe], "interval": "15s", "timeout": "5s",
            "retries": 3}  # fmt: skip


def compose(config: AlertsConfig) -> dict:
    env = common_env(DATABASE_URL, HISTORY_URL)
    services: dict[str, dict] = {
        "redis": {
            "image": REDIS_IMAGE,
            "healthcheck": {"test": ["CMD", "redis-cli", "ping"], "interval": "5s"},
            "restart": "unless-stopped",
        },
        "postgres": {
            "image": POSTGRES_IMAGE,
            "environment": {
                "POSTGRES_USER": PG_USER,
                "POSTGRES_PASSWORD": PG_PASSWORD,
                "POSTGRES_DB": "fleetops",
            },
            "volumes": [
                "postgres:/var/lib/postgresql/data",
                f"./{POSTGRES_INIT_FILE}:/docker-entrypoint-initdb.d/{POSTGRES_INIT_FILE}:ro",
            ],
            "healthcheck": {"test": ["CMD", "pg_isready", "-U", PG_USER], "interval": "5s"},
            "restart": "unless-stopped",
        },
    }
    ready = {
        "redis": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    for part in fleet_parts():
        service: dict = {
            "image": IMAGE,
            "command": part.command,
            "environment": {**env, **part.env},
            "depends_on": ready,
            "restart": "unless-stopped",
        }
        if part.name == "celery-worker":
            # The first service that builds the image; the others reuse it by name.
            service["build"] = {"context": REPO, "dockerfile": "deploy/Dockerfile"}
        volumes = [f"data-{part.name}:{DATA_DIR}"]
        if part.objects:
            volumes.append(f"objects:{DATA_DIR}/objects")
        service["volumes"] = volumes
        if part.health and part.port:
            service["healthcheck"] = _healthcheck(part.port, part.health)
        # Only what a person opens gets a host port; a scaled service must not publish one.
        if part.name in ("console", "flower"):
            service["ports"] = [f"127.0.0.1:{part.port}:{part.port}"]
        services[part.name] = service
    services["prometheus"] = {
        "image": PROMETHEUS_IMAGE,
        "command": [
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
        ],
        "volumes": [
            f"./{PROMETHEUS_FILE}:/etc/prometheus/prometheus.yml:ro",
            f"{REPO}/alerts/{RULES_FILE}:/etc/prometheus/{RULES_FILE}:ro",
            f"{REPO}/alerts/{ALERTS_FILE}:/etc/prometheus/{ALERTS_FILE}:ro",
            "prometheus:/prometheus",
        ],
        "ports": [f"127.0.0.1:{ports.PROMETHEUS}:{ports.PROMETHEUS}"],
        "restart": "unless-stopped",
    }
    services["alertmanager"] = {
        "image": ALERTMANAGER_IMAGE,
        "command": ["--config.file=/etc/alertmanager/alertmanager.yml"],
        "volumes": [f"./{ALERTMANAGER_FILE}:/etc/alertmanager/alertmanager.yml:ro"],
        "depends_on": ["pager"],
        "restart": "unless-stopped",
    }
    provisioning = f"{REPO}/dashboards/provisioning"
    services["grafana"] = {
        "image": GRAFANA_IMAGE,
        "volumes": [
            f"{provisioning}/datasources.yaml:/etc/grafana/provisioning/datasources/fleetops.yaml:ro",
            f"{provisioning}/dashboards.yaml:/etc/grafana/provisioning/dashboards/fleetops.yaml:ro",
            f"{REPO}/dashboards/generated:/var/lib/grafana/dashboards/fleetops:ro",
        ],
        "ports": [f"127.0.0.1:{ports.GRAFANA}:{ports.GRAFANA}"],
        "depends_on": ["prometheus"],
        "restart": "unless-stopped",
    }
    volumes = ["postgres", "prometheus", "objects", *(f"data-{p.name}" for p in fleet_parts())]
    return {"services": services, "volumes": {name: {} for name in volumes}}


def prometheus_config(config: AlertsConfig) -> dict:
    def target(port: int, name: str) -> list[str]:
        return [f"{name}:{port}"]

    return prometheus.render(
        exporter_targets=target(ports.EXPORTER, "exporter"),
        flower_targets=target(ports.FLOWER, "flower"),
        recorder_targets=target(ports.RECORDER, "recorder"),
        prometheus_target=f"localhost:{ports.PROMETHEUS}",
        alertmanager_target=f"alertmanager:{ports.ALERTMANAGER}",
        scrape_interval=config.prometheus.scrape_interval,
        evaluation_interval=config.prometheus.evaluation_interval,
        rule_files=[RULES_FILE, ALERTS_FILE],
        # [alerts.prometheus] remote_write_url, e.g. VictoriaMetrics (docs/dashboards.md).
        remote_write_url=config.prometheus.remote_write_url,
    )


def alertmanager_config(config: AlertsConfig) -> dict:
    pager = f"http://pager:{ports.PAGER}"
    am = config.alertmanager
    return alertmanager.render(
        pager_url=f"{pager}/page",
        ticket_url=f"{pager}/ticket",
        watchdog_url=f"{pager}/watchdog",
        pagerduty_routing_key_file="",
        group_wait=am.group_wait,
        group_interval=am.group_interval,
        repeat_interval=am.repeat_interval,
    )


def postgres_init() -> str:
    return (
        "-- The task history has a database of its own beside the application's.\n"
        f"CREATE DATABASE {HISTORY_DB} OWNER {PG_USER};\n"
    )
