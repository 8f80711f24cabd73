"""Kubernetes manifests: the exporter (two replicas), the recorder, the console and the workers,
with a ServiceMonitor and a PrometheusRule (prometheus-operator) made from the generated rules
and a KEDA ScaledObject that scales the workers on the queue depth.

The broker, PostgreSQL, Prometheus and Alertmanager are the cluster's own; their addresses are
in the `fleetops` Secret and ConfigMap (placeholders here, docs/deployment.md).
"""

from __future__ import annotations

import yaml

from alerts.config import EXPORTER_JOB, RECORDER_JOB
from alerts.generate import ALERTS_FILE, RULES_FILE, Generated
from alerts.replicas import one
from deploy.parts import DATA_DIR, IMAGE, IMAGE_UID, WORK_QUEUES, Part, common_env, fleet_parts
from fleetops.apps import APP_LABEL, DEFAULT_APP
from fleetops.breaking_points import BreakingPoints
from fleetops.settings import field_default
from workers.config import WorkerSettings

NAMESPACE = "fleetops"
SECRET = "fleetops-secrets"
CONSOLE_PVC = "console-data"
CONFIG = "fleetops-config"
# The parts the cluster runs from the fleetops image: Beat, Flower and the pager are left to
# the Compose example (Beat must run once; the cluster has its own Alertmanager receivers).
IN_CLUSTER = ("celery-worker", "exporter", "recorder", "console")
REPLICAS = {"exporter": 2, "recorder": 1, "console": 1, "celery-worker": 2}
# The addresses Secret: placeholders to replace (or render with your own secret manager).
SECRET_KEYS = ("FLEETOPS_BROKER_URL", "FLEETOPS_DATABASE_URL", "FLEETOPS_HISTORY_DATABASE_URL")
PROMETHEUS_SERVER = "http://prometheus-operated.monitoring.svc:9090"
ALERTMANAGER_SERVER = "http://alertmanager-operated.monitoring.svc:9093"
# prometheus-operator names a target's job after its Service unless `jobLabel` names a label
# of the Service: the rules select the jobs by these names (alerts/config.py).
JOB_LABEL = "fleetops.io/job"
JOBS = {"exporter": EXPORTER_JOB, "recorder": RECORDER_JOB}
# Target labels prometheus-operator adds that tell the exporter replicas' pods apart; the
# rules drop only `instance` and `replica` (alerts/replicas.py), so these must not reach them.
OPERATOR_TARGET_LABELS = "pod|container|endpoint|service|namespace"
# A Celery worker drains its running tasks on SIGTERM: give it the hard time limit of its
# tasks (FLEETOPS_TASK_TIME_LIMIT's default) and a minute to finish and say goodbye.
WORKER_GRACE_SECONDS = field_default(WorkerSettings, "task_time_limit") + 60
# Probes render /metrics, which can take a second or more for a large fleet.
PROBE_TIMEOUT_SECONDS = 10
KEDA_MAX_REPLICAS = 20
WORKER_QUERY_APP = DEFAULT_APP


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "fleetops"}


def _meta(name: str, **extra: object) -> dict:
    return {"name": name, "namespace": NAMESPACE, "labels": _labels(name), **extra}


def _container(part: Part) -> dict:
    env: list[dict] = [{"name": k, "value": v} for k, v in part.env.items()]
    if part.name == "exporter":
        # Each replica names itself after its pod: the `replica` label the rules drop.
        env.append({"name": "FLEETOPS_EXPORTER_REPLICA",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})  # fmt: skip
    container: dict = {
        "name": part.name,
        "image": IMAGE,
        "args": part.command,
        "envFrom": [{"configMapRef": {"name": CONFIG}}, {"secretRef": {"name": SECRET}}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": IMAGE_UID,
        },
    }
    if env:
        container["env"] = env
    if part.port:
        container["ports"] = [{"name": "http", "containerPort": part.port}]
    path = part.probe or part.health
    if path and part.port:
        probe = {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": 15,
            "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
        }
        container["livenessProbe"] = {**probe, "failureThreshold": 4}
        container["readinessProbe"] = probe
    return container


