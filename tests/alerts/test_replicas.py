"""Two exporter replicas side by side, scraped by one real Prometheus that loads the shipped rules.

redis-server and a Celery worker -> two `fleetops exporter` processes (replicas "a" and "b", both
reading every event) -> Prometheus (1 s scrape and evaluation, the generated rules and alerts,
each target labelled with its replica as docs/exporter.md says). The recorded task rates must
count each task once, as either replica alone does, not twice. Replica b is then SIGKILLed:
only FleetopsExporterReplicaDown for b may become active in Prometheus (pending or firing), and
the recorded rate must go on without a gap, dip or spike; once b is restarted (its counters
from 0) the warning clears and the rate still neither spikes nor drops.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from alerts import recording
from alerts.fleet import prometheus_spec
from alerts.stack import StackPorts, render_stack
from fleetops import breaking_points
from fleetops.fleet.spec import free_port
from tests.alerts.conftest import breaking_points_with
from tests.exporter.process import ExporterProcess, run_exporter, total
from tests.helpers import wait_for
from tests.processes import Processes
from tests.servers import CeleryProcess, RedisServer
from workers.client import client_app

pytestmark = pytest.mark.slow

QUEUE = "maintenance"
TASK = "maintenance.probe"
REPLICA_DOWN = "FleetopsExporterReplicaDown"
COMPLETED = recording.completed("5m")
# Double counting would make the recorded rate 2x one replica's; a replica that scraped the
# burst a second later than the other differs by a few percent.
SINGLE = (0.8, 1.25)
# The alerts every healthy run has active; anything else active after the kill is a page or
# ticket caused by losing one replica. The test fleet's visibility timeout is 6 s (so that a
# killed worker's task comes back within a test), far below its 300 s time limits: the trap
# alert is right to fire on it, once per task name, not once per replica.
ALWAYS = {"FleetopsWatchdog", "CeleryTaskRuntimeNearVisibilityTimeout"}


# Go's RFC 3339 with nanoseconds: "2026-12-03T01:52:00.123456789Z" or "...+01:00".
_RFC3339 = re.compile(r"^(?P<head>[^.Z+]+?)(?:\.(?P<fraction>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)$")


def _timestamp(text: str) -> float:
    match = _RFC3339.match(text)
    assert match, f"not an RFC 3339 time: {text!r}"
    zone = "+00:00" if match["zone"] == "Z" else match["zone"]
    fraction = (match["fraction"] or "0")[:6]  # Python reads microseconds at most
    return datetime.fromisoformat(f"{match['head']}.{fraction}{zone}").timestamp()


def _oldest_evaluation(prometheus: str) -> float:
    """When the rule group evaluated least recently last ran."""
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    return min(_timestamp(group["lastEvaluation"]) for group in groups)


def _query(prometheus: str, promql: str, at: float | None = None) -> list[dict]:
    params: dict[str, str | float] = {"query": promql}
    if at is not None:
        params["time"] = at
    body = httpx.get(f"{prometheus}/api/v1/query", params=params, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def _value(prometheus: str, promql: str, at: float | None = None) -> float | None:
    result = _query(prometheus, promql, at)
    assert len(result) <= 1, f"{promql}: more than one series {result}"
    return float(result[0]["value"][1]) if result else None


def _active_alerts(prometheus: str) -> list[dict]:
    """Every alert Prometheus holds, pending or firing: a condition that became true at all."""
    body = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()
    return body["data"]["alerts"]


def _unexpected(alerts: list[dict], allowed: set[str]) -> list[dict]:
    return [a for a in alerts if a["labels"]["alertname"] not in allowed]


def _single_replica_rate(replica: str) -> str:
    """What the recording rule would record with only this replica scraped."""
    matcher = f'replica="{replica}"'
    return f"sum by (queue_name) ({recording.completed_rate(matcher, '5m')})"


def _completed(exporter: ExporterProcess) -> float:
    samples = exporter.metrics()
    return total(samples, "celery_task_succeeded_total", queue_name=QUEUE) + total(
        samples, "celery_task_failed_total", queue_name=QUEUE
    )


def _scraped(prometheus: str, replica: str, count: int) -> bool:
    promql = f'sum(celery_task_succeeded_total{{replica="{replica}", queue_name="{QUEUE}"}})'
    return _value(prometheus, promql) == count


def _send(broker_url: str, count: int) -> None:
    client = client_app(broker_url)
    # As the fleet's producers do: task-sent events name each task's queue.
    client.conf.task_send_sent_event = True
    for _ in range(count):
        client.send_task(TASK, kwargs={"duration": 0.0}, queue=QUEUE)
    client.close()


def _recorded_since(prometheus: str, start: float) -> list[tuple[float, float]]:
    """The recorded completed rate of the queue at every evaluation since ``start``."""
    params = {
        "query": f'{COMPLETED}{{queue_name="{QUEUE}"}}',
        "start": start,
        "end": time.time(),
        "step": 1,
    }
    body = httpx.get(f"{prometheus}/api/v1/query_range", params=params, timeout=5).json()
    assert body["status"] == "success", body
    (series,) = body["data"]["result"]
    return [(float(t), float(v)) for t, v in series["values"]]


def _assert_single_and_continuous(prometheus: str, since: float) -> list[float]:
    """At every step since ``since``: a recorded value (no gap), never below replica a's own
    rate (a dip where replica b went) and never above the larger of the two replicas' own rates
    (double counting: twice it, as both count every task). The ratios to that larger rate."""
    points = _recorded_since(prometheus, since)
    steps = [b - a for (a, _), (b, _) in itertools.pairwise(points)]
    assert points and max(steps, default=1) <= 2, f"the recorded rate has a gap: {points}"
    ratios = []
    for at, recorded in points:
        # A killed replica's rate goes on from its samples in the window until they age out.
        alone = {n: _value(prometheus, _single_replica_rate(n), at) or 0.0 for n in ("a", "b")}
        largest = max(alone.values())
        assert largest > 0, f"no replica has a rate at {at}"
        assert SINGLE[0] * alone["a"] <= recorded <= SINGLE[1] * largest, (
            f"at {at} the rules record {recorded}/s where the replicas alone count {alone}"
        )
        ratios.append(recorded / largest)
    return ratios


@pytest.fixture
def replicas(
    redis_server: RedisServer, processes: Processes, tmp_path: Path
) -> tuple[dict[str, ExporterProcess], str]:
    """Replicas a and b, and the URL of the Prometheus that scrapes both with the shipped rules."""
    # Only the replica ticket's `for` is shortened, so that it fires within the test; no Flower
    # or history recorder runs here, so their "not scraped at all" alerts are left out.
    points_file = breaking_points_with(
        tmp_path / "bp.toml",
        '[alerts]\ndisabled = ["FleetopsFlowerDown", "FleetopsRecorderDown"]\n'
        f'[alerts.for]\n{REPLICA_DOWN} = "2s"',
    )
    points = breaking_points.load(points_file)
    env = {breaking_points.FILE_ENV: str(points_file)}
    exporters = {
        name: run_exporter(
            processes, redis_server.url, "--queue", QUEUE, "--replica", name, env=env, wait=False
        )
        for name in ("a", "b")
    }
    port = free_port()
    # Only Prometheus runs: its /api/v1/alerts shows pending alerts too, which Alertmanager
    # would not (a page the kill causes shows there long before its `for`).
    files = render_stack(
        tmp_path / "alerting", points=points, config=points.alerts,
        ports=StackPorts(prometheus=port, alertmanager=free_port(), pager=free_port()),
        exporter_targets=[], flower_targets=[],
        exporter_replicas={name: f"127.0.0.1:{e.port}" for name, e in exporters.items()},
        scrape_interval="1s", evaluation_interval="1s",
    )  # fmt: skip
    prometheus = processes.start(prometheus_spec(files, port), env, wait=False)
    for child in [*(e.child for e in exporters.values()), prometheus]:
        child.wait_ready()
    return exporters, f"http://127.0.0.1:{port}"


def test_two_replicas_count_once_and_losing_one_only_files_its_ticket(
    replicas: tuple[dict[str, ExporterProcess], str],
    redis_server: RedisServer,
    start_worker: Callable[..., CeleryProcess],
) -> None:
    exporters, prom = replicas
    a, b = exporters["a"], exporters["b"]
    start_worker(queues=QUEUE, name="replicas", concurrency=2)
    wait_for(lambda: _value(prom, 'count(up{job="fleetops-exporter"} == 1)') == 2, timeout=60,
             message="Prometheus scraping both replicas")  # fmt: skip
    _send(redis_server.url, 1)

    def both_count(count: int) -> None:
        for exporter in (a, b):
            # Each replica reads every event: each alone reports the fleet's true count.
            wait_for(lambda e=exporter: e.alive() and _completed(e) == count, timeout=60,
                     message=f"{exporter.child.label} counting {count} tasks")  # fmt: skip
        for name in ("a", "b"):
            wait_for(lambda n=name: _scraped(prom, n, count), timeout=30,
                     message=f"Prometheus holding replica {name}'s count {count}")  # fmt: skip

    # One task first, so that both replicas' series exist, and have been scraped twice
    # (their rate exists), before the tasks the rates are compared on: otherwise a replica
    # whose first scrape came after the burst would see no increase at all.
    both_count(1)
    wait_for(lambda: all(_query(prom, _single_replica_rate(n)) for n in ("a", "b")),
             timeout=30, message="a rate of both replicas")  # fmt: skip
    first = 21
    _send(redis_server.url, first - 1)
    both_count(first)

    def recorded_with_both_rates() -> float | None:
        """When the rules first recorded the burst (the sample's own time, not the query's)."""
        alone = [_value(prom, _single_replica_rate(name)) for name in ("a", "b")]
        recorded = f'{COMPLETED}{{queue_name="{QUEUE}"}}'
        if not (all(alone) and _value(prom, recorded)):
            return None
        return _value(prom, f"timestamp({recorded})")

    recorded_from = wait_for(recorded_with_both_rates, timeout=30,
                             message=f"{COMPLETED} recorded after the burst")  # fmt: skip

    # Both replicas up: single counts, and no alert carries a replica of its own.
    ratios = _assert_single_and_continuous(prom, recorded_from)
    before = _unexpected(_active_alerts(prom), ALWAYS)
    assert before == [], f"alerts active with both replicas up: {before}"

    b.child.kill()  # SIGKILL: no goodbye, exactly as a crash or an OOM kill
    killed_at = time.monotonic()

    def replica_down_fires() -> bool:
        active = _active_alerts(prom)
        # Checked at every poll from the kill on, pending included: nothing else may start.
        assert _unexpected(active, ALWAYS | {REPLICA_DOWN}) == [], active
        return any(
            x["labels"]["alertname"] == REPLICA_DOWN and x["state"] == "firing" for x in active
        )

    wait_for(replica_down_fires, timeout=60, interval=0.2, message=f"{REPLICA_DOWN} firing")
    time_to_ticket = time.monotonic() - killed_at
    (ticket,) = [x for x in _active_alerts(prom) if x["labels"]["alertname"] == REPLICA_DOWN]
    assert ticket["labels"]["replica"] == "b" and ticket["labels"]["severity"] == "warning"
    assert ticket["labels"]["instance"] == f"127.0.0.1:{b.port}"

    # The fleet goes on; the survivor counts the new tasks and the rules follow it alone.
    more = 10
    _send(redis_server.url, more)
    wait_for(lambda: a.alive() and _completed(a) == first + more, timeout=60,
             message="replica a counting the tasks sent after the kill")  # fmt: skip
    wait_for(lambda: _scraped(prom, "a", first + more), timeout=30,
             message="Prometheus holding replica a's new count")  # fmt: skip

    # Every rule group evaluates a few more times on the new data: any alert the kill or the
    # lost series cause becomes active (pending) by then, and replica_down_fires() fails on it.
    settle_after = time.time() + 3

    def settled() -> bool:
        return replica_down_fires() and _oldest_evaluation(prom) > settle_after

    wait_for(settled, timeout=60, interval=0.2, message="the rules evaluated after the kill")
    ratios = _assert_single_and_continuous(prom, recorded_from)

    # Replica b comes back with counters from 0: the ticket clears, the rate does not jump.
    b.child.start()
    wait_for(lambda: not any(x["labels"]["alertname"] == REPLICA_DOWN
                             for x in _active_alerts(prom)),
             timeout=60, message=f"{REPLICA_DOWN} resolved")  # fmt: skip
    last = 5
    _send(redis_server.url, last)
    wait_for(lambda: b.alive() and _completed(b) == last, timeout=60,
             message="the restarted replica b counting only what it saw")  # fmt: skip
    wait_for(lambda: _scraped(prom, "b", last) and _scraped(prom, "a", first + more + last),
             timeout=30, message="Prometheus holding both new counts")  # fmt: skip
    assert _unexpected(_active_alerts(prom), ALWAYS) == []
    ratios = _assert_single_and_continuous(prom, recorded_from)
    print(f"\nrecorded rate / the larger replica's own rate over {len(ratios)} evaluations"
          f" (kill and restart included): {min(ratios):.3f} to {max(ratios):.3f};"
          f" {REPLICA_DOWN} firing {time_to_ticket:.1f} s after the SIGKILL (for 2s, scrape"
          " and evaluation 1 s)")  # fmt: skip
