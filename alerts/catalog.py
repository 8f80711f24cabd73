"""Every alert of the fleet, built from the breaking points and the ``[alerts]`` settings.

Naming: CamelCase with the prefix ``Celery`` (the fleet) or ``Fleetops`` (our own pipeline).
Labels: exactly one ``severity`` (``critical`` pages, ``warning`` is a ticket, ``none`` is the
watchdog); tiered signals also carry ``signal`` and ``level`` so Alertmanager can let a higher
level inhibit a lower one for the same queue or worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from alerts import recording
from alerts.config import AlertsConfig, duration_seconds
from exporters.stream.health import STALL_AFTER
from fleetops.breaking_points import BreakingPoints, Level

LEVELS = ("warning", "critical", "breaking")
SEVERITY_OF_LEVEL = {"warning": "warning", "critical": "critical", "breaking": "critical"}

# Multi-window, multi-burn-rate pairs (SRE workbook): (long, short, burn factor, severity, for).
BURN_RATE_WINDOWS = [
    ("1h", "5m", 14.4, "critical", "2m"),
    ("6h", "30m", 6.0, "critical", "15m"),
    ("1d", "2h", 3.0, "warning", "1h"),
    ("3d", "6h", 1.0, "warning", "3h"),
]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    # Grafana variable name -> alert label that fills it.
    variables: dict[str, str] = field(default_factory=dict)


QUEUE_DASHBOARD = Dashboard("fleetops-queue", {"queue": "queue_name"})
WORKER_DASHBOARD = Dashboard("fleetops-worker", {"worker": "hostname"})
TASK_DASHBOARD = Dashboard("fleetops-task", {"queue": "queue_name"})
OVERVIEW_DASHBOARD = Dashboard("fleetops-overview")
EXPORTER_DASHBOARD = Dashboard("fleetops-exporter")
# The same dashboard, its history recorder row scoped to the alerting recorder's job.
RECORDER_DASHBOARD = Dashboard("fleetops-exporter", {"recorder_job": "job"})
FLOWER_DASHBOARD = Dashboard("fleetops-flower")

# The exporter and the recorder set ``..._stalled{part}`` to 1 once a part's thread has died or
# made no progress for this long: the first term of their time to page, before scrape,
# evaluation and ``for``.
STALL_AFTER_SECONDS = round(STALL_AFTER)


@dataclass(frozen=True)
class AlertRule:
    name: str
    group: str
    expr: str
    hold: str
    severity: str
    summary: str
    description: str
    dashboard: Dashboard
    labels: dict[str, str] = field(default_factory=dict)

    def to_rule(self, config: AlertsConfig) -> dict:
        rule: dict = {"alert": self.name, "expr": self.expr}
        if duration_seconds(self.hold) > 0:
            rule["for"] = self.hold
        rule["labels"] = {"severity": self.severity, **self.labels}
        rule["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": runbook_url(config.runbook_url_base, self.name),
            "dashboard_url": dashboard_url(config, self.dashboard),
        }
        return rule


def runbook_url(base: str, alert: str) -> str:
    """``<base>/<Alert>.md`` (a repository, the local pager), or ``base`` with ``{alert}``
    replaced, for pages that take the name as a parameter (the console's ``?runbook={alert}``)."""
    if "{alert}" in base:
        return base.replace("{alert}", alert)
    return f"{base.rstrip('/')}/{alert}.md"


def dashboard_url(config: AlertsConfig, dashboard: Dashboard) -> str:
    url = f"{config.dashboard_url_base.rstrip('/')}/d/{dashboard.uid}"
    query = "&".join(
        f"var-{variable}={{{{ $labels.{label} | urlquery }}}}"
        for variable, label in dashboard.variables.items()
    )
    return f"{url}?{query}" if query else url


def number(value: float) -> str:
    """A threshold as PromQL reads it: no trailing .0, no exponent."""
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text or "0"


def readable(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,g}"


def selector(*matchers: str) -> str:
    return "{" + ", ".join(m for m in matchers if m) + "}"


class CatalogBuilder:
    def __init__(self, points: BreakingPoints, config: AlertsConfig) -> None:
        self.points = points
        self.config = config
        sel = config.selectors
        self.exporter = selector(sel.exporter)
        self.queues = selector(sel.exporter, sel.work_queues)
        self.flower = selector(sel.flower)
        self.recorder = selector(sel.recorder)

    def hold(self, name: str, default: str) -> str:
        return self.config.hold_for(name, default)

    def build(self) -> list[AlertRule]:
        return [
            *self.queue_depth(),
            self.backlog_growing(),
            self.drain_too_slow(),
            self.no_consumer(),
            *self.task_latency(),
            *self.error_budget(),
            *self.worker_memory(),
            self.worker_down(),
            self.beat_missed_run(),
            self.dead_letter_growing(),
            self.events_stopped(),
            self.events_rejected(),
            self.task_events_missing(),
            self.history_events_dropped(),
            self.history_database_down(),
            self.history_events_quarantined(),
            *self.target_down(
                "FleetopsRecorderDown", "fleetops-recorder", self.config.selectors.recorder,
                "warning", "5m", RECORDER_DASHBOARD,
                "Task events go unrecorded: the console's task history has a gap from then on.",
            ),
            self.recorder_stalled(),
            *self.target_down(
                "FleetopsExporterDown", "fleetops-exporter", self.config.selectors.exporter,
                "critical", "3m", EXPORTER_DASHBOARD,
                "Without the exporter every queue, worker and task alert is blind.",
            ),
            self.exporter_stalled(),
            self.broker_down(),
            *self.target_down(
                "FleetopsFlowerDown", "Flower", self.config.selectors.flower,
                "warning", "10m", FLOWER_DASHBOARD,
                "Flower's web UI and its metrics are unavailable; tasks still run.",
            ),
            self.watchdog(),
        ]  # fmt: skip

    def level_alerts(
        self,
        signal: str,
        *,
        prefix: str,
        group: str,
        expr: Callable[[str], str],
        holds: dict[str, str],
        summaries: dict[str, str],
        description: Callable[[str, float], str],
        dashboard: Dashboard,
    ) -> list[AlertRule]:
        """One alert per level of a breaking-points signal: warning, critical, breaking."""
        thresholds = getattr(self.points, signal).thresholds()
        alerts = []
        for level in LEVELS:
            name = f"{prefix}{level.title()}"
            threshold = thresholds[Level(level)]
            alerts.append(
                AlertRule(
                    name=name,
                    group=group,
                    expr=expr(number(threshold)),
                    hold=self.hold(name, holds[level]),
                    severity=SEVERITY_OF_LEVEL[level],
                    summary=summaries[level],
                    description=description(level, threshold),
                    dashboard=dashboard,
                    labels={"signal": signal, "level": level},
                )
            )
        return alerts

    # -- queues ---------------------------------------------------------------------------

    def queue_depth(self) -> list[AlertRule]:
        return self.level_alerts(
            "queue_depth",
            prefix="CeleryQueueDepth",
            group="celery-queues",
            expr=lambda threshold: f"celery_queue_length{self.queues} >= {threshold}",
            holds={"warning": "15m", "critical": "5m", "breaking": "1m"},
            summaries={
                "warning": "A Celery queue is backing up past its warning depth.",
                "critical": "A Celery queue is deep enough that users are waiting for their tasks.",
                "breaking": "A Celery queue is at the depth where Redis runs out of memory.",
            },
            description=lambda level, threshold: (
                "Queue {{ $labels.queue_name }} holds {{ $value | humanize }} waiting"
                f" messages, at or above the {level} level of {readable(threshold)}."
            ),
            dashboard=QUEUE_DASHBOARD,
        )

    def backlog_growing(self) -> AlertRule:
        name = "CeleryQueueBacklogGrowing"
        backlog = self.config.backlog
        breaking = self.points.queue_depth.breaking
        horizon = int(duration_seconds(backlog.horizon))
        return AlertRule(
            name=name,
            group="celery-queues",
            expr=(
                f"predict_linear(celery_queue_length{self.queues}[{backlog.lookback}],"
                f" {horizon})\n  >= {number(breaking)}"
            ),
            hold=self.hold(name, "5m"),
            severity="critical",
            summary="A Celery queue grows fast enough to reach its breaking point soon.",
            description=(
                "At the growth of the last " + backlog.lookback + ", queue"
                " {{ $labels.queue_name }} will hold {{ $value | humanize }} messages in "
                + backlog.horizon
                + f", past the breaking point of {readable(breaking)} (Redis out of memory)."
            ),
            dashboard=QUEUE_DASHBOARD,
            labels={"signal": "queue_depth", "level": "critical"},
        )

    def drain_too_slow(self) -> AlertRule:
        name = "CeleryQueueDrainTooSlow"
        drain = self.config.drain
        limit = self.points.task_latency.thresholds()[Level(drain.latency_level)]
        return AlertRule(
            name=name,
            group="celery-queues",
            expr=(
                f"fleetops_queue_drain_seconds{self.queues} >= {number(limit)}\n"
                f"and\ncelery_queue_length{self.queues} >= {drain.min_depth}"
            ),
            hold=self.hold(name, "15m"),
            severity=SEVERITY_OF_LEVEL[drain.latency_level],
            summary="A Celery queue drains too slowly for its tasks to meet the latency limit.",
            description=(
                "At the current arrival and completion rates, queue {{ $labels.queue_name }}"
                " needs {{ $value | humanizeDuration }} to drain, longer than the"
                f" {drain.latency_level} task latency of {readable(limit)} s."
            ),
            dashboard=QUEUE_DASHBOARD,
            labels={"signal": "task_latency", "level": drain.latency_level},
        )

    def no_consumer(self) -> AlertRule:
        name = "CeleryQueueNoConsumer"
        return AlertRule(
            name=name,
            group="celery-queues",
            expr=(
                f"celery_queue_length{self.queues} > 0\nunless on (queue_name)\n"
                f"celery_active_consumer_count{self.queues} > 0"
            ),
            hold=self.hold(name, "5m"),
            severity="critical",
            summary="Messages wait in a Celery queue that no worker consumes.",
            description=(
                "Queue {{ $labels.queue_name }} holds {{ $value | humanize }} messages and no"
                " worker consumes it: they will wait until a worker is started with -Q"
                " {{ $labels.queue_name }}."
            ),
            dashboard=QUEUE_DASHBOARD,
        )

    def dead_letter_growing(self) -> AlertRule:
        name = "CeleryDeadLetterQueueGrowing"
        return AlertRule(
            name=name,
            group="celery-queues",
            expr=f"delta(fleetops_dead_letter_length{self.exporter}[15m]) > 0",
            hold=self.hold(name, "5m"),
            severity="warning",
            summary="Tasks that failed for good are piling up in the dead-letter queue.",
            description=(
                "About {{ $value | humanize }} tasks from queue {{ $labels.queue_name }} were"
                " dead-lettered in the last 15 minutes; they will not run again unless requeued."
            ),
            dashboard=QUEUE_DASHBOARD,
        )

    # -- tasks ----------------------------------------------------------------------------

    def task_latency(self) -> list[AlertRule]:
        return self.level_alerts(
            "task_latency",
            prefix="CeleryTaskLatency",
            group="celery-tasks",
            expr=lambda threshold: f"{recording.LATENCY_P95} >= {threshold}",
            holds={"warning": "15m", "critical": "10m", "breaking": "5m"},
            summaries={
                "warning": "Celery tasks take longer than the latency warning level end to end.",
                "critical": "Celery tasks take long enough end to end that users notice.",
                "breaking": "Celery tasks take longer than the latency breaking point end to end.",
            },
            description=lambda level, threshold: (
                "95% of the tasks of queue {{ $labels.queue_name }} finish within"
                " {{ $value | humanizeDuration }} of being sent, at or above the"
                f" {level} level of {_minutes(threshold)}."
            ),
            dashboard=TASK_DASHBOARD,
        )

    def error_budget(self) -> list[AlertRule]:
        name = "CeleryTaskErrorBudgetBurn"
        objective = self.points.objectives.task_success_ratio
        budget = self.points.objectives.error_budget
        alerts = []
        for long, short, factor, severity, hold in BURN_RATE_WINDOWS:
            threshold = number(round(factor * budget, 10))
            action = "page" if severity == "critical" else "ticket"
            alerts.append(
                AlertRule(
                    name=name,
                    group="celery-tasks",
                    expr=(
                        f"{recording.failure_ratio(long)} > {threshold}\nand\n"
                        f"{recording.failure_ratio(short)} > {threshold}"
                    ),
                    hold=self.hold(f"{name}:{long}", hold),
                    severity=severity,
                    summary="Celery tasks fail fast enough to exhaust the error budget.",
                    description=(
                        "{{ $value | humanizePercentage }} of the tasks of queue"
                        " {{ $labels.queue_name }} failed over the last " + long + " (and over"
                        f" the last {short}): {factor:g}x the error budget of the"
                        f" {objective:.1%} success objective ({action})."
                    ),
                    dashboard=TASK_DASHBOARD,
                    labels={"long_window": long, "short_window": short},
                )
            )
        return alerts

    def task_events_missing(self) -> AlertRule:
        name = "FleetopsTaskEventsMissing"
        window = self.config.events.window
        exporter = self.config.selectors.exporter
        task_counters = selector(
            '__name__=~"celery_task_succeeded_total|celery_task_failed_total"', exporter
        )
        return AlertRule(
            name=name,
            group="fleetops-pipeline",
            expr=(
                f"sum by (job, hostname) (increase(fleetops_worker_processed_total{self.exporter}"
                f"[{window}])) > 0\nunless on (job, hostname)\n"
                f"sum by (job, hostname) (rate({task_counters}[{window}])) > 0"
            ),
            hold=self.hold(name, "10m"),
            severity="warning",
            summary="A worker processes tasks but sends no task events.",
            description=(
                "Worker {{ $labels.hostname }} processed {{ $value | humanize }} tasks in the last"
                " " + window + " but the exporter saw none of their task events: the worker"
                " was started without -E (task events), so its tasks are missing from the"
                " failure and latency alerts."
            ),
            dashboard=WORKER_DASHBOARD,
        )

    # -- workers --------------------------------------------------------------------------

    def worker_memory(self) -> list[AlertRule]:
        return self.level_alerts(
            "worker_memory",
            prefix="CeleryWorkerMemory",
            group="celery-workers",
            expr=lambda threshold: f"fleetops_worker_memory_percent{self.exporter} >= {threshold}",
            holds={"warning": "15m", "critical": "5m", "breaking": "2m"},
            summaries={
                "warning": "A Celery worker uses more memory than its warning level.",
                "critical": "A Celery worker is close to its memory limit.",
                "breaking": "A Celery worker is about to be killed by the OOM killer.",
            },
            description=lambda level, threshold: (
                "Worker {{ $labels.hostname }} uses {{ $value | humanize }}% of its"
                f" memory limit, at or above the {level} level of {readable(threshold)}%."
            ),
            dashboard=WORKER_DASHBOARD,
        )

    def worker_down(self) -> AlertRule:
        name = "CeleryWorkerDown"
        return AlertRule(
            name=name,
            group="celery-workers",
            expr=(
                f"fleetops_worker_heartbeat_age_seconds{self.exporter}\n"
                f"and\ncelery_worker_up{self.exporter} == 0\n"
                # A worker that announced its shutdown (scale-down, deploy) is not missing.
                f"unless on (hostname)\nfleetops_worker_stopped_cleanly{self.exporter} == 1"
            ),
            hold=self.hold(name, "5m"),
            severity="warning",
            summary="A Celery worker stopped sending heartbeats.",
            description=(
                "Worker {{ $labels.hostname }} sent its last heartbeat"
                " {{ $value | humanizeDuration }} ago; its queues have less capacity."
            ),
            dashboard=WORKER_DASHBOARD,
        )

    def beat_missed_run(self) -> AlertRule:
        name = "CeleryBeatMissedRun"
        late_after = self.points.objectives.beat_missed_after_intervals
        return AlertRule(
            name=name,
            group="celery-beat",
            expr=(
                f"time() - fleetops_beat_last_run_timestamp_seconds{self.exporter}\n"
                f"  > fleetops_beat_interval_seconds{self.exporter} * {number(late_after)}"
            ),
            hold=self.hold(name, "1m"),
            severity="critical",
            summary="Celery Beat missed a scheduled run.",
            description=(
                "Beat last sent {{ $labels.name }} {{ $value | humanizeDuration }} ago, more"
                f" than {readable(late_after)} times its interval: the schedule is not running."
            ),
            dashboard=OVERVIEW_DASHBOARD,
        )

    # -- our own pipeline -----------------------------------------------------------------

    def events_stopped(self) -> AlertRule:
        name = "FleetopsEventsStopped"
        max_lag = self.config.events.max_lag
        return AlertRule(
            name=name,
            group="fleetops-pipeline",
            expr=(
                f"fleetops_exporter_event_lag_seconds{self.exporter}"
                f" > {number(duration_seconds(max_lag))}"
            ),
            hold=self.hold(name, "5m"),
            severity="critical",
            summary="No Celery events reach the exporter.",
            description=(
                "Exporter {{ $labels.instance }} applied its last event"
                " {{ $value | humanizeDuration }} ago (not even a worker heartbeat): task,"
                " latency and failure alerts are blind."
            ),
            dashboard=EXPORTER_DASHBOARD,
        )

    def events_rejected(self) -> AlertRule:
        name = "FleetopsEventsRejected"
        hold = self.hold(name, "15m")
        return AlertRule(
            name=name,
            group="fleetops-pipeline",
            expr=(
                "sum by (job, instance, reason) ("
                f"rate(fleetops_exporter_events_rejected_total{self.exporter}[5m])) > 0"
            ),
            hold=hold,
            severity="warning",
            summary="The exporter keeps rejecting Celery events it cannot use.",
            description=(
                "Exporter {{ $labels.instance }} has been dropping events as unusable"
                " ({{ $labels.reason }}) for " + hold + ", {{ $value | humanize }} per second"
                " now: a producer sends broken events, and the tasks they describe are missing"
                " from the metrics."
            ),
            dashboard=EXPORTER_DASHBOARD,
        )

    def history_events_dropped(self) -> AlertRule:
        name = "FleetopsHistoryEventsDropped"
        window = self.config.history.dropped_window
        return AlertRule(
            name=name,
            group="fleetops-pipeline",
            expr=f"increase(fleetops_history_events_dropped_total{self.recorder}[{window}]) > 0",
            hold=self.hold(name, "1m"),
            severity="critical",
            summary="The task-history recorder is losing events.",
            description=(
                "Recorder {{ $labels.instance }} dropped about {{ $value | humanize }} events"
                " ({{ $labels.reason }}) in the last " + window + ": its buffer and disk spool"
                " are full, and the task history has a gap from then on."
            ),
            dashboard=RECORDER_DASHBOARD,
        )

    def history_database_down(self) -> AlertRule:
        name = "FleetopsHistoryDatabaseDown"
        return AlertRule(
            name=name,
            group="fleetops-pipeline",
            expr=f"fleetops_history_database_up{self.recorder} == 0",
            hold=self.hold(name, "5m"),
            severity="warning",
            summary="The task-history recorder cannot write to its database.",
            description=(
                "Recorder {{ $labels.instance }} failed its last write (database_up ="
                " {{ $value | humanize }}): events wait in its buffer and disk spool, and are"
                " lost once that bound is full."
            ),
            dashboard=RECORDER_DASHBOARD,
        )

    def history_events_quarantined(self) -> AlertRule:
        name = "FleetopsHistoryEventsQuarantined"
        return AlertRule(
            name=name,
            group="fleetops-pipeline",
            expr=f"increase(fleetops_history_events_quarantined_total{self.recorder}[15m]) > 0",
            # Each quarantined event is a fact, not a condition that may clear by itself.
            hold=self.hold(name, "0s"),
            severity="warning",
            summary="The task-history recorder quarantined events its database refuses.",
            description=(
                "Recorder {{ $labels.instance }} moved about {{ $value | humanize }} events to"
                " its quarantine file in the last 15 minutes: the database refused each of them"
                " even alone. They are missing from the task history and are never replayed by"
                " themselves."
            ),
            dashboard=RECORDER_DASHBOARD,
        )

    def broker_down(self) -> AlertRule:
        name = "FleetopsBrokerDown"
        return AlertRule(
            name=name,
            group="fleetops-pipeline",
            expr=f"fleetops_exporter_broker_up{self.exporter} == 0",
            hold=self.hold(name, "2m"),
            severity="critical",
            summary="The exporter cannot reach the Celery broker.",
            description=(
                "Exporter {{ $labels.instance }} gets no answer from the broker"
                " (broker_up = {{ $value | humanize }}): no task can be sent or received."
            ),
            dashboard=EXPORTER_DASHBOARD,
        )

    def target_down(
        self,
        name: str,
        what: str,
        matchers: str,
        severity: str,
        default_hold: str,
        dashboard: Dashboard,
        impact: str,
    ) -> list[AlertRule]:
        return [
            AlertRule(
                name=name,
                group="fleetops-meta",
                # Down, or not scraped at all (no target configured): the same page either way.
                expr=f"up{selector(matchers)} == 0\nor\nabsent(up{selector(matchers)})",
                hold=self.hold(name, default_hold),
                severity=severity,
                summary=f"Prometheus cannot scrape {what}.",
                description=(
                    "{{ if $labels.instance }}Prometheus failed to scrape {{ $labels.instance }}"
                    " of job {{ $labels.job }} (up = {{ $value | humanize }})."
                    f"{{{{ else }}}}Prometheus has no scrape target matching {matchers}: it is"
                    f" not configured to scrape {what}.{{{{ end }}}} {impact}"
                ),
                dashboard=dashboard,
            )
        ]

    def stalled(
        self,
        name: str,
        metric: str,
        matchers: str,
        what: str,
        summary: str,
        dashboard: Dashboard,
        impact: str,
    ) -> AlertRule:
        """A part of a process that still answers scrapes but no longer makes progress: the
        same page as the process being down, sooner."""
        return AlertRule(
            name=name,
            group="fleetops-meta",
            expr=f"max by (job, instance, part) ({metric}{matchers}) > 0",
            hold=self.hold(name, "1m"),
            severity="critical",
            summary=summary,
            description=(
                "The {{ $labels.part }} of " + what + " {{ $labels.instance }} has died or made"
                f" no progress for {STALL_AFTER_SECONDS} s (stalled = {{{{ $value | humanize }}}})"
                f" while the process still answers: /healthz answers 503. {impact}"
            ),
            dashboard=dashboard,
        )

    def exporter_stalled(self) -> AlertRule:
        return self.stalled(
            "FleetopsExporterStalled", "fleetops_exporter_stalled", self.exporter,
            "exporter", "A part of the fleetops exporter has stopped making progress.",
            EXPORTER_DASHBOARD,
            "The metrics that part feeds are frozen, so the alerts reading them are blind.",
        )  # fmt: skip

    def recorder_stalled(self) -> AlertRule:
        return self.stalled(
            "FleetopsHistoryRecorderStalled", "fleetops_history_stalled", self.recorder,
            "recorder", "A part of the task-history recorder has stopped making progress.",
            RECORDER_DASHBOARD,
            "Task events are not being recorded: the task history has a gap from then on.",
        )  # fmt: skip

    def watchdog(self) -> AlertRule:
        return AlertRule(
            name="FleetopsWatchdog",
            group="fleetops-meta",
            expr="vector(1)",
            hold="0s",
            severity="none",
            summary="The alerting pipeline works: this alert always fires.",
            description=(
                "Always firing (value {{ $value | humanize }}) so that a dead man's switch"
                " notices when Prometheus, Alertmanager or the route to the pager breaks."
            ),
            dashboard=OVERVIEW_DASHBOARD,
        )


def _minutes(seconds: float) -> str:
    return f"{readable(seconds / 60)} min" if seconds >= 60 else f"{readable(seconds)} s"


def build_catalog(points: BreakingPoints, config: AlertsConfig) -> list[AlertRule]:
    return CatalogBuilder(points, config).build()


def alert_names(rules: list[AlertRule]) -> list[str]:
    return list(dict.fromkeys(rule.name for rule in rules))