def _deployment(part: Part) -> dict:
    # A fresh volume belongs to root: the image's user must be able to write the data directory.
    pod: dict = {"containers": [_container(part)], "securityContext": {"fsGroup": IMAGE_UID}}
    if part.name == "celery-worker":
        pod["terminationGracePeriodSeconds"] = WORKER_GRACE_SECONDS
    spec: dict = {
        "replicas": REPLICAS[part.name],
        "selector": {"matchLabels": _labels(part.name)},
        "template": {"metadata": {"labels": _labels(part.name)}, "spec": pod},
    }
    if part.name == "console":
        # The audit log lives in the data directory: it must outlive a rollout. One replica
        # at a time holds the volume (ReadWriteOnce).
        pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": CONSOLE_PVC}}]
        pod["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": DATA_DIR}]
        spec["strategy"] = {"type": "Recreate"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(part.name),
        "spec": spec,
    }


def _console_volume() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(CONSOLE_PVC),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def _service(part: Part) -> dict:
    assert part.port is not None
    meta = _meta(part.name)
    if part.name in JOBS:
        meta["labels"] = {**meta["labels"], JOB_LABEL: JOBS[part.name]}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "selector": _labels(part.name),
            "ports": [{"name": "http", "port": part.port, "targetPort": "http"}],
        },
    }


def workloads() -> list[dict]:
    env = common_env("", "")
    config = {k: v for k, v in env.items() if k not in SECRET_KEYS}
    config["FLEETOPS_PROMETHEUS_URL"] = PROMETHEUS_SERVER
    config["FLEETOPS_ALERTMANAGER_URL"] = ALERTMANAGER_SERVER
    docs: list[dict] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(CONFIG), "data": config},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(SECRET),
            "type": "Opaque",
            "stringData": {key: f"replace-me: {key}" for key in SECRET_KEYS},
        },
    ]
    for part in fleet_parts():
        if part.name not in IN_CLUSTER:
            continue
        if part.name == "console":
            docs.append(_console_volume())
        docs.append(_deployment(part))
        if part.port:
            docs.append(_service(part))
    return docs


def service_monitor() -> dict:
    scraped = [p.name for p in fleet_parts() if p.scraped and p.name in IN_CLUSTER]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta("fleetops"),
        "spec": {
            "jobLabel": JOB_LABEL,
            "selector": {
                "matchExpressions": [
                    {"key": "app.kubernetes.io/name", "operator": "In", "values": scraped}
                ]
            },
            "endpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    # The exporter replicas' copies are told apart by `replica` (the pod name),
                    # which every shipped rule drops (docs/exporter.md, "Replicas").
                    "relabelings": [
                        {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "replica"},
                        {"action": "labeldrop", "regex": OPERATOR_TARGET_LABELS},
                    ],
                }
            ],
        },
    }


def prometheus_rule(generated: Generated) -> dict:
    groups = []
    for name in (RULES_FILE, ALERTS_FILE):
        groups += yaml.safe_load(generated.files[name])["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta("fleetops"),
        "spec": {"groups": groups},
    }


def worker_queue_depth() -> str:
    """Messages waiting for the workers, every priority sub-queue included (celery_queue_length
    sums them), each exporter replica counted once."""
    queues = "|".join(WORK_QUEUES)
    selector = f'job="{EXPORTER_JOB}", queue_name=~"{queues}", {APP_LABEL}="{WORKER_QUERY_APP}"'
    return f"sum({one(f'celery_queue_length{{{selector}}}')})"


def scaled_object(points: BreakingPoints) -> dict:
    # One worker per backlog of the warning edge (the top of the safe band): while replicas can
    # grow, the depth each worker faces stays safe.
    per_worker = points.queue_depth.warning
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta("celery-worker"),
        "spec": {
            "scaleTargetRef": {"name": "celery-worker"},
            "minReplicaCount": 1,
            "maxReplicaCount": KEDA_MAX_REPLICAS,
            # Scale down slowly: a worker leaving drains its tasks (terminationGracePeriodSeconds)
            # and a queue that empties for a minute refills at the next burst.
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": PROMETHEUS_SERVER,
                        "query": worker_queue_depth(),
                        "threshold": f"{per_worker:g}",
                        "activationThreshold": "0",
                    },
                }
            ],
        },
    }


def manifests(points: BreakingPoints, generated: Generated) -> dict[str, list[dict]]:
    """File name -> its documents."""
    return {
        "fleetops.yaml": workloads(),
        "monitoring.yaml": [service_monitor(), prometheus_rule(generated)],
        "keda.yaml": [scaled_object(points)],
    }
