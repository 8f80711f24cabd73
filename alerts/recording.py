"""Recording rules: the failure ratios and latency quantiles the alerts, dashboards and console
share. The names below are the one place each recorded series is named; import them rather than
writing a name again.

Names follow ``level:metric:operations``. Ratios are recorded as numerator and denominator
separately, so a dashboard can aggregate them correctly across queues. Every rate is taken per
exporter replica and only the largest copy kept (``alerts/replicas.py``) before summing, so two
replicas side by side count each task once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alerts.replicas import one
from fleetops.apps import APP_LABEL

if TYPE_CHECKING:  # the configuration imports the alert specs, which import these names
    from alerts.config import AlertsConfig

# The counters a task's outcome increments (docs/metrics.md); completed = succeeded + failed.
SUCCEEDED_COUNTER = "celery_task_succeeded_total"
FAILED_COUNTER = "celery_task_failed_total"
LATENCY_HISTOGRAM = "fleetops_task_latency_seconds"

# Every rule keeps the app (fleetops/apps.py): two Celery apps may name a queue alike, and their
# tasks must never sum together. A series without the label (an exporter older than the label)
# groups as before.
BY_QUEUE = f"{APP_LABEL}, queue_name"

# Windows of the multi-window, multi-burn-rate alerts (Google SRE workbook, chapter 5).
FAILURE_WINDOWS = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
LATENCY_QUANTILE = 0.95
LATENCY_WINDOW = "5m"

FAILED = "queue_name:celery_task_failed:rate{window}"
COMPLETED = "queue_name:celery_task_completed:rate{window}"
FAILURE_RATIO = "queue_name:celery_task_failed_per_completed:ratio_rate{window}"
LATENCY_BUCKETS = f"queue_name_le:{LATENCY_HISTOGRAM}_bucket:rate{LATENCY_WINDOW}"
LATENCY_P95 = f"queue_name:{LATENCY_HISTOGRAM}:p95_rate{LATENCY_WINDOW}"


def failed(window: str) -> str:
    return FAILED.format(window=window)


def completed(window: str) -> str:
    return COMPLETED.format(window=window)


def failure_ratio(window: str) -> str:
    return FAILURE_RATIO.format(window=window)


def completed_rate(matchers: str, window: str) -> str:
    """The rate of finished tasks, one copy per replica (``alerts/replicas.py``), per series.

    Not one selector over both counters: the exporter serves a series without failures as
    ``exception=""``, which Prometheus reads as no label at all, so with the names dropped by
    rate() it has the labels of the succeeded series and Prometheus refuses the pair ("vector
    cannot contain metrics with the same labelset"). ``or`` keeps both outcomes of every
    series, drops only that 0 failed twin, and keeps a queue without any failure yet."""

    def counter(name: str) -> str:
        return one(f"rate({name}{{{matchers}}}[{window}])")

    return f"{counter(SUCCEEDED_COUNTER)} or {counter(FAILED_COUNTER)}"


def recorded_names() -> list[str]:
    """Every series the recording rules write, in the order of prometheus_rules.yaml."""
    names = [f(w) for w in FAILURE_WINDOWS for f in (failed, completed, failure_ratio)]
    return [*names, LATENCY_BUCKETS, LATENCY_P95]


def recording_groups(config: AlertsConfig) -> list[dict]:
    exporter = config.selectors.exporter
    failure_rules: list[dict] = []
    for window in FAILURE_WINDOWS:
        failure_rules += [
            {
                "record": failed(window),
                "expr": f"sum by ({BY_QUEUE}) ("
                + one(f"rate({FAILED_COUNTER}{{{exporter}}}[{window}])")
                + ")",
            },
            {
                "record": completed(window),
                "expr": f"sum by ({BY_QUEUE}) (" + completed_rate(exporter, window) + ")",
            },
            {
                "record": failure_ratio(window),
                "expr": f"{failed(window)}\n/\n{completed(window)}",
            },
        ]
    latency_rules = [
        {
            "record": LATENCY_BUCKETS,
            "expr": f"sum by ({BY_QUEUE}, le) ("
            + one(f"rate({LATENCY_HISTOGRAM}_bucket{{{exporter}}}[{LATENCY_WINDOW}])")
            + ")",
        },
        {
            "record": LATENCY_P95,
            "expr": f"histogram_quantile({LATENCY_QUANTILE}, {LATENCY_BUCKETS})",
        },
    ]
    return [
        {"name": "celery-task-failure.rules", "rules": failure_rules},
        {"name": "celery-task-latency.rules", "rules": latency_rules},
    ]
