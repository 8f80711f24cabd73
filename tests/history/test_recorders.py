"""Several recorders on one database: they start together, write the same events, prune the
same rows and are killed (docs/history.md, "Several recorders").

The last test is the deployment itself: two real ``fleetops recorder`` processes on one Redis
and one PostgreSQL, a real worker running real tasks (some succeed, some fail, some retry and
then fail), and the recorders SIGKILLed and restarted in turn while the load runs; afterwards
every task is in the history once, with its real outcome, retries and times."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import Engine, event, select

from exporters.history import migrate, retention
from exporters.history.database import create_history_engine
from exporters.history.merge import LIFECYCLE_COLUMNS
from exporters.history.recorder import Recorder
from exporters.history.retention import DAY, RetentionPolicy, prune, row_counts
from exporters.history.schema import tasks
from exporters.history.writer import HistoryWriter, WriteResult
from exporters.stream.redis_reader import EXCHANGE
from tests.exporter.process import total, value
from tests.helpers import wait_for
from tests.history.events import task_lifecycle
from tests.history.recording import history_settings, metric, start_recorder
from tests.processes import REPO, Processes, child_env
from tests.servers import CeleryProcess, RedisServer
from workers import deadletter

# Enough processes that, without the lock, two of them reliably create the same table.
MIGRATORS = 4


def test_recorders_starting_together_on_an_empty_database_all_migrate(
    database_url: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    argv = [sys.executable, "-m", "tests.history.migrate_child", database_url, str(gate)]
    children = [
        subprocess.Popen(
            argv,
            cwd=REPO,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(MIGRATORS)
    ]
    try:

        def all_waiting() -> bool:
            for child in children:
                assert child.poll() is None, child.communicate()[0][-3000:]
            return len(list(tmp_path.glob("gate.ready-*"))) == MIGRATORS

        wait_for(all_waiting, timeout=90, message="every migrator connected")
        gate.touch()
        results = [(child.wait(timeout=90), child.communicate()[0]) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for code, output in results:
        assert code == 0, output[-3000:]
        assert f"at revision {migrate.head_revision()}" in output
    engine = create_history_engine(database_url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def test_retention_never_waits_on_a_writer_nor_on_another_pruner(postgres_url: str) -> None:
    """A row a writer holds is skipped, not waited for (so no deadlock with writers that lock
    in key order); while one recorder prunes, another skips its round."""
    engine = create_history_engine(postgres_url)
    migrate.upgrade(engine)
    now = time.time()
    writer = HistoryWriter(engine)
    for index in range(4):
        writer.write(task_lifecycle(f"old-{index}", start=now - 30 * DAY))
    pruner = impatient_engine(postgres_url)
    policy = RetentionPolicy(retention_days=7)
    try:
        with engine.connect() as writing:
            # A writer's transaction holding one old row, as an upsert of a late event does.
            writing.execute(
                select(tasks.c.task_id).where(tasks.c.task_id == "old-1").with_for_update()
            ).all()
            result = prune(pruner, policy, now=now)
            assert result.by_age == 3 and not result.skipped
            with retention._only_pruner(engine) as alone:
                assert alone
                assert prune(pruner, policy, now=now).skipped
            writing.rollback()
        assert prune(pruner, policy, now=now).by_age == 1
        assert row_counts(engine) == {"other": 0, "failed": 0}
    finally:
        pruner.dispose()
        engine.dispose()


def impatient_engine(url: str) -> Engine:
    """Waits at most 20 s for a row lock, then fails, instead of hanging the test."""
    engine = create_history_engine(url)

    @event.listens_for(engine, "connect")
    def _lock_timeout(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '20s'")
        dbapi_connection.commit()

    return engine


# The load: what each probe is asked to do, and what the history must then say.
OUTCOMES = {
    "succeeds": ("SUCCESS", 0, None),
    "fails": ("FAILURE", 0, "ValueError"),
    # Retried FLEETOPS_RETRY_MAX times (a TransientError), then failed for good.
    "retries": ("FAILURE", 2, "TransientError"),
}
MIX = ("succeeds", "succeeds", "succeeds", "fails", "retries")
# Slow enough that the worker is never behind (a backlog at 15 a second cost half a minute of
# draining on a busy machine), fast enough that events flow at every kill; the load runs on
# until MIN_TASKS were sent.
TASKS_PER_SECOND = 6.0
MIN_TASKS = 100
# Recorders SIGKILLed in turn (a, b, a, b): the other is up and subscribed at each kill.
KILLS = 4
# Commits of the survivor after the restarted recorder subscribed, before the survivor is
# killed in turn: the second is of events taken after the subscription; one more for the
# events still between the survivor's reader and its buffer at that moment.
COVERING_COMMITS = 3


def subscribers(redis_server: RedisServer) -> int:
    """Subscribers of the event channel: the recorders (a worker subscribes to its pidbox)."""
    ((_, count),) = redis_server.client().pubsub_numsub(f"/0.{EXCHANGE}")
    return int(count)


class SteadyLoad:
    """Sends probes at a steady rate from a thread until stopped; remembers what it asked."""

    def __init__(self, client: Celery) -> None:
        self.client = client
        self.sent: dict[str, str] = {}
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="load", daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        try:
            for n in itertools.count():
                if self.stop.is_set():
                    return
                kind = MIX[n % len(MIX)]
                fail = OUTCOMES[kind][2]
                result = self.client.send_task(
                    "maintenance.probe", kwargs={"duration": 0.0, "fail": fail},
                    queue="maintenance",
                )  # fmt: skip
                self.sent[result.id] = kind
                # Paced, not waited on: the rate of the load, like workers/load.py's steady().
                self.stop.wait(max(0.0, started + (n + 1) / TASKS_PER_SECOND - time.monotonic()))
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> SteadyLoad:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[Celery]:
    """A producer like the application's, reading outcomes from the workers' result backend."""
    app = Celery("recorders-test", broker=redis_server.url, backend=redis_server.url,
                 set_as_current=False)  # fmt: skip
    app.conf.task_send_sent_event = True
    yield app
    app.close()


def stored_tasks(database_url: str) -> list[dict[str, Any]]:
    engine = create_history_engine(database_url)
    try:
        with engine.connect() as connection:
            query = select(tasks).where(tasks.c.name == "maintenance.probe")
            return [dict(row) for row in connection.execute(query).mappings()]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_two_recorders_one_killed_in_turn_keep_every_task_once(
    # First: the database outlives the processes, which stop before it is dropped.
    postgres_url: str,
    redis_server: RedisServer,
    processes: Processes,
    start_worker: Callable[..., CeleryProcess],
    client: Celery,
) -> None:
    # Both start together on an empty database: their first batches migrate at the same time.
    # Both prune all the time: retention runs beside the other recorder's writes.
    prune_often = {"FLEETOPS_HISTORY_PRUNE_INTERVAL": "1"}
    recorders = [
        start_recorder(processes, name, redis_server.url, postgres_url, False, prune_often)
        for name in ("recorder-a", "recorder-b")
    ]
    worker = start_worker(queues="maintenance", concurrency=2, env={"FLEETOPS_RETRY_MAX": "2"})
    for recorder in recorders:
        recorder.child.wait_ready()
    wait_for(lambda: subscribers(redis_server) == 2, timeout=60, message="both subscribed")

    with SteadyLoad(client) as load:
        for kill in range(KILLS):
            victim = recorders[kill % 2]
            # Each run of the victim writes beside the other before it dies.
            wait_for(lambda v=victim: v.child.alive() and v.written() > 0, timeout=60,
                     message=f"{victim.child.label} writing")  # fmt: skip
            victim.child.kill(signal.SIGKILL)
            victim.child.start()
            wait_for(lambda: subscribers(redis_server) == 2, timeout=60,
                     message=f"{victim.child.label} subscribed again")  # fmt: skip
            # The next victim is the survivor: before it dies, it commits what it received
            # while this one was away (killing both within that window is a real gap).
            recorders[(kill + 1) % 2].commits(COVERING_COMMITS)
        wait_for(lambda: all(r.written() > 0 for r in recorders), timeout=60)
        wait_for(lambda: load.error or len(load.sent) >= MIN_TASKS, timeout=60,
                 message=f"{MIN_TASKS} tasks sent")  # fmt: skip
    assert load.error is None, load.error
    sent = dict(load.sent)
    assert len(sent) >= MIN_TASKS, f"only {len(sent)} tasks sent"

    # Ground truth, from the worker: a success in the result backend, a final failure in the
    # dead-letter queue with its exception and retries. (Not the backend's state for failures:
    # a retry that runs at once on another pool process may store FAILURE before the first
    # process stores RETRY, and the backend keeps RETRY; the history orders events by time.)
    truth: dict[str, tuple[str, int, str | None]] = {}

    def all_done() -> bool:
        worker.child.alive()
        for letter in deadletter.entries(client, limit=10 * len(sent)):
            truth[letter.task_id] = ("FAILURE", letter.retries, letter.exception)
        for task_id in sent.keys() - truth.keys():
            if client.AsyncResult(task_id).state == "SUCCESS":
                truth[task_id] = ("SUCCESS", 0, None)
        return truth.keys() >= sent.keys()

    try:
        wait_for(all_done, timeout=120, interval=0.5, message="every task finished")
    except TimeoutError as exc:
        left = {task_id: sent[task_id] for task_id in sent.keys() - truth.keys()}
        raise AssertionError(f"{len(left)} of {len(sent)} unfinished: {left}") from exc
    # The worker did what each probe asked: the load is the one the checks below expect.
    assert {task_id: truth[task_id] for task_id in sent} == {
        task_id: OUTCOMES[kind] for task_id, kind in sent.items()
    }

    def recorded() -> bool:
        for recorder in recorders:
            recorder.child.alive()
        states = {row["task_id"]: row["state"] for row in stored_tasks(postgres_url)}
        return all(states.get(task_id) == truth[task_id][0] for task_id in sent)

    try:
        wait_for(recorded, timeout=90, interval=0.5, message="every final state recorded")
    except TimeoutError as exc:
        rows = {row["task_id"]: row for row in stored_tasks(postgres_url)}
        wrong = {task_id: (truth[task_id], rows.get(task_id)) for task_id in sent
                 if rows.get(task_id, {}).get("state") != truth[task_id][0]}  # fmt: skip
        raise AssertionError(f"{len(wrong)} of {len(sent)} wrong: {wrong}") from exc
    wait_for(lambda: all(r.drained() for r in recorders), timeout=60, message="both drained")

    rows = stored_tasks(postgres_url)
    # Exactly once: one row per task sent, and no other.
    assert sorted(row["task_id"] for row in rows) == sorted(sent)
    for row in rows:
        state, retries, exception = truth[row["task_id"]]
        where = f"{row['task_id']} ({sent[row['task_id']]}): {row}"
        assert row["state"] == state, where
        assert row["retries"] == retries, where
        assert row["exception_type"] == exception, where
        assert row["worker"] == worker.hostname, where
        finished = row["succeeded_at"] if state == "SUCCESS" else row["failed_at"]
        # The times of the latest attempt, present, and in order on the worker's clock (the
        # client sends task-sent after the message, so it may come after task-received).
        times = [row["received_at"], row["started_at"], finished]
        assert row["sent_at"] is not None and None not in times, where
        assert times == sorted(times), where
        assert row["timestamp"] == max(t for t in (row[c] for c in LIFECYCLE_COLUMNS) if t)
        assert (row["retried_at"] is not None) == (retries > 0), where

    # Neither recorder took the other's writes for a problem of its own.
    for recorder in recorders:
        samples = recorder.metrics()
        assert recorder.healthz() == 200
        assert value(samples, "fleetops_history_database_up") == 1
        assert value(samples, "fleetops_history_write_errors_total", kind="rejected") == 0
        assert value(samples, "fleetops_history_write_errors_total", kind="unavailable") == 0
        assert value(samples, "fleetops_history_events_quarantined_total") == 0
        assert total(samples, "fleetops_history_events_dropped_total") == 0
    for recorder in recorders:
        assert recorder.child.stop() == 0, recorder.child.log()[-3000:]


def test_a_second_recorder_on_the_same_spool_refuses_to_start(
    redis_server: RedisServer, processes: Processes, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'history.db'}"
    first = start_recorder(processes, "recorder-a", redis_server.url, database, wait=True)
    spool = processes.run_dir / "recorder-a" / "history-spool"
    argv = [sys.executable, "-c", "from fleetops.cli import main; main()", "recorder"]
    env = child_env({
        "FLEETOPS_BROKER_URL": redis_server.url,
        "FLEETOPS_DATA_DIR": str(tmp_path / "b"),
        "FLEETOPS_HISTORY_DATABASE_URL": database,
        "FLEETOPS_HISTORY_METRICS_PORT": "0",
        "FLEETOPS_HISTORY_SPOOL_DIR": str(spool),
    })  # fmt: skip
    second = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 2, second.stderr[-3000:]
    assert "FLEETOPS_HISTORY_SPOOL_DIR" in second.stderr
    assert first.child.alive() and first.healthz() == 200
    # Killed, the first leaves no lock behind: the next recorder on that spool starts.
    first.child.kill(signal.SIGKILL)
    first.child.start()
    assert first.healthz() == 200


# Each waiter looks for a cycle once, deadlock_timeout after it began to wait: the batch
# (waiting first) finds the cycle only if the other transaction joins it within that time. At
# the default 1 s a loaded machine sometimes took longer, and the test's own update lost.
DEADLOCK_TIMEOUT = "3s"


def detect_deadlocks_after(url: str, timeout: str) -> None:
    """deadlock_timeout for the sessions opened on this database from now on."""
    engine = create_history_engine(url)
    try:
        with engine.connect() as connection:
            name = connection.exec_driver_sql("SELECT current_database()").scalar()
            connection.exec_driver_sql(
                f"ALTER DATABASE \"{name}\" SET deadlock_timeout = '{timeout}'"
            )
            connection.commit()
    finally:
        engine.dispose()


def test_a_batch_that_loses_a_real_deadlock_is_written_again_and_counted(
    postgres_url: str, tmp_path: Path
) -> None:
    """Another transaction takes task b then a while the recorder's batch holds a and waits
    for b: PostgreSQL aborts the batch (the first waiter finds the cycle), which is written
    again at once; the database is not reported down."""
    detect_deadlocks_after(postgres_url, DEADLOCK_TIMEOUT)
    settings = history_settings("redis://127.0.0.1:1/0", postgres_url, tmp_path)
    recorder = Recorder(settings)
    migrate.upgrade(recorder.engine)
    now = time.time()
    events = task_lifecycle("a", start=now) + task_lifecycle("b", start=now)
    recorder.writer.write(events)
    other = create_history_engine(postgres_url)
    try:
        with other.connect() as connection:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            connection.execute(tasks.update().where(tasks.c.task_id == "b").values(worker="x"))
            outcome: list[BaseException | WriteResult] = []

            def write() -> None:
                try:
                    outcome.append(recorder._write_through_conflicts(events))
                except BaseException as exc:
                    outcome.append(exc)

            thread = threading.Thread(target=write, daemon=True)
            thread.start()
            # The batch has locked a and waits for b, held by this transaction.
            wait_for(lambda: waiting_on(other, pid), timeout=30, message="the batch waiting")
            connection.execute(tasks.update().where(tasks.c.task_id == "a").values(worker="x"))
            connection.commit()
            thread.join(timeout=60)
        assert outcome and isinstance(outcome[0], WriteResult), outcome
        assert metric(recorder, "fleetops_history_write_errors_total", kind="conflict") == 1
        assert metric(recorder, "fleetops_history_write_errors_total", kind="unavailable") == 0
    finally:
        other.dispose()
        recorder.engine.dispose()
        recorder.spool_lock.release()


def waiting_on(engine: Engine, pid: int) -> bool:
    """Whether some session waits for a lock that session ``pid`` holds."""
    with engine.connect() as connection:
        query = "SELECT count(*) FROM pg_stat_activity WHERE %(pid)s = ANY(pg_blocking_pids(pid))"
        return bool(connection.exec_driver_sql(query, {"pid": pid}).scalar())
