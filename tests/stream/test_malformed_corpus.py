"""Hostile messages in the middle of a valid stream, on a real Redis, read by a real exporter
and a real recorder started from their fleet specs: both keep every valid event, reject every
bad one by reason, repair what can be repaired, keep /healthz honest, and the history goes on
after a restart of the recorder."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import redis as redis_client
from sqlalchemy import select

from exporters.history.database import create_history_engine
from exporters.history.schema import tasks
from fleetops.fleet.spec import FleetContext
from tests.exporter.process import Samples, parse, total, value
from tests.helpers import wait_for
from tests.history.recording import task_states
from tests.processes import Processes
from tests.servers import RedisServer
from tests.stream.corpus import corpus, envelope, expected

CHANNEL = "/0.celeryev/task.multi"
REASONS = ("not_json", "bad_envelope", "bad_body", "not_an_object", "unknown_type",
           "missing_field", "bad_field", "internal_error")  # fmt: skip


def lifecycle(task_id: str, now: float, ok: bool) -> list[dict]:
    worker = "celery@valid"
    end = (
        {"type": "task-succeeded", "runtime": 0.5}
        if ok
        else {"type": "task-failed", "exception": "KeyError('x')", "traceback": "Traceback..."}
    )
    steps = [
        {"type": "task-sent", "hostname": "gen9@producer", "name": "corpus.valid",
         "queue": "valid", "args": "(1,)", "kwargs": "{}"},
        {"type": "task-received", "hostname": worker, "name": "corpus.valid"},
        {"type": "task-started", "hostname": worker},
        {**end, "hostname": worker},
    ]  # fmt: skip
    return [
        {**event, "uuid": task_id, "timestamp": now + 0.01 * step, "clock": step + 1}
        for step, event in enumerate(steps)
    ]


def subscribers(redis: redis_client.Redis) -> int:
    return sum(1 for client in redis.client_list() if int(client["psub"]))


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    # prometheus_client's own parser: a scrape Prometheus would refuse fails here.
    return parse(response.text)


def healthz(url: str) -> httpx.Response:
    return httpx.get(url.replace("/metrics", "/healthz"), timeout=10)


@pytest.mark.slow
def test_hostile_events_are_rejected_counted_and_survived(
    redis_server: RedisServer, processes: Processes, tmp_path: Path
) -> None:
    from exporters.history.fleet import processes as recorder_processes
    from exporters.metrics.fleet import processes as exporter_processes

    data = tmp_path / "data"
    ctx = FleetContext(
        run_dir=tmp_path,
        env={"FLEETOPS_BROKER_URL": redis_server.url, "FLEETOPS_DATA_DIR": str(data)},
        any_port=True,
    )
    specs = {s.name: s for s in [*exporter_processes(ctx), *recorder_processes(ctx)]}
    redis = redis_server.client()
    exporter = processes.start(specs["exporter"], ctx.env)
    recorder = processes.start(specs["recorder"], ctx.env)
    wait_for(lambda: subscribers(redis) == 2, timeout=60, message="both subscribed")
    exporter_url, recorder_url = specs["exporter"].url, specs["recorder"].url
    assert exporter_url and recorder_url

    now = time.time()
    cases = corpus(now)
    valid: dict[str, str] = {}
    for index, case in enumerate(cases):
        task_id = f"valid-{index:03d}"
        ok = index % 3 != 0
        valid[task_id] = "SUCCESS" if ok else "FAILURE"
        for event in lifecycle(task_id, now, ok):
            redis.publish(CHANNEL, envelope(event))
        redis.publish(CHANNEL, case.payload)
    marker = {"type": "task-sent", "hostname": "gen9@producer", "uuid": "marker",
              "name": "corpus.marker", "timestamp": time.time()}  # fmt: skip
    redis.publish(CHANNEL, envelope(marker))

    # Read in order on one channel: once the marker is in, everything before it was handled.
    def marker_seen() -> bool:
        exporter.alive()
        recorder.alive()
        samples = scrape(exporter_url)
        return total(samples, "celery_task_sent_total", name="corpus.marker") == 1

    wait_for(marker_seen, timeout=60, message="the exporter read past the corpus")
    wait_for(lambda: "marker" in task_states(ctx.env["FLEETOPS_HISTORY_DATABASE_URL"]),
             timeout=60, message="the recorder wrote past the corpus")  # fmt: skip

    rejected, accepted, corrected = expected(cases)
    valid_events = 4 * len(valid) + 1
    for url, prefix in (
        (exporter_url, "fleetops_exporter"),
        (recorder_url, "fleetops_history"),
    ):
        samples = scrape(url)
        for reason in REASONS:
            # Summed over the label sets that include the reason: the recorder counts by app.
            assert total(samples, f"{prefix}_events_rejected_total", reason=reason) == (
                rejected.get(reason, 0)
            ), (prefix, reason)
        for reason, count in corrected.items():
            assert total(samples, f"{prefix}_events_corrected_total", reason=reason) == count
        response = healthz(url)
        assert response.status_code == 200, response.text
    samples = scrape(exporter_url)
    assert total(samples, "fleetops_exporter_events_total") == valid_events + accepted
    succeeded = sum(1 for state in valid.values() if state == "SUCCESS")
    assert total(samples, "celery_task_succeeded_total", name="corpus.valid") == succeeded
    assert total(samples, "celery_task_failed_total", exception="KeyError") == len(valid) - (
        succeeded
    )
    assert total(samples, "fleetops_exporter_stalled") == 0
    # Far-future timestamps were dated now: the event lag grows again once events stop.
    wait_for(lambda: value(scrape(exporter_url), "fleetops_exporter_event_lag_seconds") > 1.5,
             timeout=30, message="the event lag grows")  # fmt: skip

    database = ctx.env["FLEETOPS_HISTORY_DATABASE_URL"]
    states = task_states(database)
    assert {k: states.get(k) for k in valid} == valid
    rows = _rows(database, "future-1", "giant-failure", "deep-args", "surrogate", "multi-ok")
    assert now - 5 < rows["future-1"]["timestamp"] < time.time() + 1
    assert rows["giant-failure"]["exception_type"] == "ValueError"
    assert len(rows["giant-failure"]["exception"]) <= 16_384
    assert rows["deep-args"]["args"] is None
    assert rows["surrogate"]["name"] == "bad\ufffdname"
    assert rows["multi-ok"]["state"] == "STARTED"

    # The recorder restarts cleanly and the history goes on: nothing was wedged.
    assert recorder.restart() == 0
    wait_for(lambda: subscribers(redis) == 2, timeout=60, message="recorder back")
    later = {f"later-{n}": "SUCCESS" for n in range(5)}
    for task_id in later:
        for event in lifecycle(task_id, time.time(), ok=True):
            redis.publish(CHANNEL, envelope(event))
        redis.publish(CHANNEL, envelope({"type": "task-received", "uuid": 7}))
    wait_for(lambda: all(task_states(database).get(k) == v for k, v in later.items()),
             timeout=60, message="history after the restart")  # fmt: skip
    assert recorder.alive()
    assert healthz(recorder_url).status_code == 200


def _rows(database_url: str, *task_ids: str) -> dict[str, dict]:
    engine = create_history_engine(database_url)
    try:
        with engine.connect() as connection:
            found = connection.execute(select(tasks).where(tasks.c.task_id.in_(task_ids)))
            return {row.task_id: dict(row._mapping) for row in found}
    finally:
        engine.dispose()
