"""The recorder never stops on a batch: a row the database refuses is set aside in the
quarantine and never replayed into a stop; a spool the disk refuses loses only what did not
fit, counted, and kills no thread."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import event as sa_event

from exporters.history.buffer import SpillingBuffer
from exporters.history.database import create_history_engine
from exporters.history.schema import tasks
from tests.helpers import wait_for
from tests.history.events import task_lifecycle
from tests.history.recording import (
    Publisher,
    history_settings,
    metric,
    running_recorder,
    task_states,
)
from tests.servers import RedisServer
from tests.stream.corpus import envelope


def refuse_task(database_url: str, task_id: str) -> None:
    """A real refusal by the database: a trigger that aborts the insert of one task."""
    engine = create_history_engine(database_url)

    @sa_event.listens_for(engine, "connect")
    def _trigger(connection, _record):  # type: ignore[no-untyped-def]
        connection.execute(
            f"CREATE TEMP TRIGGER IF NOT EXISTS refuse_{task_id} BEFORE INSERT ON main.{tasks.name}"
            f" WHEN NEW.task_id = '{task_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )

    return engine  # type: ignore[return-value]


def test_a_row_the_database_refuses_is_quarantined_and_never_replayed(
    redis_server: RedisServer, publisher: Publisher, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'history.db'}"
    settings = history_settings(redis_server.url, database, tmp_path)
    from exporters.history import migrate

    migrate.upgrade(create_history_engine(database))
    now = time.time() - 60
    good = [task_lifecycle(f"good-{n}", start=now + n) for n in range(5)]
    engine = refuse_task(database, "poison")
    with running_recorder(settings, publisher, engine=engine) as recorder:
        for events in good[:2]:
            publisher.send_all(events)
        publisher.send_all(task_lifecycle("poison", start=now))
        for events in good[2:]:
            publisher.send_all(events)
        wait_for(lambda: metric(recorder, "fleetops_history_events_quarantined_total") == 4,
                 timeout=60, message="the refused task's 4 events quarantined")  # fmt: skip
        wait_for(lambda: all(task_states(database).get(f"good-{n}") == "SUCCESS"
                             for n in range(5)), timeout=60)  # fmt: skip
        assert recorder.health()[0], recorder.health()
    assert "poison" not in task_states(database)
    lines = (settings.effective_quarantine_dir).glob("*.jsonl")
    kept = [orjson.loads(line) for path in lines for line in path.read_bytes().splitlines()]
    assert {entry["event"]["uuid"] for entry in kept} == {"poison"}
    assert all("refused" in entry["reason"] for entry in kept)
    # A restart replays nothing into a stop: nothing was left in the spool, history goes on.
    with running_recorder(settings, publisher) as recorder:
        publisher.send_all(task_lifecycle("after-restart", start=time.time()))
        wait_for(lambda: task_states(database).get("after-restart") == "SUCCESS", timeout=60)
        assert metric(recorder, "fleetops_history_events_quarantined_total") == 0
        assert not recorder.failed


def test_events_arriving_faster_than_read_are_counted_as_overflow(
    redis_server: RedisServer, publisher: Publisher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer held up (here: frozen on purpose, the only way to make it slow on demand)
    fills the hand-over; what the reader then drops unread must show in dropped{overflow}."""
    database = f"sqlite:///{tmp_path / 'history.db'}"
    settings = history_settings(
        redis_server.url, database, tmp_path, history_handover_bytes=1024 * 1024
    )
    published = 3_000
    pad = "a" * 1_500  # ~2 KB a message: 6 MB, six times the hand-over bound
    with running_recorder(settings, publisher) as recorder:
        release = threading.Event()
        # The stream's sink: the one app's source (exporters/history/sources.py).
        source = recorder.sources[0]
        real_apply = source.apply

        def frozen(events: list, received_at: float) -> None:
            release.wait(60)
            real_apply(events, received_at)

        monkeypatch.setattr(source, "apply", frozen)
        before = metric(recorder, "fleetops_history_events_written_total")
        client = redis_server.client()
        now = time.time()
        for n in range(published):
            event = {"type": "task-received", "uuid": f"t-{n}", "hostname": "celery@h",
                     "timestamp": now, "name": "bulk.task", "args": pad}  # fmt: skip
            client.publish("/0.celeryev/task.received", envelope(event))
        wait_for(lambda: recorder.stream.overflow_events() > 0, timeout=30, message="overflow")
        release.set()

        def settled() -> bool:
            written = metric(recorder, "fleetops_history_events_written_total") - before
            lost = metric(recorder, "fleetops_history_events_dropped_total", reason="overflow")
            return lost > 0 and written + lost >= published * 0.95 and recorder.backlog() == 0

        wait_for(settled, timeout=60, message="every event written or counted as overflow")
        lost = metric(recorder, "fleetops_history_events_dropped_total", reason="overflow")
        recorded = len(task_states(database))
        # The loss is estimated from whole messages (docs/metrics.md): within a few percent.
        assert published * 0.95 <= recorded + lost <= published * 1.05, (recorded, lost)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real file system that fills up: a 64 KiB tmpfs (needs root, as CI runs)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_drops_and_counts_without_raising(full_disk: Path) -> None:
    dropped: dict[str, int] = {}

    def on_drop(count: int, reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + count

    buffer = SpillingBuffer(10, full_disk / "spool", 100 * 1024 * 1024, on_drop=on_drop,
                            segment_bytes=16 * 1024)  # fmt: skip
    event = {"type": "task-received", "uuid": "x" * 36, "hostname": "celery@h", "pad": "p" * 200}
    kept = sum(buffer.put(dict(event, n=n)) for n in range(2_000))  # ~500 KB: far past 64 KiB
    assert dropped.get("spool_error", 0) > 0
    assert kept + dropped["spool_error"] == 2_000
    assert dropped.get("buffer_full", 0) == 0
    # What did reach the disk is intact and comes back in order.
    seen = []
    while (batch := buffer.take(500, timeout=0.1)) is not None:
        seen.extend(e["n"] for e in batch.events)
        buffer.commit(batch)
    assert seen == sorted(seen) and len(seen) == kept
    buffer.put_many([dict(event, n=-1)])  # still usable once the disk has room again
    buffer.close()
