"""Build the alerting rules: the specs of ``alerts/rules.py`` filled in one pass with the
thresholds of the breaking points, the selectors, ``for`` durations and links of ``[alerts]``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from alerts import recording, replicas
from alerts.config import AlertsConfig, duration_seconds
from alerts.rules import (
    ALERTS,
    BURN_RATE_WINDOWS,
    SEVERITY_OF_LEVEL,
    AlertSpec,
    Dashboard,
    burn_threshold_key,
)
from exporters.stream.health import STALL_AFTER
from fleetops.apps import APP_LABEL
from fleetops.breaking_points import BreakingPoints, Level
from fleetops.task_faults import NEAR_VISIBILITY_TIMEOUT_RATIO

# The exporter and the recorder set ``..._stalled{part}`` to 1 once a part's thread has died or
# made no progress for this long: the first term of their time to page, before scrape,
# evaluation and ``for``.
STALL_AFTER_SECONDS = round(STALL_AFTER)

# A placeholder: a lower-case name in single braces. PromQL matchers ({job="x"}) and Go
# templates ({{ $value }}) never look like one.
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")

# Go template snippets naming the alert's app when its series carry one (fleetops/apps.py) and
# rendering nothing otherwise, so one set of rules serves an exporter with or without the label.
APP_PREFIX = f"{{{{ with $labels.{APP_LABEL} }}}}App {{{{ . }}}}: {{{{ end }}}}"


def app_query(parameter: str, before: str = "", after: str = "") -> str:
    """``<before><parameter>=<app><after>`` when the alert has an app, else nothing."""
    return (
        f"{{{{ with $labels.{APP_LABEL} }}}}{before}{parameter}={{{{ . | urlquery }}}}{after}"
        "{{ end }}"
    )


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
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_rule(self, config: AlertsConfig) -> dict:
        rule: dict = {"alert": self.name, "expr": self.expr}
        if duration_seconds(self.hold) > 0:
            rule["for"] = self.hold
        rule["labels"] = {"severity": self.severity, **self.labels}
        rule["annotations"] = {
            "summary": self.summary,
            # The summary stays static (a notification's title); the description names the app.
            "description": APP_PREFIX + self.description,
            "runbook_url": alert_runbook_url(config.runbook_url_base, self.name),
            "dashboard_url": dashboard_url(config, self.dashboard),
        }
        return rule


def runbook_url(base: str, alert: str) -> str:
    """``<base>/<Alert>.md`` (a repository, the local pager), or ``base`` with ``{alert}``
    replaced, for pages that take the name as a parameter (the console's ``?runbook={alert}``)."""
    if "{alert}" in base:
        return base.replace("{alert}", alert)
    return f"{base.rstrip('/')}/{alert}.md"


def alert_runbook_url(base: str, alert: str) -> str:
    """An alert's ``runbook_url``: a page taking the name (the console's runbooks page) also
    keeps the alert's app selected (``app=``); a Markdown file takes no parameter."""
    url = runbook_url(base, alert)
    if "{alert}" not in base:
        return url
    return url + app_query(APP_LABEL, "&" if "?" in url else "?")


def dashboard_url(config: AlertsConfig, dashboard: Dashboard) -> str:
    """The dashboard scoped to the alert's labels, its app first (the ``app`` variable of every
    dashboard, docs/dashboards.md); without an app the variable keeps its default, All."""
    url = f"{config.dashboard_url_base.rstrip('/')}/d/{dashboard.uid}"
    query = "&".join(
        f"var-{variable}={{{{ $labels.{label} | urlquery }}}}"
        for variable, label in dashboard.variables.items()
    )
    app = f"var-{APP_LABEL}"
    return f"{url}?{app_query(app, after='&')}{query}" if query else url + app_query(app, "?")


def number(value: float) -> str:
    """A threshold as PromQL reads it: no trailing .0, no exponent."""
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text or "0"


def readable(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,g}"


def minutes(seconds: float) -> str:
    return f"{readable(seconds / 60)} min" if seconds >= 60 else f"{readable(seconds)} s"


def selector(*matchers: str) -> str:
    return "{" + ", ".join(m for m in matchers if m) + "}"


def vocabulary(points: BreakingPoints, config: AlertsConfig) -> dict[str, str]:
    """Every value a spec may name, computed once from the breaking points and [alerts]."""
    sel = config.selectors
    objectives = points.objectives
    drain = config.drain
    drain_limit = points.task_latency.thresholds()[Level(drain.latency_level)]
    return {
        # Selectors with their braces, and the bare matchers for prose.
        "exporter": selector(sel.exporter),
        "flower": selector(sel.flower),
        "recorder": selector(sel.recorder),
        "queues": selector(sel.exporter, sel.work_queues),
        "exporter_matchers": sel.exporter,
        # The label every fleet series carries (fleetops/apps.py): joins and sums keep it.
        "app": APP_LABEL,
        "flower_matchers": sel.flower,
        "recorder_matchers": sel.recorder,
        "task_rate": recording.completed_rate(sel.exporter, config.events.window),
        # One copy of each fleet series however many exporter replicas serve it.
        "one": replicas.ONE,
        "freshest": replicas.FRESHEST,
        "latency_p95": recording.LATENCY_P95,
        "lookback": config.backlog.lookback,
        "horizon": config.backlog.horizon,
        "horizon_seconds": str(int(duration_seconds(config.backlog.horizon))),
        "drain_level": drain.latency_level,
        "drain_severity": SEVERITY_OF_LEVEL[drain.latency_level],
        "drain_limit": number(drain_limit),
        "drain_limit_readable": readable(drain_limit),
        "drain_min_depth": str(drain.min_depth),
        "events_window": config.events.window,
        "max_lag_seconds": number(duration_seconds(config.events.max_lag)),
        "dropped_window": config.history.dropped_window,
        "beat_late_after": number(objectives.beat_missed_after_intervals),
        "beat_late_after_readable": readable(objectives.beat_missed_after_intervals),
        "stall_after": str(STALL_AFTER_SECONDS),
        # The task faults: the same ratio the exporter and the console apply.
        "orphans_lost": selector(sel.exporter, 'outcome="lost"'),
        "acks_late": selector(sel.exporter, 'acks_late="true"'),
        "task_faults_window": config.task_faults.window,
        "near_ratio": number(NEAR_VISIBILITY_TIMEOUT_RATIO),
        "near_ratio_readable": f"{NEAR_VISIBILITY_TIMEOUT_RATIO:.0%}",
        "objective": f"{objectives.task_success_ratio:.1%}",
        **{
            burn_threshold_key(window): number(round(window.factor * objectives.error_budget, 10))
            for window in BURN_RATE_WINDOWS
        },
    }


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace every placeholder; an unknown one is a bug in a spec, so it fails loudly."""

    def value(match: re.Match[str]) -> str:
        try:
            return values[match.group(1)]
        except KeyError:
            raise KeyError(f"no value for {{{match.group(1)}}} in {template!r}") from None

    return _PLACEHOLDER.sub(value, template)


def build_rule(
    spec: AlertSpec, points: BreakingPoints, config: AlertsConfig, common: Mapping[str, str]
) -> AlertRule:
    hold = config.hold(spec.for_key)
    values = {**common, "hold": hold}
    if spec.threshold:
        signal, level = spec.threshold
        threshold = points.signals[signal].thresholds()[Level(level)]
        values |= {
            "threshold": number(threshold),
            "threshold_readable": readable(threshold),
            "threshold_duration": minutes(threshold),
        }
    return AlertRule(
        name=spec.name,
        group=spec.group,
        expr=fill(spec.expr, values),
        hold=hold,
        severity=fill(spec.severity, values),
        summary=fill(spec.summary, values),
        description=fill(spec.description, values),
        dashboard=spec.dashboard,
        labels={key: fill(text, values) for key, text in spec.labels.items()},
    )


def build_catalog(points: BreakingPoints, config: AlertsConfig) -> list[AlertRule]:
    common = vocabulary(points, config)
    return [build_rule(spec, points, config, common) for spec in ALERTS]
