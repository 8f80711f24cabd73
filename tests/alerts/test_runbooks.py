"""One runbook per alert, one alert per runbook, each with the sections the person on call needs."""

from __future__ import annotations

import re

from alerts.catalog import AlertRule, readable
from alerts.generate import load_inputs
from alerts.rules import NEAR_VISIBILITY_TIMEOUT
from fleetops.breaking_points import BreakingPoints, Level
from fleetops.task_faults import NEAR_VISIBILITY_TIMEOUT_RATIO
from tests.alerts.conftest import REPO, RUNBOOKS_DIR

SECTIONS = ["Meaning", "Impact", "Diagnosis", "Mitigation", "Escalation"]
CONSOLE_PAGES = (
    "Overview", "Queues", "Workers", "Tasks", "Failures", "Dead letters", "Beat", "Alerts",
    "Stuck & orphaned",
)  # fmt: skip


def test_every_alert_has_a_runbook_and_every_runbook_an_alert(alert_names: list[str]) -> None:
    runbooks = {path.stem for path in RUNBOOKS_DIR.glob("*.md")}
    assert sorted(set(alert_names) - runbooks) == [], "alerts without a runbook"
    assert sorted(runbooks - set(alert_names)) == [], "runbooks without an alert"


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_runbooks_have_the_sections_in_order(alert_names: list[str]) -> None:
    for name in alert_names:
        text = (RUNBOOKS_DIR / f"{name}.md").read_text()
        assert text.startswith(f"# {name}\n"), name
        sections = _sections(text)
        assert list(sections) == SECTIONS, f"{name}: {list(sections)}"
        for title, body in sections.items():
            assert body.strip(), f"{name}: empty {title}"


_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset"}
# What a Mitigation may tell the person on call to run.
COMMANDS = (
    "celery", "fleetops", "redis-cli", "curl", "amtool", "promtool", "kill", "systemctl", "du",
    "gzip", "tail",
)  # fmt: skip


