"""Recording rules: the failure ratios and latency quantiles the alerts and dashboards share.

Names follow ``level:metric:operations``. Ratios are recorded as numerator and denominator
separately, so a dashboard can aggregate them correctly across queues.
"""

from __future__ import annotations

from alerts.config import AlertsConfig

# Windows of the multi-window, multi-burn-rate alerts (Google SRE workbook, chapter 5).
FAILURE_WINDOWS = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
LATENCY_QUANTILE = 0.95
LATENCY_WINDOW = "5m"

FAILED = "queue_name:celery_task_failed:rate{window}"
COMPLETED = "queue_name:celery_task_completed:rate{window}"
FAILURE_RATIO = "queue_name:celery_task_failed_per_completed:ratio_rate{window}"
LATENCY_BUCKETS = f"queue_name_le:fleetops_task_latency_seconds_bucket:rate{LATENCY_WINDOW}"
LATENCY_P95 = f"queue_name:fleetops_task_latency_seconds:p95_rate{LATENCY_WINDOW}"


def failure_ratio(window: str) -> str:
    return FAILURE_RATIO.format(window=window)


def recording_groups(config: AlertsConfig) -> list[dict]:
    exporter = config.selectors.exporter
    failure_rules: list[dict] = []
    for window in FAILURE_WINDOWS:
        failure_rules += [
            {
                "record": FAILED.format(window=window),
                "expr": f"sum by (queue_name) (rate(celery_task_failed_total{{{exporter}}}"
                f"[{window}]))",
            },
            {
                # Completed = succeeded + failed, selected together so that a queue without
                # any failure yet still has a denominator.
                "record": COMPLETED.format(window=window),
                "expr": "sum by (queue_name) (rate({__name__=~"
                '"celery_task_succeeded_total|celery_task_failed_total"'
                f"{', ' + exporter if exporter else ''}}}[{window}]))",
            },
            {
                "record": FAILURE_RATIO.format(window=window),
                "expr": f"{FAILED.format(window=window)}\n/\n{COMPLETED.format(window=window)}",
            },
        ]
    latency_rules = [
        {
            "record": LATENCY_BUCKETS,
            "expr": "sum by (queue_name, le) (rate(fleetops_task_latency_seconds_bucket"
            f"{{{exporter}}}[{LATENCY_WINDOW}]))",
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
