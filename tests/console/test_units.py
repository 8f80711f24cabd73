"""The console's own arithmetic and file handling, without servers."""

from __future__ import annotations

import math
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from alerts.replicas import ONE
from console import audit
from console.auth import Identity, LoginThrottle, oidc_identity, role_from_claims
from console.metrics import minutes_text, queue_states, wait_for_new_task, work_queue_selector
from console.settings import ConsoleSettings
from console.sources import runbooks
from console.sources.control import NoSelection, Selection
from console.timeline import phases
from fleetops.breaking_points import current
from fleetops.settings import load_settings
from tests.servers import REPO
from workers.deadletter import DeadLetter


def test_the_wait_of_a_new_task_is_the_work_ahead_of_it() -> None:
    assert wait_for_new_task(0, 0) == 0
    assert wait_for_new_task(600, 2) == 300
    assert math.isinf(wait_for_new_task(10, 0))
    assert minutes_text(300) == "5 min"
    assert minutes_text(math.inf) == "never at this rate"
    assert minutes_text(None) == "n/a"


def test_queues_are_selected_like_the_alerts_select_them() -> None:
    # The committed rules, not the configuration the function reads: what Prometheus evaluates.
    rules = yaml.safe_load((REPO / "alerts" / "prometheus_alerts.yaml").read_text())
    [depth] = [
        rule["expr"]
        for group in rules["groups"]
        for rule in group["rules"]
        if rule["alert"] == "CeleryQueueDepthWarning"
    ]
    # One copy per exporter replica, as every rule reads fleet metrics.
    selected = re.fullmatch(rf"{re.escape(ONE)} \(celery_queue_length\{{(.+)\}}\) >= \d+", depth)
    assert selected, depth
    assert work_queue_selector(current()) == selected.group(1)
    assert 'queue_name!="dead_letter"' in selected.group(1)


def test_the_console_reads_latency_from_a_recorded_series() -> None:
    recorded = yaml.safe_load((REPO / "alerts" / "prometheus_rules.yaml").read_text())
    names = {rule["record"] for group in recorded["groups"] for rule in group["rules"]}
    queries: dict[str, str] = {}

    class Recording:
        app: str | None = None

        def many_by(self, wanted: dict[str, str], labels: tuple) -> dict[str, dict]:
            queries.update(wanted)
            return {key: {} for key in wanted}

    assert queue_states(Recording(), current()) == []  # type: ignore[arg-type]
    # The worst per queue: with all apps shown, two apps' queues of one name are one row.
    read = re.fullmatch(r"max by \(queue_name\) \((\S+?)(\{.*\})?\)", queries["p95"])
    assert read and read.group(1) in names and read.group(2) is None, queries["p95"]
    scoped = Recording()
    scoped.app = "orders.eu"
    queue_states(scoped, current())  # type: ignore[arg-type]
    assert queries["p95"].endswith('{app=~"orders\\\\.eu|"})'), queries["p95"]


def test_phases_are_the_gaps_between_events() -> None:
    sent = datetime(2026, 1, 1, tzinfo=UTC)
    fields = {
        "sent_at": sent,
        "received_at": sent + timedelta(seconds=4),
        "started_at": sent + timedelta(seconds=5),
        "failed_at": sent + timedelta(seconds=7.5),
    }
    assert phases(fields) == {
        "waiting in queue": 4.0,
        "waiting in worker": 1.0,
        "running": 2.5,
    }
    assert phases({"started_at": sent})["running"] is None


def test_runbooks_are_served_by_plain_name_only() -> None:
    directory = REPO / "runbooks"
    assert "CeleryWorkerDown" in runbooks.names(directory)
    assert runbooks.read(directory, "CeleryWorkerDown")
    for hostile in ("../README", "..", "/etc/passwd", ".hidden", ""):
        assert runbooks.read(directory, hostile) is None


