"""Which alerts each panel answers to, so the panel can link their runbooks.

The alert names are written by ``alerts/`` (``alerts/prometheus_alerts.yaml``); this mapping is
the one place the dashboards name them. A test compares it with the generated alert rules.
"""

from __future__ import annotations

from enum import StrEnum

from grafana_foundation_sdk.builders.dashboard import DashboardLink

# Same link rule as the alerts' runbook_url annotation, so a panel and a page open one page.
from alerts.catalog import runbook_url
from dashboards.panels import LEVELS


class Topic(StrEnum):
    QUEUE_DEPTH = "queue_depth"
    QUEUE_DRAIN = "queue_drain"
    QUEUE_CONSUMERS = "queue_consumers"
    DEAD_LETTER = "dead_letter"
    TASK_LATENCY = "task_latency"
    TASK_FAILURES = "task_failures"
    WORKERS_UP = "workers_up"
    WORKER_MEMORY = "worker_memory"
    EVENTS = "events"
    EXPORTER = "exporter"
    BROKER = "broker"
    FLOWER = "flower"
    BEAT = "beat"
    HISTORY = "history"
    TASK_ORPHANS = "task_orphans"
    TASK_STUCK = "task_stuck"
    TASK_RAN_TWICE = "task_ran_twice"
    VISIBILITY_TIMEOUT = "visibility_timeout"


def _per_level(prefix: str) -> list[str]:
    """The alerts of a breaking-points signal: one per level, named ``<prefix><Level>`` as
    alerts/rules.py names them."""
    return [f"{prefix}{level.value.title()}" for level in LEVELS]


ALERTS_BY_TOPIC: dict[Topic, list[str]] = {
    Topic.QUEUE_DEPTH: [*_per_level("CeleryQueueDepth"), "CeleryQueueBacklogGrowing"],
    Topic.QUEUE_DRAIN: ["CeleryQueueDrainTooSlow"],
    Topic.QUEUE_CONSUMERS: ["CeleryQueueNoConsumer"],
    Topic.DEAD_LETTER: ["CeleryDeadLetterQueueGrowing"],
    Topic.TASK_LATENCY: _per_level("CeleryTaskLatency"),
    Topic.TASK_FAILURES: ["CeleryTaskErrorBudgetBurn"],
    Topic.WORKERS_UP: ["CeleryWorkerDown"],
    Topic.WORKER_MEMORY: _per_level("CeleryWorkerMemory"),
    Topic.EVENTS: ["FleetopsEventsStopped", "FleetopsTaskEventsMissing"],
    Topic.EXPORTER: ["FleetopsExporterDown"],
    Topic.BROKER: ["FleetopsBrokerDown"],
    Topic.FLOWER: ["FleetopsFlowerDown"],
    Topic.BEAT: ["CeleryBeatMissedRun"],
    Topic.HISTORY: [
        "FleetopsHistoryEventsDropped",
        "FleetopsHistoryDatabaseDown",
        "FleetopsHistoryBrokerDown",
        "FleetopsRecorderDown",
    ],
    Topic.TASK_ORPHANS: ["CeleryTaskOrphaned", "CeleryTaskLost"],
    Topic.TASK_STUCK: ["CeleryTaskStuck"],
    Topic.TASK_RAN_TWICE: ["CeleryTaskRanTwice"],
    Topic.VISIBILITY_TIMEOUT: [
        "CeleryTaskEtaBeyondVisibilityTimeout",
        "CeleryTaskRuntimeNearVisibilityTimeout",
    ],
}


def runbook_links(topic: Topic, base_url: str) -> list[DashboardLink]:
    """Panel links, one per alert of the topic, opening its runbook in a new tab."""
    return [
        DashboardLink(f"Runbook: {alert}").url(runbook_url(base_url, alert)).target_blank(True)
        for alert in ALERTS_BY_TOPIC[topic]
    ]
