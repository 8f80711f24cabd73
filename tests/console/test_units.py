"""The console's own arithmetic and file handling, without servers."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from alerts.replicas import ONE
from console import audit
from console.metrics import minutes_text, queue_states, wait_for_new_task, work_queue_selector
from console.sources import runbooks
from console.timeline import phases
from fleetops.breaking_points import current
from tests.servers import REPO


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
        def many(self, wanted: dict[str, str], label: str) -> dict[str, dict[str, float]]:
            queries.update(wanted)
            return {key: {} for key in wanted}

    assert queue_states(Recording(), current()) == []  # type: ignore[arg-type]
    assert queries["p95"] in names


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
