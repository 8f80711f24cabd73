"""Prometheus configuration: scrape the exporter, Flower, the task-history recorder, Prometheus
and Alertmanager, load the generated rules and send alerts to Alertmanager."""

from __future__ import annotations

from collections.abc import Mapping

# The job names the default selectors of [alerts.selectors] expect.
from alerts.config import EXPORTER_JOB, FLOWER_JOB, RECORDER_JOB, AlertsConfig

__all__ = [
    "EXPORTER_JOB",
    "FLOWER_JOB",
    "RECORDER_JOB",
    "reference_config",
    "remote_write",
    "render",
]

PROMETHEUS_JOB = "prometheus"
ALERTMANAGER_JOB = "alertmanager"


def render(
    *,
    exporter_targets: list[str],
    flower_targets: list[str],
    recorder_targets: list[str],
    prometheus_target: str,
    alertmanager_target: str,
    scrape_interval: str,
    evaluation_interval: str,
    rule_files: list[str],
    exporter_replicas: Mapping[str, str] | None = None,
    remote_write_url: str = "",
) -> dict:
    """``exporter_replicas``: replica name -> target of exporters run side by side; each target
    gets its name as the ``replica`` target label (docs/exporter.md, "Replicas").
    ``remote_write_url``: also send every sample, recorded series included, to that store."""

    def job(name: str, targets: list[str]) -> dict:
        return {"job_name": name, "static_configs": [{"targets": targets}]}

    exporters = job(EXPORTER_JOB, exporter_targets)
    # A target label rather than a label the exporter writes: Prometheus puts it on `up` too,
    # and it stays the same across restarts of the replica and changes of its address.
    if exporter_replicas:
        exporters["static_configs"] = [
            *(exporters["static_configs"] if exporter_targets else []),
            *(
                {"targets": [target], "labels": {"replica": name}}
                for name, target in exporter_replicas.items()
            ),
        ]
    scrape_configs = [exporters]
    if flower_targets:
        scrape_configs.append(job(FLOWER_JOB, flower_targets))
    if recorder_targets:
        scrape_configs.append(job(RECORDER_JOB, recorder_targets))
    scrape_configs += [
        job(PROMETHEUS_JOB, [prometheus_target]),
        job(ALERTMANAGER_JOB, [alertmanager_target]),
    ]
    config: dict = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        # Relative paths resolve against the directory of this file.
        "rule_files": rule_files,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_target]}]}]},
        "scrape_configs": scrape_configs,
    }
    if remote_write_url:
        config["remote_write"] = remote_write(remote_write_url)
    return config


def remote_write(url: str) -> list[dict]:
    """Prometheus ``remote_write`` to one long-term store (VictoriaMetrics, Thanos Receive,
    Mimir): the local TSDB still evaluates the rules and alerts; the store keeps everything,
    for longer and from several Prometheus servers, behind the same PromQL API."""
    return [{"url": url}]


def reference_config(config: AlertsConfig) -> dict:
    """The committed alerts/prometheus.yml: the reference ports of a single-host deployment."""
    section = config.prometheus
    return render(
        exporter_targets=[section.exporter_target],
        flower_targets=[section.flower_target],
        recorder_targets=[section.recorder_target],
        prometheus_target=section.prometheus_target,
        alertmanager_target=section.alertmanager_target,
        scrape_interval=section.scrape_interval,
        evaluation_interval=section.evaluation_interval,
        rule_files=["prometheus_rules.yaml", "prometheus_alerts.yaml"],
        remote_write_url=section.remote_write_url,
    )
