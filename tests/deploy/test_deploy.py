"""The deployment files (deploy/) are current and pass the real validators: docker-compose
(Debian), kubernetes-validate (the Kubernetes schemas), promtool and amtool.

No Docker daemon, cluster, KEDA or prometheus-operator runs here: the custom resources
(ServiceMonitor, PrometheusRule, ScaledObject) have no schema in kubernetes-validate, so their
PromQL and rules go through promtool and their references are checked against the manifests
(docs/deployment.md says what was not run).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from alerts.generate import ALERTS_FILE, RULES_FILE
from deploy import kubernetes
from deploy.generate import DEPLOY_DIR, differences, render
from deploy.parts import fleet_parts
from fleetops.cli import REGISTRARS
from fleetops.plugins import hooks

REPO = DEPLOY_DIR.parent
COMPOSE_DIR = DEPLOY_DIR / "compose"
KUBE_DIR = DEPLOY_DIR / "kubernetes"


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def _kube_documents() -> list[dict]:
    return [
        doc
        for path in sorted(KUBE_DIR.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def test_the_committed_files_are_what_the_configuration_generates() -> None:
    assert differences(render()) == [], "run `uv run fleetops deploy generate` and commit"


def test_compose_validates_and_the_workers_scale() -> None:
    compose = shutil.which("docker-compose")
    assert compose, "scripts/setup test installs Debian's docker-compose"
    result = _run([compose, "-f", "docker-compose.yml", "config"], cwd=COMPOSE_DIR)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    services = resolved["services"]
    expected = {"redis", "postgres", "celery-worker", "celery-beat", "exporter", "recorder",
                "flower", "prometheus", "alertmanager", "grafana", "console", "pager"}  # fmt: skip
    assert expected <= set(services)
    # `--scale celery-worker=5` needs no fixed name and no published port on the scaled service.
    worker = services["celery-worker"]
    assert "container_name" not in worker and not worker.get("ports")
    scaled = _run([compose, "-f", "docker-compose.yml", "config", "--services"], cwd=COMPOSE_DIR)
    assert "celery-worker" in scaled.stdout.split()
    # Every bind mount points at a file or folder of this repository.
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith("/"):
                assert Path(source).exists(), f"{name}: {source} is missing"


def test_compose_prometheus_and_alertmanager_configurations_load(tmp_path: Path) -> None:
    # Laid out as the Compose file mounts them: the config beside the generated rules.
    shutil.copy(COMPOSE_DIR / "prometheus.yml", tmp_path / "prometheus.yml")
    for name in (RULES_FILE, ALERTS_FILE):
        shutil.copy(REPO / "alerts" / name, tmp_path / name)
    checked = _run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    am = _run(["amtool", "check-config", str(COMPOSE_DIR / "alertmanager.yml")])
    assert am.returncode == 0, am.stdout + am.stderr
    targets = yaml.safe_load((tmp_path / "prometheus.yml").read_text())["scrape_configs"]
    scraped = {t for job in targets for c in job["static_configs"] for t in c["targets"]}
    assert {"exporter:9808", "recorder:9818", "flower:5555"} <= scraped


def test_kubernetes_manifests_pass_the_kubernetes_schemas() -> None:
    validator = shutil.which(
        "kubernetes-validate", path=str(Path(__file__).parents[2] / ".venv/bin")
    )
    assert validator
    result = _run([validator, "--strict", *map(str, sorted(KUBE_DIR.glob("*.yaml")))])
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if " passed for resource " in line]
    core = [
        d for d in _kube_documents() if "/" not in d["apiVersion"] or d["apiVersion"] == "apps/v1"
    ]
    assert len(passed) == len(core), result.stdout


def test_kubernetes_custom_resources_hold_valid_rules_and_queries(tmp_path: Path) -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _kube_documents()}
    rule = docs[("PrometheusRule", "fleetops")]
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    scaled = docs[("ScaledObject", "celery-worker")]
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    query_file = tmp_path / "keda.yaml"
    query_file.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "keda", "rules": [{"record": "keda:q", "expr": query}]}]}
        )
    )
    for path in (rules_file, query_file):
        checked = _run(["promtool", "check", "rules", str(path)])
        assert checked.returncode == 0, checked.stdout + checked.stderr
    # Every alert the generated rules hold is in the PrometheusRule.
    generated = yaml.safe_load((REPO / "alerts" / ALERTS_FILE).read_text())["groups"]
    alerts = {r["alert"] for g in generated for r in g["rules"]}
    assert alerts == {
        r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r
    }
    # The scaler targets the workers' Deployment and reads the breaking point.
    assert docs[("Deployment", scaled["spec"]["scaleTargetRef"]["name"])]
    assert "celery_queue_length" in query
    # The ServiceMonitor selects Services that exist and name the port it scrapes.
    monitor = docs[("ServiceMonitor", "fleetops")]
    selected = monitor["spec"]["selector"]["matchExpressions"][0]["values"]
    port = monitor["spec"]["endpoints"][0]["port"]
    for name in selected:
        service = docs[("Service", name)]
        assert port in {p["name"] for p in service["spec"]["ports"]}
        pod_labels = docs[("Deployment", name)]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("part", [p for p in fleet_parts() if p.command[0] == "fleetops"],
                         ids=lambda p: p.name)  # fmt: skip
def test_every_fleetops_command_in_the_files_exists(part) -> None:  # type: ignore[no-untyped-def]
    # The components' commands on a Typer of the test's own, as `fleetops` registers them.
    commands = typer.Typer()
    for register in hooks(REGISTRARS):
        register(commands)
    result = CliRunner().invoke(commands, [*part.command[1:], "--help"])
    assert result.exit_code == 0, result.output


def test_the_scaler_reads_the_warning_edge_of_the_queue_depth() -> None:
    from fleetops import breaking_points

    threshold = kubernetes.scaled_object(breaking_points.current())["spec"]["triggers"][0]
    assert (
        float(threshold["metadata"]["threshold"]) == breaking_points.current().queue_depth.warning
    )


def test_the_scraped_series_look_as_the_rules_select_them() -> None:
    """prometheus-operator names a job after its Service and adds pod, service, endpoint...
    labels: the rules select the jobs by name and drop only instance and replica."""
    import re

    from alerts.replicas import REPLICA_LABELS

    docs = {(d["kind"], d["metadata"]["name"]): d for d in _kube_documents()}
    monitor = docs[("ServiceMonitor", "fleetops")]["spec"]
    selected = monitor["selector"]["matchExpressions"][0]["values"]
    jobs = {docs[("Service", name)]["metadata"]["labels"][monitor["jobLabel"]] for name in selected}
    rules = docs[("PrometheusRule", "fleetops")]["spec"]["groups"]
    expressions = " ".join(r["expr"] for g in rules for r in g["rules"])
    used = set(re.findall(r'job="(fleetops-[a-z-]+)"', expressions))
    assert used and used <= jobs, f"the rules select {used}, the ServiceMonitor makes {jobs}"
    dropped = [r for r in monitor["endpoints"][0]["relabelings"] if r.get("action") == "labeldrop"]
    for label in ("pod", "container", "endpoint", "service", "namespace"):
        assert any(re.fullmatch(r["regex"], label) for r in dropped), label
    assert not any(re.fullmatch(r["regex"], label) for r in dropped for label in REPLICA_LABELS)
    for (kind, _name), doc in docs.items():
        if kind == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe in container:
                        assert container[probe]["timeoutSeconds"] >= 5


def test_the_pods_can_write_their_volumes_and_workers_drain_their_tasks() -> None:
    from deploy.parts import IMAGE_UID
    from fleetops.settings import field_default
    from workers.config import WorkerSettings

    for doc in _kube_documents():
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        if pod.get("volumes"):
            assert pod["securityContext"]["fsGroup"] == IMAGE_UID, doc["metadata"]["name"]
        if doc["metadata"]["name"] == "celery-worker":
            limit = field_default(WorkerSettings, "task_time_limit")
            assert pod["terminationGracePeriodSeconds"] > limit
