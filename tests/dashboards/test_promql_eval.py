"""Dashboard queries evaluated by promtool on a few synthetic series: cheap checks of what a
query means (operator precedence, grouping), where test_queries.py checks that every query
answers on a real fleet."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from dashboards.queries import failure_ratio
from dashboards.worker import task_rate_per_worker
from tests.alerts.conftest import tool

# What Grafana puts in for the variables, with every value selected.
VARIABLES = {"$__rate_interval": "1m", "$app": ".*", "$job": ".*", "$queue": ".*", "$task": ".*"}


def as_grafana_sends(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def promtool_eval(tmp_path: Path, series: list[dict], exprs: list[dict]) -> None:
    """Evaluate ``exprs`` (promql_expr_test cases) over ``series``; fail with promtool's words."""
    path = tmp_path / "queries.yaml"
    test = {"interval": "1m", "input_series": series, "promql_expr_test": exprs}
    path.write_text(yaml.safe_dump({"rule_files": [], "tests": [test]}))
    result = subprocess.run(
        [tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_failure_ratio_is_a_ratio_not_the_failure_rate(tmp_path: Path) -> None:
    """1 failure a minute against 3 successes is a ratio of 0.25, not 1/60 failures a second."""
    labels = 'app="a", job="exporter", queue_name="q", name="t"'
    series = [
        {"series": f"celery_task_failed_total{{{labels}}}", "values": "0+1x10"},
        {"series": f"celery_task_succeeded_total{{{labels}}}", "values": "0+3x10"},
    ]
    expr = as_grafana_sends(failure_ratio('job=~"$job"', 'queue_name=~"$queue"'))
    promtool_eval(
        tmp_path, series, [{"expr": expr, "eval_time": "10m", "exp_samples": [{"value": 0.25}]}]
    )


def test_worker_task_panels_follow_the_selected_pods_group(tmp_path: Path) -> None:
    """With worker groups the task counters name the group in `hostname`, the worker's own
    series the pod: selecting a pod shows its group's tasks; a worker of an exporter without
    groups shows its own; an unselected group and another app's same-named group stay out."""
    exporter = 'job="exporter", instance="e:9808"'
    up = "celery_worker_up"
    task = "celery_task_succeeded_total"
    series = [
        {"series": f'{up}{{{exporter}, app="shop", hostname="web-1", worker_group="web"}}',
         "values": "1x10"},
        {"series": f'{up}{{{exporter}, app="shop", hostname="batch-1", worker_group="batch"}}',
         "values": "1x10"},
        {"series": f'{up}{{{exporter}, app="mail", hostname="solo"}}', "values": "1x10"},
        {"series": f'{task}{{{exporter}, app="shop", hostname="web", name="t"}}',
         "values": "0+60x10"},
        {"series": f'{task}{{{exporter}, app="shop", hostname="batch", name="t"}}',
         "values": "0+120x10"},
        {"series": f'{task}{{{exporter}, app="mail", hostname="web", name="t"}}',
         "values": "0+180x10"},
        {"series": f'{task}{{{exporter}, app="mail", hostname="solo", name="t"}}',
         "values": "0+240x10"},
    ]  # fmt: skip
    expr = as_grafana_sends(task_rate_per_worker(task)).replace("$worker", "web-1|solo")
    expected = [
        {"labels": '{app="shop", hostname="web"}', "value": 1},
        {"labels": '{app="mail", hostname="solo"}', "value": 4},
    ]
    promtool_eval(tmp_path, series, [{"expr": expr, "eval_time": "10m", "exp_samples": expected}])
