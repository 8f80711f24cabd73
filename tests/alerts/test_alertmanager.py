"""Alertmanager routing and inhibition: amtool on the committed file, then a real Alertmanager."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from alerts.alertmanager import reference_config
from alerts.catalog import AlertRule
from alerts.config import AlertsConfig
from alerts.yamlout import dump
from tests.alerts.conftest import ALERTS_DIR, tool
from tests.alerts.standalone import start_alertmanager
from tests.helpers import wait_for
from tests.processes import processes_in

CONFIG = ALERTS_DIR / "alertmanager.yml"
EXPECTED_RECEIVER = {"critical": "pager", "warning": "ticket", "info": "blackhole"}


def test_amtool_accepts_the_configuration() -> None:
    result = subprocess.run(
        [tool("amtool"), "check-config", str(CONFIG)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _route(labels: dict[str, str], expected: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("amtool"), "config", "routes", "test", f"--config.file={CONFIG}",
         f"--verify.receivers={expected}", *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True, text=True,
    )  # fmt: skip


def test_every_alert_reaches_its_receiver(committed_alerts: list[AlertRule]) -> None:
    for alert in committed_alerts:
        labels = {"alertname": alert.name, **alert.to_rule(AlertsConfig())["labels"]}
        labels.setdefault("queue_name", "images")
        expected = "watchdog" if alert.name == "FleetopsWatchdog" else (
            EXPECTED_RECEIVER[alert.severity]
        )  # fmt: skip
        result = _route(labels, expected)
        assert result.returncode == 0, f"{alert.name} {labels}: {result.stdout}{result.stderr}"


def test_unknown_severity_still_reaches_a_person() -> None:
    assert _route({"alertname": "Something", "severity": "page"}, "ticket").returncode == 0


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # The committed routing and inhibition, without PagerDuty (no network here); webhooks point
    # at a port nobody listens on.
    committed = yaml.safe_load(CONFIG.read_text())
    for receiver in committed["receivers"]:
        receiver.pop("pagerduty_configs", None)
    with processes_in(tmp_path_factory.mktemp("alertmanager")) as processes:
        yield start_alertmanager(processes, committed)


def _post(url: str, *alerts: dict[str, str]) -> None:
    now = datetime.now(UTC)
    body = [
        {"labels": labels, "startsAt": now.isoformat(),
         "endsAt": (now + timedelta(minutes=10)).isoformat()}
        for labels in alerts
    ]  # fmt: skip
    httpx.post(f"{url}/api/v2/alerts", json=body, timeout=10).raise_for_status()


def _inhibited(url: str, alertname: str, **labels: str) -> bool | None:
    for alert in httpx.get(f"{url}/api/v2/alerts", timeout=10).json():
        got = alert["labels"]
        if got["alertname"] == alertname and all(got.get(k) == v for k, v in labels.items()):
            return bool(alert["status"]["inhibitedBy"])
    return None


Selector = tuple[str, dict[str, str]]


def _expect(url: str, why: str, inhibited: list[Selector], active: list[Selector]) -> None:
    """Once the first of ``inhibited`` is inhibited (Alertmanager applies an inhibition when the
    alerts arrive), the others are too, and none of ``active`` is."""
    (first, labels), *others = inhibited
    wait_for(lambda: _inhibited(url, first, **labels), timeout=30, message=why)
    for name, labels in others:
        assert _inhibited(url, name, **labels) is True, (name, labels)
    for name, labels in active:
        assert _inhibited(url, name, **labels) is False, (name, labels)


def test_higher_severity_inhibits_lower_for_the_same_queue_only(alertmanager: str) -> None:
    _post(
        alertmanager,
        {"alertname": "CeleryQueueDepthCritical", "severity": "critical", "signal": "queue_depth",
         "level": "critical", "queue_name": "images"},
        {"alertname": "CeleryQueueDepthWarning", "severity": "warning", "signal": "queue_depth",
         "level": "warning", "queue_name": "images"},
        {"alertname": "CeleryTaskLatencyWarning", "severity": "warning",
         "signal": "task_latency", "level": "warning", "queue_name": "images"},
        {"alertname": "CeleryQueueDepthWarning", "severity": "warning", "signal": "queue_depth",
         "level": "warning", "queue_name": "reminders"},
        {"alertname": "FleetopsFlowerDown", "severity": "warning", "job": "flower"},
    )  # fmt: skip
    _expect(alertmanager, "warning inhibited by critical on the same queue",
            inhibited=[("CeleryQueueDepthWarning", {"queue_name": "images"}),
                       ("CeleryTaskLatencyWarning", {"queue_name": "images"})],
            active=[("CeleryQueueDepthWarning", {"queue_name": "reminders"}),
                    # A critical about a queue says nothing about fleet-wide warnings.
                    ("FleetopsFlowerDown", {}),
                    ("CeleryQueueDepthCritical", {"queue_name": "images"})])  # fmt: skip


def test_breaking_inhibits_critical_of_the_same_signal_and_worker(alertmanager: str) -> None:
    _post(
        alertmanager,
        {"alertname": "CeleryWorkerMemoryBreaking", "severity": "critical",
         "signal": "worker_memory", "level": "breaking", "hostname": "celery@a"},
        {"alertname": "CeleryWorkerMemoryCritical", "severity": "critical",
         "signal": "worker_memory", "level": "critical", "hostname": "celery@a"},
        {"alertname": "CeleryWorkerMemoryCritical", "severity": "critical",
         "signal": "worker_memory", "level": "critical", "hostname": "celery@b"},
    )  # fmt: skip
    _expect(alertmanager, "critical inhibited by breaking",
            inhibited=[("CeleryWorkerMemoryCritical", {"hostname": "celery@a"})],
            active=[("CeleryWorkerMemoryCritical", {"hostname": "celery@b"})])  # fmt: skip


def test_broker_down_inhibits_its_symptoms_on_the_same_job_only(alertmanager: str) -> None:
    _post(
        alertmanager,
        {"alertname": "FleetopsBrokerDown", "severity": "critical", "job": "fleetops-exporter"},
        {"alertname": "CeleryQueueNoConsumer", "severity": "critical",
         "job": "fleetops-exporter", "queue_name": "maintenance"},
        # The same symptom behind another exporter, whose broker answers, is real.
        {"alertname": "CeleryQueueNoConsumer", "severity": "critical",
         "job": "fleetops-exporter-eu", "queue_name": "exports"},
        # Not a symptom of the broker: a page of its own, even on the same job.
        {"alertname": "CeleryBeatMissedRun", "severity": "critical",
         "job": "fleetops-exporter", "name": "reminders.send_due_soon"},
    )  # fmt: skip
    _expect(alertmanager, "no-consumer inhibited by broker down",
            inhibited=[("CeleryQueueNoConsumer", {"queue_name": "maintenance"})],
            active=[("CeleryQueueNoConsumer", {"queue_name": "exports"}),
                    ("CeleryBeatMissedRun", {"job": "fleetops-exporter"}),
                    ("FleetopsBrokerDown", {})])  # fmt: skip


def test_broker_down_inhibits_the_recorders_lost_stream_of_that_app_only(alertmanager: str) -> None:
    _post(
        alertmanager,
        {"alertname": "FleetopsBrokerDown", "severity": "critical", "app": "orders",
         "job": "fleetops-exporter"},
        {"alertname": "FleetopsHistoryBrokerDown", "severity": "warning", "app": "orders",
         "job": "fleetops-recorder"},
        {"alertname": "FleetopsHistoryBrokerDown", "severity": "warning", "app": "billing",
         "job": "fleetops-recorder"},
    )  # fmt: skip
    _expect(alertmanager, "the recorder's broker-down inhibited by the exporter's",
            inhibited=[("FleetopsHistoryBrokerDown", {"app": "orders"})],
            active=[("FleetopsHistoryBrokerDown", {"app": "billing"})])  # fmt: skip


def test_a_stalled_exporter_inhibits_the_symptoms_of_its_frozen_events(alertmanager: str) -> None:
    # A job of its own: the broker-down test's alert, still active, silences job-wide.
    job = "fleetops-exporter-stall"
    exporter = {"job": job, "instance": "stalled:9808"}
    other = {"job": job, "instance": "healthy:9808"}
    polling = {"job": job, "instance": "polling:9808"}
    _post(
        alertmanager,
        {"alertname": "FleetopsExporterStalled", "severity": "critical", "part": "applier",
         **exporter},
        {"alertname": "FleetopsEventsStopped", "severity": "critical", **exporter},
        {"alertname": "CeleryWorkerDown", "severity": "warning", "hostname": "celery@frozen",
         **exporter},
        # Another replica's symptoms are real.
        {"alertname": "CeleryWorkerDown", "severity": "warning", "hostname": "celery@gone",
         **other},
        # A stalled poller freezes queue metrics, not events.
        {"alertname": "FleetopsExporterStalled", "severity": "critical", "part": "poller",
         **polling},
        {"alertname": "FleetopsEventsStopped", "severity": "critical", **polling},
    )  # fmt: skip
    _expect(alertmanager, "events stopped inhibited by the stalled applier",
            inhibited=[("FleetopsEventsStopped", {"instance": "stalled:9808"}),
                       ("CeleryWorkerDown", {"hostname": "celery@frozen"})],
            active=[("CeleryWorkerDown", {"hostname": "celery@gone"}),
                    ("FleetopsEventsStopped", {"instance": "polling:9808"}),
                    ("FleetopsExporterStalled", {"instance": "stalled:9808"})])  # fmt: skip


def test_secrets_are_read_from_files_amtool_accepts(tmp_path: Path) -> None:
    routing_key, token = tmp_path / "pagerduty-routing-key", tmp_path / "pager-token"
    routing_key.write_text("R0UT1NGKEY")
    token.write_text("T0KEN")
    section = AlertsConfig().alertmanager.model_copy(
        update={"pagerduty_routing_key_file": str(routing_key),
                "pager_webhook_token_file": str(token)}
    )  # fmt: skip
    config = tmp_path / "alertmanager.yml"
    config.write_text(dump(reference_config(AlertsConfig(alertmanager=section))))
    text = config.read_text()
    assert f"routing_key_file: {routing_key}" in text
    assert f"credentials_file: {token}" in text
    assert "R0UT1NGKEY" not in text and "T0KEN" not in text
    result = subprocess.run(
        [tool("amtool"), "check-config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_inhibitions_stay_within_one_app(alertmanager: str) -> None:
    """Two apps may share a queue name and an exporter job: one app's critical or broken broker
    silences none of the other app's alerts."""
    job = "fleetops-exporter-apps"
    queue = {"job": job, "queue_name": "shared"}
    _post(
        alertmanager,
        {"alertname": "CeleryQueueDepthCritical", "severity": "critical", "app": "shop",
         "signal": "queue_depth", "level": "critical", **queue},
        {"alertname": "CeleryQueueDepthWarning", "severity": "warning", "app": "shop",
         "signal": "queue_depth", "level": "warning", **queue},
        {"alertname": "CeleryQueueDepthWarning", "severity": "warning", "app": "mail",
         "signal": "queue_depth", "level": "warning", **queue},
        {"alertname": "FleetopsBrokerDown", "severity": "critical", "app": "shop", "job": job},
        {"alertname": "CeleryWorkerDown", "severity": "warning", "app": "shop", "job": job,
         "hostname": "celery@shared"},
        {"alertname": "CeleryWorkerDown", "severity": "warning", "app": "mail", "job": job,
         "hostname": "celery@shared"},
    )  # fmt: skip
    _expect(alertmanager, "shop's symptoms inhibited by shop's critical and broker down",
            inhibited=[("CeleryQueueDepthWarning", {"app": "shop", **queue}),
                       ("CeleryWorkerDown", {"app": "shop", "job": job})],
            active=[("CeleryQueueDepthWarning", {"app": "mail", **queue}),
                    ("CeleryWorkerDown", {"app": "mail", "job": job})])  # fmt: skip


def test_every_inhibition_compares_the_app() -> None:
    """Every inhibition but the stalled exporter's (one exporter process serves every app, and
    its frozen reader freezes them all) names `app` in `equal`."""
    for rule in yaml.safe_load(CONFIG.read_text())["inhibit_rules"]:
        if 'alertname="FleetopsExporterStalled"' not in rule["source_matchers"]:
            assert "app" in rule["equal"], rule
