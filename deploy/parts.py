"""The parts of a deployed fleet: what each runs, where it listens and how it is checked.

Compose (deploy/compose.py) and Kubernetes (deploy/kubernetes.py) are both rendered from this
one table, and its ports come from fleetops/ports.py, so the files cannot disagree with each
other or with the settings' defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleetops import ports
from workers.queues import IMAGES, MAINTENANCE, REMINDERS

# Everything runs from one image built by deploy/Dockerfile.
IMAGE = "fleetops:latest"
# The image's unprivileged user (deploy/Dockerfile).
IMAGE_UID = 10001
DATA_DIR = "/var/lib/fleetops"
# Every address is a service name: nothing assumes the parts share a host.
BROKER_URL = "redis://redis:6379/0"
HISTORY_DB = "fleetops_history"
WORK_QUEUES = (IMAGES, REMINDERS, MAINTENANCE)
# A container listens on its own network namespace: all its addresses.
ANY_ADDRESS = "0.0.0.0"


@dataclass(frozen=True)
class Part:
    name: str
    command: list[str]
    port: int | None = None
    # HTTP path answering 200 while the part works (liveness/readiness, Compose healthcheck).
    health: str | None = None
    # Scraped by Prometheus at /metrics on `port`.
    scraped: bool = False
    # What Kubernetes probes, when not `health`: /healthz of the exporter and the recorder also
    # fails while a broker is down, and a probe failing then would restart them (losing their
    # state) or take them out of the scrape (hiding the outage the alerts report).
    probe: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # Needs the shared object store (uploads and thumbnails).
    objects: bool = False


def _celery(*args: str) -> list[str]:
    return ["celery", "-A", "workers.app", *args]


def fleet_parts() -> list[Part]:
    """The fleetops image's processes, in data-flow order."""
    return [
        Part(
            "celery-worker",
            # %h is the container's (pod's) hostname: unique per replica, so scaling works.
            _celery(
                "worker",
                "-Q",
                ",".join(WORK_QUEUES),
                "-n",
                "worker@%h",
                "-c",
                "2",
                "--loglevel=INFO",
            ),
            objects=True,
        ),
        Part("celery-beat", _celery("beat", "--loglevel=INFO", "-s", f"{DATA_DIR}/beat-schedule")),
        Part(
            "flower",
            _celery("flower", f"--port={ports.FLOWER}", f"--address={ANY_ADDRESS}"),
            port=ports.FLOWER,
            health="/healthcheck",
            scraped=True,
        ),
        Part(
            "exporter",
            ["fleetops", "exporter", "--host", ANY_ADDRESS, "--port", str(ports.EXPORTER)],
            port=ports.EXPORTER,
            health="/healthz",
            scraped=True,
            probe="/metrics",
        ),
        Part(
            "recorder",
            ["fleetops", "recorder"],
            port=ports.RECORDER,
            health="/healthz",
            scraped=True,
            probe="/metrics",
            env={
                "FLEETOPS_HISTORY_METRICS_HOST": ANY_ADDRESS,
                "FLEETOPS_HISTORY_METRICS_PORT": str(ports.RECORDER),
            },
        ),
        Part(
            "pager",
            [
                "fleetops",
                "pager",
                "--host",
                ANY_ADDRESS,
                "--port",
                str(ports.PAGER),
                "--log-file",
                f"{DATA_DIR}/pages.jsonl",
            ],
            port=ports.PAGER,
            health="/healthz",
        ),
        Part(
            "console",
            ["fleetops", "console", "--host", ANY_ADDRESS, "--port", str(ports.CONSOLE)],
            port=ports.CONSOLE,
            health="/_stcore/health",
        ),
    ]


def common_env(database_url: str, history_database_url: str) -> dict[str, str]:
    """What every fleetops process is told: the shared addresses, never a local default."""
    return {
        # No local fleet manifest applies inside a deployment.
        "FLEETOPS_FLEET": "none",
        "FLEETOPS_BROKER_URL": BROKER_URL,
        "FLEETOPS_DATA_DIR": DATA_DIR,
        "FLEETOPS_DATABASE_URL": database_url,
        "FLEETOPS_HISTORY_DATABASE_URL": history_database_url,
        "FLEETOPS_PROMETHEUS_URL": f"http://prometheus:{ports.PROMETHEUS}",
        "FLEETOPS_ALERTMANAGER_URL": f"http://alertmanager:{ports.ALERTMANAGER}",
    }