def test_audit_entries_are_json_lines(tmp_path: Path) -> None:
    log = tmp_path / "sub" / "audit.jsonl"
    audit.append(log, who="alice", what="revoke task 1", result="sent", task_id="1")
    audit.append(log, who="bob", what="purge", result="failed: broker down")
    entries = audit.read(log)
    assert [(e["who"], e["result"]) for e in entries] == [
        ("alice", "sent"),
        ("bob", "failed: broker down"),
    ]
    assert datetime.fromisoformat(entries[0]["when"]).tzinfo is not None
    assert len(log.read_text().splitlines()) == 2


def test_audit_intent_and_result_share_an_id_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    action_id = audit.intent(log, who="local:amy", what="purge dead letters: ALL entries")
    with log.open("a") as torn:
        torn.write('{"who": "half a line')  # a disk that filled mid-line
    torn_free = log.read_text() + "\n"
    log.write_text(torn_free)
    audit.outcome(log, action_id, who="local:amy", what="purge", result="2 purged", entry_ids=["a"])
    intent, result = audit.read(log)
    assert (intent["phase"], result["phase"]) == ("intent", "result")
    assert intent["action_id"] == result["action_id"] == action_id
    assert audit.results(log) == [result]
    assert result["entry_ids"] == ["a"]


def _settings(**values: object) -> ConsoleSettings:
    return ConsoleSettings(**values)  # type: ignore[arg-type]


def test_oidc_roles_come_from_the_allow_list_or_the_role_claim() -> None:
    """A plain mapping stands in for st.user: no identity provider can run here (the page
    tests feed the same claims through AppTest.user)."""
    allow = _settings(console_operators="Amy@Example.com, sub-7")
    verified = {"email_verified": True}
    assert role_from_claims({"email": "amy@example.com", **verified}, allow) == "operator"
    # An unverified email is anybody's claim: only a verified one (exactly True) matches.
    for unverified in ({}, {"email_verified": False}, {"email_verified": "true"}):
        assert role_from_claims({"email": "amy@example.com", **unverified}, allow) == "viewer"
    assert role_from_claims({"sub": "sub-7", "email": "x@example.com"}, allow) == "operator"
    assert role_from_claims({"email": "bob@example.com", "sub": "sub-8"}, allow) == "viewer"
    claim = _settings(console_role_claim="groups", console_operator_role="ops")
    assert role_from_claims({"groups": ["staff", "ops"]}, claim) == "operator"
    assert role_from_claims({"groups": "staff ops"}, claim) == "operator"
    assert role_from_claims({"groups": ["opsx", 7, None]}, claim) == "viewer"
    assert role_from_claims({"roles": ["ops"]}, claim) == "viewer"
    # Hostile or missing claims: a viewer, never an error.
    for claims in ({}, {"email": 5}, {"email": ""}, {"groups": {"ops": 1}}):
        assert role_from_claims(claims, allow) == "viewer"
        assert role_from_claims(claims, claim) == "viewer"
    # Without an allow-list entry or a role claim setting, nobody signed in may act.
    amy_in_ops = {"email": "amy@example.com", "groups": ["ops"], **verified}
    assert role_from_claims(amy_in_ops, _settings()) == "viewer"
    # The role claim does not depend on the email being verified.
    unverified_ops = {"email": "x@example.com", "email_verified": False, "groups": ["ops"]}
    assert role_from_claims(unverified_ops, claim) == "operator"
    identity = oidc_identity({"email": " amy@example.com ", "sub": "s", **verified}, allow)
    assert identity == Identity("amy@example.com", "operator", "oidc")
    assert oidc_identity({"sub": "sub-9"}, allow) == Identity("sub-9", "viewer", "oidc")
    assert oidc_identity({"name": "Amy"}, allow) is None  # no identity the audit can name


