"""Every alert of the fleet as data: one small frozen spec per rule, in the order of the file.

Naming: CamelCase with the prefix ``Celery`` (the fleet) or ``Fleetops`` (our own pipeline).
Labels: exactly one ``severity`` (``critical`` pages, ``warning`` is a ticket, ``none`` is the
watchdog); tiered signals also carry ``signal`` and ``level`` so Alertmanager can let a higher
level inhibit a lower one for the same queue or worker.

Fleet metrics (queues, workers, tasks, Beat) are read through ``{one}`` (or ``{freshest}`` for
ages), which keeps one copy per series however many exporter replicas serve it
(``alerts/replicas.py``), so two replicas never double a value or page twice. The exporter's own
health (``up``, ``fleetops_exporter_*``) is read per replica.

Every string of a spec may hold ``{placeholders}`` (a lower-case name in single braces, never
PromQL's ``{label="..."}`` nor Go's ``{{ ... }}``); ``alerts/catalog.py`` fills them from the
breaking points and the ``[alerts]`` settings. A spec's ``hold`` is the default ``for`` of its
alert: the one place it is written (``[alerts.for]`` overrides it).

This module imports nothing of the configuration, so the configuration can be validated against
the names and defaults defined here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from alerts import recording

LEVELS = ("warning", "critical", "breaking")
SEVERITY_OF_LEVEL = MappingProxyType(
    {"warning": "warning", "critical": "critical", "breaking": "critical"}
)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    # Grafana variable name -> alert label that fills it.
    variables: Mapping[str, str] = field(default_factory=dict)


QUEUE_DASHBOARD = Dashboard("fleetops-queue", {"queue": "queue_name"})
WORKER_DASHBOARD = Dashboard("fleetops-worker", {"worker": "hostname"})
TASK_DASHBOARD = Dashboard("fleetops-task", {"queue": "queue_name"})
# The task dashboard scoped to the alert's task too: the task-fault alerts name one task.
TASK_FAULT_DASHBOARD = Dashboard("fleetops-task", {"queue": "queue_name", "task": "name"})
# A task's settings (its time limit) belong to no queue: every queue, that task.
TASK_NAME_DASHBOARD = Dashboard("fleetops-task", {"task": "name"})
OVERVIEW_DASHBOARD = Dashboard("fleetops-overview")
EXPORTER_DASHBOARD = Dashboard("fleetops-exporter")
# The same dashboard, its history recorder row scoped to the alerting recorder's job.
RECORDER_DASHBOARD = Dashboard("fleetops-exporter", {"recorder_job": "job"})
FLOWER_DASHBOARD = Dashboard("fleetops-flower")


@dataclass(frozen=True)
class AlertSpec:
    name: str
    group: str
    severity: str
    hold: str  # the default `for`
    expr: str
    summary: str
    description: str
    dashboard: Dashboard
    labels: Mapping[str, str] = field(default_factory=dict)
    # The breaking-points level the alert fires at, as (signal, level): fills {threshold},
    # {threshold_readable} and {threshold_duration}.
    threshold: tuple[str, str] | None = None
    # The key of its `for` in [alerts.for], when several rules share one alert name.
    hold_key: str | None = None

    @property
    def for_key(self) -> str:
        return self.hold_key or self.name


def level_alerts(
    signal: str,
    *,
    prefix: str,
    group: str,
    expr: str,
    holds: Mapping[str, str],
    summaries: Mapping[str, str],
    description: str,
    dashboard: Dashboard,
) -> tuple[AlertSpec, ...]:
    """One alert per level of a breaking-points signal; ``{level}`` names the level."""
    return tuple(
        AlertSpec(
            name=f"{prefix}{level.title()}",
            group=group,
            severity=SEVERITY_OF_LEVEL[level],
            hold=holds[level],
            expr=expr,
            summary=summaries[level],
            description=description.replace("{level}", level),
            dashboard=dashboard,
            labels={"signal": signal, "level": level},
            threshold=(signal, level),
        )
        for level in LEVELS
    )


@dataclass(frozen=True)
class BurnRateWindow:
    """A multi-window, multi-burn-rate pair (SRE workbook)."""

    long: str
    short: str
    factor: float
    severity: str
    hold: str


BURN_RATE_WINDOWS = (
    BurnRateWindow("1h", "5m", 14.4, "critical", "2m"),
    BurnRateWindow("6h", "30m", 6.0, "critical", "15m"),
    BurnRateWindow("1d", "2h", 3.0, "warning", "1h"),
    BurnRateWindow("3d", "6h", 1.0, "warning", "3h"),
)
ERROR_BUDGET_ALERT = "CeleryTaskErrorBudgetBurn"


def burn_threshold_key(window: BurnRateWindow) -> str:
    """The placeholder of the ratio a window fires at: its factor times the error budget."""
    return f"burn_threshold_{window.long}"


def error_budget_alerts() -> tuple[AlertSpec, ...]:
    return tuple(
        AlertSpec(
            name=ERROR_BUDGET_ALERT,
            group="celery-tasks",
            severity=window.severity,
            hold=window.hold,
            expr=(
                f"{recording.failure_ratio(window.long)} > {{{burn_threshold_key(window)}}}\n"
                f"and\n{recording.failure_ratio(window.short)} > {{{burn_threshold_key(window)}}}"
            ),
            summary="Celery tasks fail fast enough to exhaust the error budget.",
            description=(
                "{{ $value | humanizePercentage }} of the tasks of queue"
                f" {{{{ $labels.queue_name }}}} failed over the last {window.long} (and over"
                f" the last {window.short}): {window.factor:g}x the error budget of the"
                " {objective} success objective"
                f" ({'page' if window.severity == 'critical' else 'ticket'})."
            ),
            dashboard=TASK_DASHBOARD,
            labels={"long_window": window.long, "short_window": window.short},
            hold_key=f"{ERROR_BUDGET_ALERT}:{window.long}",
        )
        for window in BURN_RATE_WINDOWS
    )


def target_down(
    name: str,
    job: str,
    what: str,
    severity: str,
    hold: str,
    dashboard: Dashboard,
    impact: str,
    *,
    replicated: bool = False,
) -> AlertSpec:
    """Prometheus fails to scrape ``job`` (a selector placeholder: exporter, flower...).

    ``replicated``: the job runs replicas side by side, and it is down only once none of them
    answers (one replica down is ``replica_down``)."""
    down = f"max by (job) (up{{{job}}}) == 0" if replicated else f"up{{{job}}} == 0"
    failed = (
        "every target of job {{ $labels.job }}" if replicated
        else "{{ $labels.instance }} of job {{ $labels.job }}"
    )  # fmt: skip
    # absent() yields 1 with the selector's job, never an instance; a down job yields 0.
    scraped = "eq $value 0.0" if replicated else "$labels.instance"
    return AlertSpec(
        name=name,
        group="fleetops-meta",
        severity=severity,
        hold=hold,
        # Down, or not scraped at all (no target configured): the same page either way.
        expr=f"{down}\nor\nabsent(up{{{job}}})",
        summary=f"Prometheus cannot scrape {what}.",
        description=(
            f"{{{{ if {scraped} }}}}Prometheus failed to scrape {failed}"
            " (up = {{ $value | humanize }})."
            f"{{{{ else }}}}Prometheus has no scrape target matching {{{job}_matchers}}: it is"
            f" not configured to scrape {what}.{{{{ end }}}} {impact}"
        ),
        dashboard=dashboard,
    )


def replica_down(
    name: str, job: str, what: str, hold: str, dashboard: Dashboard, all_down: str
) -> AlertSpec:
    """One replica of ``job`` cannot be scraped while another still is: a ticket, since the
    others serve every metric; ``all_down`` is the alert that pages once none answers."""
    return AlertSpec(
        name=name,
        group="fleetops-meta",
        severity="warning",
        hold=hold,
        expr=f"up{{{job}}} == 0\nand on (job)\nmax by (job) (up{{{job}}}) > 0",
        summary=f"Prometheus cannot scrape one replica of {what}.",
        description=(
            "Prometheus failed to scrape {{ $labels.instance }}{{ with $labels.replica }}"
            " (replica {{ . }}){{ end }} of job {{ $labels.job }} (up = {{ $value | humanize }})."
            " The other replicas still serve every metric, so no alert is blind, but none is"
            f" spare: if they stop too, {all_down} pages."
        ),
        dashboard=dashboard,
    )


def stalled(
    name: str, metric: str, job: str, what: str, summary: str, dashboard: Dashboard, impact: str
) -> AlertSpec:
    """A part of a process that still answers scrapes but no longer makes progress: the same
    page as the process being down, sooner."""
    return AlertSpec(
        name=name,
        group="fleetops-meta",
        severity="critical",
        hold="1m",
        expr=f"max by ({{app}}, job, instance, part) ({metric}{{{job}}}) > 0",
        summary=summary,
        description=(
            f"The {{{{ $labels.part }}}} of {what} {{{{ $labels.instance }}}} has died or made"
            " no progress for {stall_after} s (stalled = {{ $value | humanize }})"
            f" while the process still answers: /healthz answers 503. {impact}"
        ),
        dashboard=dashboard,
    )


QUEUE_DEPTH = level_alerts(
    "queue_depth",
    prefix="CeleryQueueDepth",
    group="celery-queues",
    expr="{one} (celery_queue_length{queues}) >= {threshold}",
    holds={"warning": "15m", "critical": "5m", "breaking": "1m"},
    summaries={
        "warning": "A Celery queue is backing up past its warning depth.",
        "critical": "A Celery queue is deep enough that users are waiting for their tasks.",
        "breaking": "A Celery queue is at the depth where Redis runs out of memory.",
    },
    description=(
        "Queue {{ $labels.queue_name }} holds {{ $value | humanize }} waiting"
        " messages, at or above the {level} level of {threshold_readable}."
    ),
    dashboard=QUEUE_DASHBOARD,
)

QUEUES = (
    *QUEUE_DEPTH,
    AlertSpec(
        name="CeleryQueueBacklogGrowing",
        group="celery-queues",
        severity="critical",
        hold="5m",
        expr=(
            "{one} (predict_linear(celery_queue_length{queues}[{lookback}], {horizon_seconds}))\n"
            "  >= {threshold}"
        ),
        summary="A Celery queue grows fast enough to reach its breaking point soon.",
        description=(
            "At the growth of the last {lookback}, queue {{ $labels.queue_name }} will hold"
            " {{ $value | humanize }} messages in {horizon}, past the breaking point of"
            " {threshold_readable} (Redis out of memory)."
        ),
        dashboard=QUEUE_DASHBOARD,
        # A prediction pages like the critical level, and the breaking level silences it.
        labels={"signal": "queue_depth", "level": "critical"},
        threshold=("queue_depth", "breaking"),
    ),
    AlertSpec(
        name="CeleryQueueDrainTooSlow",
        group="celery-queues",
        # Severity and level follow the task-latency level of [alerts.drain].
        severity="{drain_severity}",
        hold="15m",
        expr=(
            # The shortest estimate: a replica that has just started has seen no completions
            # yet and would estimate forever.
            "{freshest} (fleetops_queue_drain_seconds{queues}) >= {drain_limit}\n"
            "and\n{one} (celery_queue_length{queues}) >= {drain_min_depth}"
        ),
        summary="A Celery queue drains too slowly for its tasks to meet the latency limit.",
        description=(
            "At the current arrival and completion rates, queue {{ $labels.queue_name }}"
            " needs {{ $value | humanizeDuration }} to drain, longer than the"
            " {drain_level} task latency of {drain_limit_readable} s."
        ),
        dashboard=QUEUE_DASHBOARD,
        labels={"signal": "task_latency", "level": "{drain_level}"},
    ),
    AlertSpec(
        name="CeleryQueueNoConsumer",
        group="celery-queues",
        severity="critical",
        hold="5m",
        expr=(
            "{one} (celery_queue_length{queues}) > 0\nunless on ({app}, queue_name)\n"
            "{one} (celery_active_consumer_count{queues}) > 0"
        ),
        summary="Messages wait in a Celery queue that no worker consumes.",
        description=(
            "Queue {{ $labels.queue_name }} holds {{ $value | humanize }} messages and no"
            " worker consumes it: they will wait until a worker is started with -Q"
            " {{ $labels.queue_name }}."
        ),
        dashboard=QUEUE_DASHBOARD,
    ),
)

TASKS = (
    *level_alerts(
        "task_latency",
        prefix="CeleryTaskLatency",
        group="celery-tasks",
        expr="{latency_p95} >= {threshold}",
        holds={"warning": "15m", "critical": "10m", "breaking": "5m"},
        summaries={
            "warning": "Celery tasks take longer than the latency warning level end to end.",
            "critical": "Celery tasks take long enough end to end that users notice.",
            "breaking": "Celery tasks take longer than the latency breaking point end to end.",
        },
        description=(
            "95% of the tasks of queue {{ $labels.queue_name }} finish within"
            " {{ $value | humanizeDuration }} of being sent, at or above the"
            " {level} level of {threshold_duration}."
        ),
        dashboard=TASK_DASHBOARD,
    ),
    *error_budget_alerts(),
)


# The task faults of fleetops/task_faults.py (docs/task-faults.md): orphaned, lost, stuck and
# run-twice tasks, and the visibility-timeout trap before it bites. Counters are read as their
# increase over `{task_faults_window}`: each lost, repeated or too-far ETA task is a fact that
# keeps its alert on for that window, not a condition that clears by itself (no `for`).
NEAR_VISIBILITY_TIMEOUT = "CeleryTaskRuntimeNearVisibilityTimeout"
# The visibility timeout in force under acks_late, one series per exporter job; no series
# (so no alert) for RabbitMQ or when the workers acknowledge before running.
_VISIBILITY_TIMEOUT_UNDER_ACKS_LATE = (
    "{near_ratio} * {freshest} (fleetops_broker_visibility_timeout_seconds{acks_late})"
)
# The number the description shows, read at the time the alert fires.
_VISIBILITY_TIMEOUT_NOW = (
    # The app's own broker: a series without the label matches app="" (no app).
    "{{ with printf `min(fleetops_broker_visibility_timeout_seconds"
    '{job=%q, app=%q, acks_late="true"})` $labels.job $labels.app | query }}'
    "{{ . | first | value | humanizeDuration }}{{ end }}"
)


def near_visibility_timeout(kind: str, metric: str, description: str) -> AlertSpec:
    """A task's time limit, or its longest current run, at ``near_ratio`` of the visibility
    timeout under acks_late: one rule per ``kind``, one alert name and one `for`."""
    return AlertSpec(
        name=NEAR_VISIBILITY_TIMEOUT,
        group="celery-tasks",
        severity="warning",
        hold="1m",
        expr=(
            f"{{one}} ({metric}{{exporter}})\n>= on ({{app}}, job) group_left ()\n"
            + _VISIBILITY_TIMEOUT_UNDER_ACKS_LATE
        ),
        summary="Celery tasks may run long enough under acks_late to be handed out twice.",
        description=(
            f"{description}, at least {{near_ratio_readable}} of the visibility timeout"
            f" ({_VISIBILITY_TIMEOUT_NOW}) under acks_late: a run still going when the"
            " visibility timeout passes is handed to another worker by Redis and runs twice."
        ),
        dashboard=TASK_NAME_DASHBOARD if kind == "time_limit" else TASK_FAULT_DASHBOARD,
        labels={"kind": kind},
    )


def counted_in_window(counter: str) -> str:
    """A counter that rose within ``{task_faults_window}``.

    ``increase()`` needs a sample before the first count. The exporter shows these counters
    at 0 from the first start of a task of each name and queue (docs/exporter.md), and a loss
    or a second run usually comes a redelivery window or a visibility timeout after that, once
    Prometheus has scraped the 0. Not always: the first task of a name orphaned and lost, or
    redelivered by RabbitMQ, within one scrape of its start is missed (docs/alerts.md). The
    ETA counter counts at a task's first receipt, so its alert also reads the gauge of tasks
    waiting now (``ETA_WAITING_PAST_TIMEOUT``).
    """
    return f"{{one}} (increase({counter}[{{task_faults_window}}])) > 0"


# Tasks waiting now for an ETA further away than the visibility timeout, valued 1 each name and
# queue: true from the scrape after the receipt for as long as the task waits, which covers the
# very first receipt of a task name, which increase() cannot see (a series born counting).
ETA_WAITING_PAST_TIMEOUT = (
    "(\n  {one} (fleetops_task_eta_farthest_seconds{exporter})\n"
    "  > bool on ({app}, job) group_left ()\n"
    "  min by ({app}, job) (fleetops_broker_visibility_timeout_seconds{exporter})\n) == 1"
)


TASK_FAULTS = (
    AlertSpec(
        name="CeleryTaskOrphaned",
        group="celery-tasks",
        severity="warning",
        hold="2m",
        expr="{one} (fleetops_tasks_orphaned{exporter}) > 0",
        summary="Celery tasks were left started on a worker that went down.",
        description=(
            "{{ $value | humanize }} task(s) {{ $labels.name }} of queue {{ $labels.queue_name }}"
            " started on a worker that then went down, with no result and no new start: they"
            " wait for redelivery (under acks_late, after the visibility timeout) or are lost."
        ),
        dashboard=TASK_FAULT_DASHBOARD,
    ),
    AlertSpec(
        name="CeleryTaskLost",
        group="celery-tasks",
        severity="critical",
        hold="0s",
        expr=counted_in_window("fleetops_task_orphans_total{orphans_lost}"),
        summary="Celery tasks orphaned by a worker that went down will never run again.",
        description=(
            "About {{ $value | humanize }} task(s) {{ $labels.name }} of queue"
            " {{ $labels.queue_name }} were orphaned and not redelivered within their"
            " redelivery window in the last {task_faults_window}: their work is lost unless"
            " someone sends them again."
        ),
        dashboard=TASK_FAULT_DASHBOARD,
    ),
    AlertSpec(
        name="CeleryTaskStuck",
        group="celery-tasks",
        severity="warning",
        hold="5m",
        expr="{one} (fleetops_tasks_stuck{exporter}) > 0",
        summary="Celery tasks run past their bound on a live worker.",
        description=(
            "{{ $value | humanize }} task(s) {{ $labels.name }} of queue {{ $labels.queue_name }}"
            " have been running longer than their bound (time limit plus grace, or the"
            " configured bound) on a worker that is still alive: they hold a pool slot and may"
            " never finish."
        ),
        dashboard=TASK_FAULT_DASHBOARD,
    ),
    AlertSpec(
        name="CeleryTaskRanTwice",
        group="celery-tasks",
        severity="warning",
        hold="0s",
        expr=counted_in_window("fleetops_task_runs_repeated_total{exporter}"),
        summary="A Celery task ran more than once.",
        description=(
            "About {{ $value | humanize }} extra start(s) of {{ $labels.name }} on queue"
            " {{ $labels.queue_name }} in the last {task_faults_window}: the same task id ran"
            " more than once without a retry (redelivered after the visibility timeout or after"
            " its worker went down), so its side effects may have happened twice."
        ),
        dashboard=TASK_FAULT_DASHBOARD,
    ),
    AlertSpec(
        name="CeleryTaskEtaBeyondVisibilityTimeout",
        group="celery-tasks",
        severity="warning",
        hold="0s",
        expr=(
            counted_in_window("fleetops_task_eta_beyond_visibility_total{exporter}")
            + "\nor\n"
            + ETA_WAITING_PAST_TIMEOUT
        ),
        summary="Celery tasks wait for an ETA beyond the visibility timeout and will run twice.",
        description=(
            "About {{ $value | humanize }} task(s) {{ $labels.name }} of queue"
            " {{ $labels.queue_name }} were received in the last {task_faults_window} with an"
            " ETA or countdown further away than the broker's visibility timeout: Redis hands"
            " each of them to another worker while it waits, and it runs once per copy."
        ),
        dashboard=TASK_FAULT_DASHBOARD,
    ),
    near_visibility_timeout(
        "time_limit",
        "fleetops_task_time_limit_seconds",
        "The hard time limit of {{ $labels.name }} is {{ $value | humanizeDuration }}",
    ),
    near_visibility_timeout(
        "runtime",
        "fleetops_task_running_longest_seconds",
        "A task {{ $labels.name }} of queue {{ $labels.queue_name }} has been running for"
        " {{ $value | humanizeDuration }}",
    ),
)


WORKERS = (
    *level_alerts(
        "worker_memory",
        prefix="CeleryWorkerMemory",
        group="celery-workers",
        expr="{one} (fleetops_worker_memory_percent{exporter}) >= {threshold}",
        holds={"warning": "15m", "critical": "5m", "breaking": "2m"},
        summaries={
            "warning": "A Celery worker uses more memory than its warning level.",
            "critical": "A Celery worker is close to its memory limit.",
            "breaking": "A Celery worker is about to be killed by the OOM killer.",
        },
        description=(
            "Worker {{ $labels.hostname }} uses {{ $value | humanize }}% of its"
            " memory limit, at or above the {level} level of {threshold_readable}%."
        ),
        dashboard=WORKER_DASHBOARD,
    ),
    AlertSpec(
        name="CeleryWorkerDown",
        group="celery-workers",
        severity="warning",
        hold="5m",
        expr=(
            # Down only when no replica heard it; its age as the replica that heard it last saw.
            "{freshest} (fleetops_worker_heartbeat_age_seconds{exporter})\n"
            "and\n{one} (celery_worker_up{exporter}) == 0\n"
            # A worker that announced its shutdown (scale-down, deploy) is not missing.
            "unless on ({app}, hostname)\n{one} (fleetops_worker_stopped_cleanly{exporter}) == 1"
        ),
        summary="A Celery worker stopped sending heartbeats.",
        description=(
            "Worker {{ $labels.hostname }} sent its last heartbeat"
            " {{ $value | humanizeDuration }} ago; its queues have less capacity."
        ),
        dashboard=WORKER_DASHBOARD,
    ),
)

BEAT_AND_DEAD_LETTERS = (
    AlertSpec(
        name="CeleryBeatMissedRun",
        group="celery-beat",
        severity="critical",
        hold="1m",
        # Counted from the next expected run less one interval (the last run of an interval
        # entry): the next run is announced before the first run, so an entry that never
        # runs is caught too, which its last run alone could not do.
        expr=(
            "time() - {one} (fleetops_beat_next_run_timestamp_seconds{exporter})\n"
            "  + {one} (fleetops_beat_interval_seconds{exporter})\n"
            "  > {one} (fleetops_beat_interval_seconds{exporter}) * {beat_late_after}"
        ),
        summary="Celery Beat missed a scheduled run.",
        description=(
            "Beat has not sent {{ $labels.name }} for {{ $value | humanizeDuration }}, more"
            " than {beat_late_after_readable} times its interval: the schedule is not running."
        ),
        dashboard=OVERVIEW_DASHBOARD,
    ),
    AlertSpec(
        name="CeleryDeadLetterQueueGrowing",
        group="celery-queues",
        severity="warning",
        hold="5m",
        expr="{one} (delta(fleetops_dead_letter_length{exporter}[15m])) > 0",
        summary="Tasks that failed for good are piling up in the dead-letter queue.",
        description=(
            "About {{ $value | humanize }} tasks from queue {{ $labels.queue_name }} were"
            " dead-lettered in the last 15 minutes; they will not run again unless requeued."
        ),
        dashboard=QUEUE_DASHBOARD,
    ),
)

PIPELINE = (
    AlertSpec(
        name="FleetopsEventsStopped",
        group="fleetops-pipeline",
        severity="critical",
        hold="5m",
        expr="fleetops_exporter_event_lag_seconds{exporter} > {max_lag_seconds}",
        summary="No Celery events reach the exporter.",
        description=(
            "Exporter {{ $labels.instance }} applied its last event"
            " {{ $value | humanizeDuration }} ago (not even a worker heartbeat): task,"
            " latency and failure alerts are blind."
        ),
        dashboard=EXPORTER_DASHBOARD,
    ),
    AlertSpec(
        name="FleetopsEventsRejected",
        group="fleetops-pipeline",
        severity="warning",
        hold="15m",
        expr=(
            "sum by ({app}, job, instance, reason) ("
            "rate(fleetops_exporter_events_rejected_total{exporter}[5m])) > 0"
        ),
        summary="The exporter keeps rejecting Celery events it cannot use.",
        description=(
            "Exporter {{ $labels.instance }} has been dropping events as unusable"
            " ({{ $labels.reason }}) for {hold}, {{ $value | humanize }} per second"
            " now: a producer sends broken events, and the tasks they describe are missing"
            " from the metrics."
        ),
        dashboard=EXPORTER_DASHBOARD,
    ),
    AlertSpec(
        name="FleetopsTaskEventsMissing",
        group="fleetops-pipeline",
        severity="warning",
        hold="10m",
        # With worker groups the task counters name the group in `hostname`, the worker's own
        # series the pod, with the group in `worker_group`: both sides are compared on
        # `events_host`, the group where the exporter sets one and the hostname where it does
        # not (no groups), and that helper label is dropped again. A pod without -E in a group
        # whose other pods send events stays hidden: the counters cannot tell the pods apart.
        expr=(
            "sum without (events_host) (\n"
            "  sum by ({app}, job, hostname, worker_group, events_host) (label_replace(label_join("
            "{one} (increase(fleetops_worker_processed_total{exporter}[{events_window}])),"
            ' "events_host", ";", "worker_group", "hostname"),'
            ' "events_host", "$1", "events_host", ";?([^;]+).*")) > 0'
            "\n  unless on ({app}, job, events_host)\n"
            "  sum by ({app}, job, events_host) ("
            'label_replace({task_rate}, "events_host", "$1", "hostname", "(.+)")) > 0\n)'
        ),
        summary="A worker processes tasks but sends no task events.",
        description=(
            "Worker {{ $labels.hostname }} processed {{ $value | humanize }} tasks in the last"
            " {events_window} but the exporter saw none of their task events: the worker"
            " was started without -E (task events), so its tasks are missing from the"
            " failure and latency alerts."
        ),
        dashboard=WORKER_DASHBOARD,
    ),
    AlertSpec(
        name="FleetopsHistoryEventsDropped",
        group="fleetops-pipeline",
        severity="critical",
        hold="1m",
        expr="increase(fleetops_history_events_dropped_total{recorder}[{dropped_window}]) > 0",
        summary="The task-history recorder is losing events.",
        description=(
            "Recorder {{ $labels.instance }} dropped about {{ $value | humanize }} events"
            " in the last {dropped_window} for {{ $labels.reason }} (overflow: they came faster"
            " than it reads; buffer_full: its buffer and disk spool are full): the task history"
            " has a gap from then on."
        ),
        dashboard=RECORDER_DASHBOARD,
    ),
    AlertSpec(
        name="FleetopsHistoryDatabaseDown",
        group="fleetops-pipeline",
        severity="warning",
        hold="5m",
        expr="fleetops_history_database_up{recorder} == 0",
        summary="The task-history recorder cannot write to its database.",
        description=(
            "Recorder {{ $labels.instance }} failed its last write (database_up ="
            " {{ $value | humanize }}): events wait in its buffer and disk spool, and are"
            " lost once that bound is full."
        ),
        dashboard=RECORDER_DASHBOARD,
    ),
    AlertSpec(
        name="FleetopsHistoryBrokerDown",
        group="fleetops-pipeline",
        severity="warning",
        hold="5m",
        # Per app: a recorder that follows several apps stays up, and FleetopsRecorderDown
        # silent, while one app's broker is unreachable.
        expr="fleetops_history_broker_up{recorder} == 0",
        summary="The task-history recorder cannot reach one app's broker.",
        description=(
            "Recorder {{ $labels.instance }} has had no connection to this app's broker"
            " for {hold} (broker_up = {{ $value | humanize }}): that app's"
            " task events are missing from the history from then on; the other apps' are"
            " still recorded."
        ),
        dashboard=RECORDER_DASHBOARD,
    ),
    AlertSpec(
        name="FleetopsHistoryEventsQuarantined",
        group="fleetops-pipeline",
        severity="warning",
        # Each quarantined event is a fact, not a condition that may clear by itself.
        hold="0s",
        expr="increase(fleetops_history_events_quarantined_total{recorder}[15m]) > 0",
        summary="The task-history recorder quarantined events its database refuses.",
        description=(
            "Recorder {{ $labels.instance }} moved about {{ $value | humanize }} events to"
            " its quarantine file in the last 15 minutes: the database refused each of them"
            " even alone. They are missing from the task history and are never replayed by"
            " themselves."
        ),
        dashboard=RECORDER_DASHBOARD,
    ),
)

LIVENESS = (
    # Is each process scraped and making progress (and can the exporter reach the broker)?
    target_down(
        "FleetopsRecorderDown", "recorder", "fleetops-recorder", "warning", "5m",
        RECORDER_DASHBOARD,
        "This recorder records nothing: unless another recorder writes the same history"
        " database, the console's task history has a gap from then on.",
    ),
    stalled(
        "FleetopsHistoryRecorderStalled", "fleetops_history_stalled", "recorder", "recorder",
        "A part of the task-history recorder has stopped making progress.", RECORDER_DASHBOARD,
        "This recorder records nothing: unless another recorder writes the same history"
        " database, the task history has a gap from then on.",
    ),
    target_down(
        "FleetopsExporterDown", "exporter", "fleetops-exporter", "critical", "3m",
        EXPORTER_DASHBOARD, "Without the exporter every queue, worker and task alert is blind.",
        replicated=True,
    ),
    replica_down(
        "FleetopsExporterReplicaDown", "exporter", "fleetops-exporter", "5m", EXPORTER_DASHBOARD,
        "FleetopsExporterDown",
    ),
    stalled(
        "FleetopsExporterStalled", "fleetops_exporter_stalled", "exporter", "exporter",
        "A part of the fleetops exporter has stopped making progress.", EXPORTER_DASHBOARD,
        "The metrics that part feeds are frozen, so the alerts reading them are blind.",
    ),
    AlertSpec(
        name="FleetopsBrokerDown",
        group="fleetops-pipeline",
        severity="critical",
        hold="2m",
        expr="fleetops_exporter_broker_up{exporter} == 0",
        summary="The exporter cannot reach the Celery broker.",
        description=(
            "Exporter {{ $labels.instance }} gets no answer from the broker"
            " (broker_up = {{ $value | humanize }}): no task can be sent or received."
        ),
        dashboard=EXPORTER_DASHBOARD,
    ),
    target_down(
        "FleetopsFlowerDown", "flower", "Flower", "warning", "10m", FLOWER_DASHBOARD,
        "Flower's web UI and its metrics are unavailable; tasks still run.",
    ),
    AlertSpec(
        name="FleetopsWatchdog",
        group="fleetops-meta",
        severity="none",
        hold="0s",
        expr="vector(1)",
        summary="The alerting pipeline works: this alert always fires.",
        description=(
            "Always firing (value {{ $value | humanize }}) so that a dead man's switch"
            " notices when Prometheus, Alertmanager or the route to the pager breaks."
        ),
        dashboard=OVERVIEW_DASHBOARD,
    ),
)  # fmt: skip

# Every alerting rule, in the order of alerts/prometheus_alerts.yaml.
ALERTS: tuple[AlertSpec, ...] = (
    *QUEUES, *TASKS, *TASK_FAULTS, *WORKERS, *BEAT_AND_DEAD_LETTERS, *PIPELINE, *LIVENESS,
)  # fmt: skip

ALERT_NAMES: tuple[str, ...] = tuple(dict.fromkeys(spec.name for spec in ALERTS))
# [alerts.for] key -> default `for`: each alert's name, or name:long_window for the burn pairs.
DEFAULT_HOLDS: Mapping[str, str] = MappingProxyType({spec.for_key: spec.hold for spec in ALERTS})
