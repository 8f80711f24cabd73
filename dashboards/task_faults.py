"""The task faults (fleetops/task_faults.py): orphaned, lost, stuck and twice-run tasks, and the
visibility-timeout trap, as the alerts of group celery-tasks read them.

The counts are rendered at 0 for every task the exporter knows, so their panels show a flat 0
rather than "No data" while nothing goes wrong. The longest running time exists only while a
task runs: its panel falls back to 0 per task from the stuck gauge, which always exists.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.builders.dashboard import ThresholdsConfig

from dashboards.base import BuildOptions
from dashboards.panels import Query, stat_panel, timeseries_panel, value_thresholds
from dashboards.promql import JOB, QUEUE, fleet, fleet_rate, max_by, or_zero, sel, sum_by
from dashboards.runbooks import Topic
from fleetops.apps import APP_LABEL
from fleetops.breaking_points import current
from fleetops.task_faults import NEAR_VISIBILITY_TIMEOUT_RATIO

ORPHANED = "fleetops_tasks_orphaned"
STUCK = "fleetops_tasks_stuck"
ORPHANS_ENDED = "fleetops_task_orphans_total"
RUNS_REPEATED = "fleetops_task_runs_repeated_total"
ETA_BEYOND = "fleetops_task_eta_beyond_visibility_total"
RUNNING_LONGEST = "fleetops_task_running_longest_seconds"
TIME_LIMIT = "fleetops_task_time_limit_seconds"
VISIBILITY_TIMEOUT = "fleetops_broker_visibility_timeout_seconds"

BY_TASK = (APP_LABEL, "name", "queue_name")
TASK_LEGEND = "{{name}} ({{app}}/{{queue_name}})"


def _any() -> ThresholdsConfig:
    """Every alert of the row fires on the first task: coloured from 1 on."""
    return value_thresholds((1, "red"))


def _hold(alert: str) -> str:
    """The alert's `for` in force, as the generated rules have it."""
    return current().alerts.hold(alert)


def _now(metric: str, matchers: Sequence[str]) -> str:
    """A gauge rendered for every known task, one copy per replica, per task and queue."""
    return or_zero(sum_by(BY_TASK, fleet(sel(metric, *matchers))))


def _events(metric: str, matchers: Sequence[str], by: Sequence[str] = BY_TASK) -> str:
    """Events per second of a fault counter (each one a fact an alert fires on)."""
    return or_zero(sum_by(list(by), fleet_rate(sel(metric, *matchers))))


def _visibility_timeout() -> str:
    # The timeout in force is the smallest any replica serves (the one that bites first).
    return max_by(["acks_late"], fleet(sel(VISIBILITY_TIMEOUT, JOB), least=True))


def runtime_vs_visibility_timeout(options: BuildOptions, *matchers: str) -> timeseries.Panel:
    ratio = NEAR_VISIBILITY_TIMEOUT_RATIO
    longest = max_by(BY_TASK, fleet(sel(RUNNING_LONGEST, *matchers)))
    idle = max_by(BY_TASK, fleet(sel(STUCK, *matchers)))
    # Time limits belong to a task name, whatever its queue.
    task_only = [m for m in matchers if m != QUEUE]
    return timeseries_panel(
        "Visibility timeout vs runtime",
        "The broker's visibility timeout (Redis hands an unacknowledged task to another worker"
        " after it; none on RabbitMQ) and, under acks_late, the line at"
        f" {ratio:.0%} of it where CeleryTaskRuntimeNearVisibilityTimeout fires; against it"
        " each task's announced hard time limit and its longest current run (0 while none"
        " runs). A time limit or run above the line can outlive the timeout and run twice.",
        "s",
        [
            Query(_visibility_timeout(), "visibility timeout (acks_late={{acks_late}})"),
            Query(
                f"{ratio:g} * {_visibility_timeout()}",
                f"{ratio:.0%} of it (acks_late={{{{acks_late}}}})",
            ),
            Query(max_by(["name"], fleet(sel(TIME_LIMIT, *task_only))), "time limit {{name}}"),
            Query(f"{longest} or ({idle} * 0)", "running " + TASK_LEGEND),
        ],
        links=options.runbooks(Topic.VISIBILITY_TIMEOUT),
    )


def row(options: BuildOptions, *matchers: str) -> list[timeseries.Panel]:
    """The task dashboard's row: what is wrong now, what went wrong, and the trap ahead."""
    return [
        timeseries_panel(
            "Orphaned now",
            "Tasks started on a worker that then went down, not finished nor started again:"
            " they wait for redelivery (under acks_late on Redis, after the visibility"
            f" timeout). CeleryTaskOrphaned fires after {_hold('CeleryTaskOrphaned')} above 0.",
            "short",
            [Query(_now(ORPHANED, matchers), TASK_LEGEND)],
            width=8,
            thresholds=_any(),
            links=options.runbooks(Topic.TASK_ORPHANS),
        ),
        timeseries_panel(
            "Orphans redelivered or lost",
            "Orphans that ended, per second: redelivered (started again after their worker went"
            " down) or lost (no new start within the redelivery window; CeleryTaskLost pages on"
            " the first).",
            "ops",
            [Query(_events(ORPHANS_ENDED, matchers, ("name", "outcome")), "{{name}}: {{outcome}}")],
            width=8,
            links=options.runbooks(Topic.TASK_ORPHANS),
        ),
        timeseries_panel(
            "Stuck now",
            "Tasks running past their bound (time limit plus grace, else the configured bound)"
            f" on a live worker. CeleryTaskStuck fires after {_hold('CeleryTaskStuck')} above 0.",
            "short",
            [Query(_now(STUCK, matchers), TASK_LEGEND)],
            width=8,
            thresholds=_any(),
            links=options.runbooks(Topic.TASK_STUCK),
        ),
        timeseries_panel(
            "Run twice",
            "Extra starts of a task id within one attempt, per second (a planned retry does not"
            " count): a redelivery after the visibility timeout or after a dead worker."
            " CeleryTaskRanTwice fires on the first.",
            "ops",
            [Query(_events(RUNS_REPEATED, matchers), TASK_LEGEND)],
            width=6,
            links=options.runbooks(Topic.TASK_RAN_TWICE),
        ),
        timeseries_panel(
            "ETA beyond the visibility timeout",
            "Tasks received per second with an ETA or countdown further away than the"
            " visibility timeout: Redis hands each to another worker while it waits, and it"
            " runs once per copy. CeleryTaskEtaBeyondVisibilityTimeout fires on the first, at"
            " receipt.",
            "ops",
            [Query(_events(ETA_BEYOND, matchers), TASK_LEGEND)],
            width=6,
            links=options.runbooks(Topic.VISIBILITY_TIMEOUT),
        ),
        runtime_vs_visibility_timeout(options, *matchers),
    ]


def faults_now(options: BuildOptions, *matchers: str, width: int = 4) -> stat.Panel:
    """One number for the overview: tasks orphaned or stuck right now."""
    orphaned = f"sum({fleet(sel(ORPHANED, *matchers))})"
    stuck = f"sum({fleet(sel(STUCK, *matchers))})"
    return stat_panel(
        "Tasks orphaned or stuck",
        "Tasks left started by a worker that went down, plus tasks running past their bound on"
        " a live worker, right now. The Task dashboard's Task faults row shows which.",
        Query(f"{or_zero(orphaned)} + {or_zero(stuck)}", "orphaned or stuck"),
        width=width,
        thresholds=_any(),
        links=[*options.runbooks(Topic.TASK_ORPHANS), *options.runbooks(Topic.TASK_STUCK)],
    )