def test_failed_logins_lock_for_doubling_times_up_to_the_cap() -> None:
    now = [0.0]
    gate = LoginThrottle(free_attempts=3, max_delay=5.0, clock=lambda: now[0])
    assert [gate.failed(), gate.failed()] == [0.0, 0.0]
    assert gate.retry_after() == 0
    assert gate.failed() == 1.0
    assert gate.retry_after() == 1.0
    now[0] += 0.5
    assert gate.retry_after() == 0.5  # refused until the lock ends
    now[0] += 0.5
    assert [gate.failed(), gate.failed(), gate.failed(), gate.failed()] == [2.0, 4.0, 5.0, 5.0]
    assert gate.total == 7
    gate.succeeded()
    assert gate.retry_after() == 0 and gate.in_a_row == 0 and gate.total == 7
    # Thousands in a row: the exponent never overflows, the cap holds.
    for _ in range(2000):
        gate.failed()
    assert gate.retry_after() == 5.0


def test_concurrent_wrong_guesses_are_compared_only_until_the_lock() -> None:
    """Many sessions guessing at the same moment: once the free attempts are used up, the
    login is locked for all of them; no guess slips through between lock check and count."""
    gate = LoginThrottle(free_attempts=3, max_delay=60.0, clock=lambda: 0.0)  # time stands still
    compared: list[int] = []
    start = threading.Barrier(16)

    def wrong_guess() -> bool:
        compared.append(1)
        # A comparison that takes a moment: the window in which other sessions check the lock.
        time.sleep(0.001)
        return False

    def guesser() -> None:
        start.wait()
        for _ in range(20):
            gate.admit(wrong_guess)

    threads = [threading.Thread(target=guesser) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(compared) <= gate.free_attempts + 1
    assert gate.total == len(compared) and gate.retry_after() > 0
    refused = gate.admit(wrong_guess)
    assert not refused.compared and len(compared) == gate.total


def test_a_dead_letter_batch_without_a_filter_needs_all() -> None:
    nothing = Selection.parse(" , ", "  ", "", everything=False)
    assert not nothing.filtered
    with pytest.raises(NoSelection):
        nothing.predicate()
    letter = DeadLetter(
        task_id="t1", name="maintenance.probe", args=[], kwargs={}, queue="q", exception="E",
        reason="r", id="e1",
    )  # fmt: skip
    everything = Selection.parse("", "", "", everything=True)
    assert everything.predicate()(letter)
    assert everything.describe() == "ALL entries"
    assert everything.audit()["selection"]["all"] is True
    by_id = Selection.parse("e1, t9, e1", "", "", everything=False)
    assert by_id.ids == ("e1", "t9")
    assert by_id.predicate()(letter)
    assert not Selection.parse("", "other.task", "", everything=False).predicate()(letter)
    # A filter with "all" is still only the filter.
    narrowed = Selection.parse("", "", "KeyError", everything=True)
    assert not narrowed.predicate()(letter)
    assert narrowed.audit()["selection"]["all"] is False
    with pytest.raises(NoSelection, match="at most"):
        Selection.parse(",".join(str(n) for n in range(5000)), "", "", everything=False)


def test_operators_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETOPS_CONSOLE_OPERATORS", " a@example.com,,b@example.com ")
    assert load_settings(ConsoleSettings).console_operators == ["a@example.com", "b@example.com"]


def test_trouble_names_each_apps_queue_and_worker_with_its_own_link() -> None:
    """Several apps shown at once: a row per (app, queue) and (app, worker), each linking to its
    own app; 600 messages in two apps' ``images`` are two safe queues, not 1,200."""
    from console.metrics import QueueState, WorkerState
    from console.trouble import troubles
    from fleetops.breaking_points import Level

    def queue(app: str, depth: float) -> QueueState:
        return QueueState("images", depth, Level.SAFE, 0, 0, 0, math.inf, None, None, 0, app)

    points = current()
    assert troubles([queue("a", 600), queue("b", 600)], [], [], points) == []
    [deep] = troubles([queue("a", 600), queue("b", 1200)], [], [], points)
    assert "of app b" in deep.what and "/queues?queue=images&app=b" in deep.what
    down = WorkerState("w@h", False, None, None, None, 0, 0, None, "b")
    [gone] = troubles([], [down], [], points)
    assert "/workers?worker=w%40h&app=b" in gone.what or "worker=w@h&app=b" in gone.what


def test_failure_ratios_keep_each_apps_queue_apart() -> None:
    """All apps: billing's 40 % failures on ``images`` is billing's bar, not a plain ``images``
    pinned on the healthy app too."""
    from console.charts import failure_frame
    from console.metrics import failure_ratios

    asked: list[str] = []

    class Recording:
        app: str | None = None

        def by_labels(self, expr: str, labels: tuple) -> dict[tuple, float]:
            asked.append(expr)
            return {("billing", "images"): 0.4, ("shop", "images"): 0.0}

    ratios = failure_ratios(Recording(), per_app=True)  # type: ignore[arg-type]
    assert asked[0].startswith("max by (app, queue_name) ("), asked
    frame = failure_frame(ratios, current())
    worst = frame.iloc[0]
    assert worst["name"] == "images @ billing" and "app=billing" in worst["link"], worst
    assert "app=shop" in frame.iloc[1]["link"]


def test_an_alerts_trouble_row_links_to_its_own_app() -> None:
    """All apps: billing's alert on ``images`` names billing and opens billing's pages; a label
    that is not an app name goes nowhere near a link."""
    from console.sources.alertmanager import Alert
    from console.trouble import troubles

    def alert(app: str) -> Alert:
        labels = {"app": app, "queue_name": "images", "hostname": "w@h"}
        return Alert("CeleryQueueDepthWarning", "active", "warning", labels, "deep", "", [])

    [row] = troubles([], [], [alert("billing")], current(), per_app=True)
    assert "of app billing" in row.what and "/queues?queue=images&app=billing" in row.what
    assert "app=billing" in row.what.split("worker", 1)[1], row.what
    [hostile] = troubles([], [], [alert("no such](app)")], current(), per_app=True)
    assert "app=" not in hostile.what and "of app" not in hostile.what, hostile.what
    # One app shown: as before, the page's own app.
    [one] = troubles([], [], [alert("billing")], current())
    assert "app=" not in one.what and "of app" not in one.what, one.what


def test_a_task_recorded_before_apps_belongs_to_the_one_configured_app() -> None:
    """Rows recorded before the history had an ``app`` column read 'default': with one app named
    'prod' they are prod's tasks (Retry/Revoke allowed); with several apps they stay 'default'."""
    from console.apps import task_owner
    from fleetops.apps import DEFAULT_APP, App

    prod = [App("prod", "redis://x")]
    assert task_owner(DEFAULT_APP, prod) == "prod"
    assert task_owner("prod", prod) == "prod" and task_owner(None, prod) is None
    assert task_owner("", prod) is None
    several = [*prod, App("billing", "redis://y")]
    assert task_owner(DEFAULT_APP, several) == DEFAULT_APP


def test_a_worker_name_in_several_apps_is_not_focused_at_random() -> None:
    """All apps: ``?worker=celery@x`` run by billing and shop names two workers, not one chosen
    by dict order; the focused worker's memory history reads its own app only."""
    from console.metrics import WorkerState, memory_expr, workers_named

    def worker(app: str | None, host: str = "celery@x") -> WorkerState:
        return WorkerState(host, True, 10.0, None, None, 0, 0, None, app)

    both = [worker("billing"), worker("shop"), worker("shop", "celery@y")]
    assert [w.app for w in workers_named(both, "celery@x")] == ["billing", "shop"]
    assert workers_named([worker(None)], "celery@x") == [worker(None)]
    assert workers_named(both, "celery@z") == []
    assert 'app=~"shop|"' in memory_expr(current(), "shop")