def metrics_read(expr: str) -> set[str]:
    """The series an alert's expression reads: exported metrics and recorded series alike."""
    bare = re.sub(r'"[^"]*"', " ", expr)  # label names and regexes of label_replace/label_join
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)  # label matchers and ranges
    bare = re.sub(r"\b(by|on|without|ignoring)\s*\([^)]*\)", " ", bare)  # grouping labels
    # A name followed by "(" is a function (rate, vector, time...).
    names = re.findall(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()", bare)
    return set(names) - _PROMQL_WORDS


def _code(section: str, language: str | None = None) -> str:
    """The fenced blocks of a section (of one language), and with no language also its spans."""
    blocks = [
        body for lang, body in re.findall(r"```(\w*)\n(.*?)```", section, flags=re.DOTALL)
        if language is None or lang == language
    ]  # fmt: skip
    if language is None:
        blocks += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", section, flags=re.DOTALL))
    return "\n".join(blocks)


def _names(name: str, text: str) -> bool:
    return re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", text) is not None


def test_metrics_read_finds_every_series_of_an_expression() -> None:
    expr = (
        'sum by (job, hostname) (increase(fleetops_worker_processed_total{job="x"}[10m])) > 0'
        " unless on (job) queue_name:fleetops_task_latency_seconds:p95_rate5m >= 300"
        " and time() - vector(1) > 0"
    )
    assert metrics_read(expr) == {
        "fleetops_worker_processed_total",
        "queue_name:fleetops_task_latency_seconds:p95_rate5m",
    }


def test_diagnosis_queries_the_alerts_own_series(committed_alerts: list[AlertRule]) -> None:
    for rule in committed_alerts:
        diagnosis = _sections((RUNBOOKS_DIR / f"{rule.name}.md").read_text())["Diagnosis"]
        promql = _code(diagnosis, "promql")
        assert promql.strip(), f"{rule.name}: no ```promql block in Diagnosis"
        # The person on call starts from what the alert itself evaluates.
        missing = sorted(m for m in metrics_read(rule.expr) if not _names(m, promql))
        assert not missing, f"runbooks/{rule.name}.md: Diagnosis never queries {missing}"


def test_diagnosis_names_commands_and_a_console_page(alert_names: list[str]) -> None:
    for name in alert_names:
        sections = _sections((RUNBOOKS_DIR / f"{name}.md").read_text())
        diagnosis = sections["Diagnosis"]
        if name.startswith("Celery"):
            assert "celery -A workers.app " in _code(diagnosis), f"{name}: no celery command"
            assert any(f"**{page}**" in diagnosis for page in CONSOLE_PAGES), (
                f"{name}: no console page"
            )
        commands = [
            line.split()[0] for line in _code(sections["Mitigation"]).splitlines() if line.strip()
        ]
        assert set(commands) & set(COMMANDS), f"{name}: no command to run in Mitigation"


def test_dead_letter_runbooks_name_the_dlq_commands() -> None:
    for name in ("CeleryDeadLetterQueueGrowing", "CeleryTaskErrorBudgetBurn"):
        text = (RUNBOOKS_DIR / f"{name}.md").read_text()
        assert "fleetops dlq list" in text and "fleetops dlq requeue" in text, name
        assert "fleetops dlq purge" in text, name


def test_links_between_runbooks_resolve() -> None:
    for path in RUNBOOKS_DIR.glob("*.md"):
        for target in re.findall(r"\]\(([A-Za-z]+\.md)\)", path.read_text()):
            assert (RUNBOOKS_DIR / target).is_file(), f"{path.name} links to missing {target}"


def _stated_threshold(rule: AlertRule, points: BreakingPoints) -> str | None:
    """How the runbook's Meaning states the level the alert fires at, for the tiered signals."""
    level = rule.labels.get("level")
    if rule.name.startswith("CeleryQueueDepth"):
        return f"**{readable(points.queue_depth.thresholds()[Level(level)])} waiting messages**"
    if rule.name.startswith("CeleryWorkerMemory"):
        limit = points.worker_memory.thresholds()[Level(level)]
        return f"**{readable(limit)}% of its memory limit**"
    if rule.name.startswith("CeleryTaskLatency"):
        return f"**{readable(points.task_latency.thresholds()[Level(level)] / 60)} minutes**"
    if rule.name == NEAR_VISIBILITY_TIMEOUT:
        return f"**{NEAR_VISIBILITY_TIMEOUT_RATIO:.0%} of the visibility timeout**"
    return None


def test_runbooks_state_the_current_severity_and_threshold(
    committed_alerts: list[AlertRule],
) -> None:
    # Runbooks are prose, so they repeat the levels: a threshold changed in the breaking points
    # fails here until the runbook says the same.
    points, _ = load_inputs(REPO / "fleetops" / "breaking_points.toml")
    for rule in committed_alerts:
        meaning = _sections((RUNBOOKS_DIR / f"{rule.name}.md").read_text())["Meaning"]
        severity = meaning[meaning.index("Severity: ") :]
        assert f"**{rule.severity}**" in severity, f"runbooks/{rule.name}.md: severity"
        stated = _stated_threshold(rule, points)
        if stated:
            assert stated in meaning, f"runbooks/{rule.name}.md must state {stated}"


def test_runbooks_cite_only_what_the_repository_holds() -> None:
    # A newcomer follows a runbook literally: a Compose service or an ADR number it cannot find
    # in this checkout sends them looking at 3 a.m.
    compose_files = [*REPO.glob("*compose*.y*ml")]
    for path in RUNBOOKS_DIR.glob("*.md"):
        text = path.read_text()
        if not compose_files:
            assert "docker compose" not in text and "docker-compose" not in text, path.name
        for number in re.findall(r"\bADR-?(\d+)", text):
            cited = [*REPO.glob(f"docs/**/*{number}*.md")]
            assert cited, f"{path.name} cites ADR {number}, which is not in the repository"


def test_runbooks_of_fleet_alerts_say_how_to_scope_to_the_app(
    committed_alerts: list[AlertRule],
) -> None:
    """An alert on fleet series carries the app (fleetops/apps.py): its runbook says so."""
    for rule in committed_alerts:
        if rule.name.startswith("Celery") or "without (instance, replica)" in rule.expr:
            diagnosis = _sections((RUNBOOKS_DIR / f"{rule.name}.md").read_text())["Diagnosis"]
            assert "`app` label" in diagnosis and 'app="<app>"' in diagnosis, rule.name
