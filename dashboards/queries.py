"""Queries more than one dashboard shows the same way."""

from __future__ import annotations

from alerts.recording import FAILED_COUNTER, SUCCEEDED_COUNTER
from dashboards.panels import Query
from dashboards.promql import (
    BY_QUEUE,
    BY_WORKER,
    JOB,
    QUEUE,
    WORKER,
    aggregate,
    fleet,
    fleet_quantile,
    fleet_rate,
    or_zero,
    sel,
)


def per_queue(metric: str, operator: str = "sum", *, least: bool = False) -> str:
    """A queue gauge over the selected queues, one series per queue."""
    return aggregate(operator, list(BY_QUEUE), fleet(sel(metric, JOB, QUEUE), least=least))


def per_worker(metric: str, operator: str = "max", *, least: bool = False) -> str:
    """A worker gauge over the selected workers, one series per worker."""
    return aggregate(operator, list(BY_WORKER), fleet(sel(metric, JOB, WORKER), least=least))


def failure_ratio(*matchers: str) -> str:
    """Failed over finished tasks; no failures is a ratio of 0, not a missing series.

    The ratio of the recording rules (alerts/recording.py), from the same counters, but not
    their recorded series: those keep only ``queue_name`` over a fixed 5m window, while a panel
    follows the ``$job`` and ``$task`` variables and Grafana's ``$__rate_interval``."""
    failed = or_zero(f"sum({fleet_rate(sel(FAILED_COUNTER, *matchers))})")
    succeeded = or_zero(f"sum({fleet_rate(sel(SUCCEEDED_COUNTER, *matchers))})")
    return f"{failed} / ({succeeded} + {failed})"


def error_budget() -> Query:
    objective = sel("fleetops_objective", JOB, 'objective="task_success_ratio"')
    return Query(f"1 - max({objective})", "error budget (1 - objective)")


def percentiles(bucket_metric: str, *matchers: str) -> list[Query]:
    """The 50th, 95th and 99th percentile of a histogram, over everything selected."""
    bucket = sel(bucket_metric, *matchers)
    return [Query(fleet_quantile(q, bucket), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)]
