"""Health tells the truth: a consumer that still answers HTTP but no longer makes progress is
reported stalled, by /healthz (503, naming the part) and by ``..._stalled{part}``.

The exporter and the recorder run in this process against a real Redis (and SQLite), so that
a thread can be frozen or killed on purpose: the freeze is a fault injected by the test (a
function that blocks), the only way to make a healthy part hang on demand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporters.metrics.app import Exporter
from exporters.metrics.settings import load
from exporters.metrics.state import FleetState
from exporters.stream.health import Beat, Part, problems
from tests.exporter.process import parse, value
from tests.helpers import wait_for
from tests.servers import RedisServer
from tests.stream.corpus import envelope

# Well above every healthy part's beat interval (1 s at most), even on a busy machine.
STALL_AFTER = 3.0


def test_a_part_is_stalled_when_dead_stuck_or_not_progressing() -> None:
    beat, progress = Beat(), Beat()
    backlog = {"n": 0}
    done = threading.Thread(target=lambda: None)
    done.start()
    done.join()
    part = Part("applier", beat, None, backlog=lambda: backlog["n"], progress=progress,
                stall_after=10)  # fmt: skip
    now = time.monotonic()
    assert part.problem(now) is None
    assert part.problem(now + 11) == "applier stuck for 11s"
    beat.at = now + 11  # it goes round its loop, but work waits and nothing gets done
    backlog["n"] = 3
    assert part.problem(now + 11) == "applier: 3 waiting, nothing done for 11s"
    backlog["n"] = 0
    assert part.problem(now + 11) is None  # idle is not stalled
    dead = Part("reader", beat, done, stall_after=10)
    assert problems([part, dead], now) == {"reader": "reader thread has died"}


@pytest.fixture
def exporter(redis_server: RedisServer) -> Iterator[Exporter]:
    service = Exporter(
        load(
            broker_url=redis_server.url,
            exporter_stall_after=STALL_AFTER,
            exporter_poll_interval=0.2,
        )
    )
    service.start()
    yield service
    service.stop()


def failing(health, what: str) -> str:  # type: ignore[no-untyped-def]
    """Wait until ``health()`` answers unhealthy; its text."""
    return wait_for(lambda: (h := health()) and not h[0] and h[1], timeout=30, message=what)


def _healthy_and_applying(redis_server: RedisServer, exporter: Exporter) -> None:
    event = {"type": "worker-heartbeat", "hostname": "celery@h", "timestamp": time.time()}

    def applied() -> bool:
        redis_server.client().publish("/0.celeryev/worker.heartbeat", envelope(event))
        return exporter.stream.accepted > 0

    wait_for(applied, timeout=30, interval=0.2, message="the exporter applies events")
    # Healthy first: the broker poller runs on its own thread and may not have polled yet, and
    # a fault injected before then would be reported behind "not polled yet".
    wait_for(lambda: exporter.health() == (True, "ok"), timeout=30, message="healthy at first")


def test_a_frozen_applier_makes_healthz_fail_and_metrics_say_stalled(
    exporter: Exporter, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _healthy_and_applying(redis_server, exporter)
    release = threading.Event()

    def frozen(self: FleetState, events: list, now: float) -> None:
        release.wait(60)  # holds the state lock, as a hung applier would

    monkeypatch.setattr(FleetState, "apply_all", frozen)
    event = {"type": "worker-heartbeat", "hostname": "celery@h", "timestamp": time.time()}
    for _ in range(3):
        redis_server.client().publish("/0.celeryev/worker.heartbeat", envelope(event))
    try:
        text = failing(exporter.health, "healthz fails")
        assert "applier" in text, text
        # /metrics still answers (the state is locked: only the health families), in time.
        started = time.monotonic()
        samples = parse(exporter.render().decode())
        assert time.monotonic() - started < 10
        assert value(samples, "fleetops_exporter_stalled", part="applier") == 1
        assert value(samples, "fleetops_exporter_stalled", part="reader") == 0
    finally:
        release.set()
    monkeypatch.undo()
    wait_for(lambda: exporter.health()[0], timeout=30, message="healthy again once it moves")


# The test kills the applier thread on purpose; pytest reports that thread's exit otherwise.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_applier_makes_healthz_fail(
    exporter: Exporter, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _healthy_and_applying(redis_server, exporter)

    def die(now: float) -> None:
        raise SystemExit("the applier thread ends")  # not an Exception: nothing catches it

    monkeypatch.setattr(exporter, "tick", die)
    text = failing(exporter.health, "healthz fails")
    assert "applier thread has died" in text
    samples = parse(exporter.render().decode())
    assert value(samples, "fleetops_exporter_stalled", part="applier") == 1


def test_a_hung_history_write_makes_the_recorder_unhealthy(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exporters.history.writer import HistoryWriter
    from tests.history.recording import Publisher, history_settings, metric, running_recorder

    settings = history_settings(
        redis_server.url, f"sqlite:///{tmp_path / 'history.db'}", tmp_path,
        history_stall_after=STALL_AFTER,
    )  # fmt: skip
    publisher = Publisher(redis_server.url)
    release = threading.Event()
    real_write = HistoryWriter.write

    def hung(self: HistoryWriter, events: list):  # type: ignore[no-untyped-def]
        if any(e.get("uuid") == "hang" for e in events):
            release.wait(60)
        return real_write(self, events)

    monkeypatch.setattr(HistoryWriter, "write", hung)
    try:
        with running_recorder(settings, publisher) as recorder:
            wait_for(lambda: recorder.health()[0], timeout=30, message="recorder healthy")
            publisher.send({"type": "task-received", "uuid": "hang", "hostname": "celery@h"})
            text = failing(recorder.health, "recorder unhealthy")
            assert "writer stuck" in text, text
            assert metric(recorder, "fleetops_history_stalled", part="writer") == 1
            assert metric(recorder, "fleetops_history_stalled", part="consumer") == 0
            release.set()
            wait_for(lambda: recorder.health()[0], timeout=30, message="healthy again")
    finally:
        release.set()
        publisher.close()
