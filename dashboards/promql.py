"""Small PromQL writers, so every query filters by the dashboard variables the same way and
every rate() uses Grafana's $__rate_interval.

Fleet metrics (queues, workers, tasks, Beat) go through ``fleet()`` / ``fleet_rate()``, which
keep one copy of each series however many exporter replicas serve it, exactly as the alerts
and recording rules do (``alerts/replicas.py``); the exporter's own health metrics, Flower's and
the recorder's do not.
"""

from __future__ import annotations

from alerts.replicas import freshest, one
from fleetops.apps import APP_LABEL

# Every selector filters by the dashboards' `app` variable (fleetops/apps.py): All is ".*",
# which also matches a series without the label.
APP = f'{APP_LABEL}=~"$app"'
# The selected apps, and series of no app at all (alerts about the exporter or Prometheus).
APP_OR_NONE = f'{APP_LABEL}=~"$app|"'
JOB = 'job=~"$job"'
RECORDER_JOB = 'job=~"$recorder_job"'
QUEUE = 'queue_name=~"$queue"'
WORKER = 'hostname=~"$worker"'
TASK = 'name=~"$task"'
# Flower labels its series `worker` and `task` instead of celery-exporter's names.
FLOWER_WORKER = 'worker=~"$worker"'
FLOWER_TASK = 'task=~"$task"'

RATE_INTERVAL = "$__rate_interval"

# Two apps may both have a queue "celery" or a worker "celery@web": per-queue and per-worker
# series stay apart per app, and their legends say which app.
BY_QUEUE = (APP_LABEL, "queue_name")
BY_WORKER = (APP_LABEL, "hostname")
QUEUE_LEGEND = "{{app}}/{{queue_name}}"
WORKER_LEGEND = "{{app}}/{{hostname}}"


def sel(metric: str, *matchers: str, app: str | None = APP) -> str:
    """A vector selector of the selected apps: ``metric{app=~"$app", m1, m2}``.

    ``app=None`` only for the series Prometheus writes per scrape target (``up``, ``scrape_*``):
    one exporter serves every app in one target, so they carry no app. ``app=APP_OR_NONE`` for
    series only some of which carry an app (the recorder's, whose writer serves every app) or
    none (Flower's): a one-app fleet selects "default", which would blank them otherwise."""
    matchers = (app, *matchers) if app else matchers
    return f"{metric}{{{', '.join(matchers)}}}" if matchers else metric


def rate(selector: str) -> str:
    return f"rate({selector}[{RATE_INTERVAL}])"


def fleet(selector: str, *, least: bool = False) -> str:
    """One copy of a fleet gauge per series: the largest, or with ``least`` the smallest (ages,
    and estimates that a replica which has just started overstates)."""
    return freshest(selector) if least else one(selector)


def fleet_rate(selector: str) -> str:
    """The rate of a fleet counter, once: per replica, then the largest (see replicas.one)."""
    return one(rate(selector))


def aggregate(operator: str, labels: tuple[str, ...] | list[str], expr: str) -> str:
    """``operator by (labels) (expr)``; with no labels, one series over everything."""
    if not labels:
        return f"{operator}({expr})"
    return f"{operator} by ({', '.join(labels)}) ({expr})"


def sum_by(labels: tuple[str, ...] | list[str], expr: str) -> str:
    return aggregate("sum", labels, expr)


def max_by(labels: tuple[str, ...] | list[str], expr: str) -> str:
    return aggregate("max", labels, expr)


def quantile(q: float, bucket_selector: str, by: tuple[str, ...] = ()) -> str:
    """``histogram_quantile`` over the rate of a histogram's buckets, grouped by ``by``."""
    return f"histogram_quantile({q}, {sum_by(('le', *by), rate(bucket_selector))})"


def fleet_quantile(q: float, bucket_selector: str, by: tuple[str, ...] = ()) -> str:
    """``quantile`` over one copy of the exporter replicas' buckets."""
    return f"histogram_quantile({q}, {sum_by(('le', *by), fleet_rate(bucket_selector))})"


def or_zero(expr: str) -> str:
    """Counters of rare events (decode errors, drops) exist only once they happen; a flat 0
    tells the reader the pipeline works and nothing went wrong, where "No data" would not.

    Parenthesised whole: ``or`` binds weaker than every arithmetic operator, so without them
    ``A or on() vector(0) / B`` would read as ``A or (0 / B)``."""
    return f"(({expr}) or on() vector(0))"


def breaking_point(signal: str) -> str:
    """The configured thresholds of a signal, as served by the exporter (one series per level)."""
    signal_matcher = f'signal="{signal}"'
    return max_by(["level"], sel("fleetops_breaking_point", JOB, signal_matcher))
