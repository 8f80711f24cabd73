"""Several apps in one history (docs/history.md, "Several apps"): one recorder follows two Redis
brokers and a RabbitMQ virtual host at once, each with a real worker, into one PostgreSQL
database; rows carry their app, queries filter by it, and one app's broker going down stops
nobody else. Plus the migration of a history made before the app column, and the query plans
with an app filter.

One fleet for the module (three brokers, three solo workers, one recorder): the tests run in
file order, the broker outage last."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from celery import Celery
from sqlalchemy import Engine, insert, inspect, select, text
from typer.testing import CliRunner

from exporters.history import migrate, queries
from exporters.history.cli import history_app
from exporters.history.database import create_history_engine
from exporters.history.recorder import Recorder
from exporters.history.schema import task_runs, tasks, workers
from exporters.history.settings import HistorySettings
from exporters.history.sources import queue_name
from tests import postgres, rabbitmq
from tests.exporter.process import total, value
from tests.helpers import wait_for
from tests.history.events import task_lifecycle, worker_event, write_before_apps
from tests.history.recording import Publisher, RecorderProcess, start_recorder
from tests.processes import processes_in
from tests.servers import CeleryProcess, RedisServer, run_worker
from workers.client import client_app

PROBE = "maintenance.probe"
# The same node name on two brokers: two apps' workers on one host, both "celery@web1".
SHARED_NODE = "shared@127.0.0.1"


@dataclass
class Fleet:
    database_url: str
    engine: Engine
    recorder: RecorderProcess
    brokers: dict[str, str]
    redis_b: RedisServer
    workers: dict[str, CeleryProcess]
    clients: dict[str, Celery]


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_admin: str,
    rabbitmq_node: rabbitmq.RabbitMQServer,
) -> Iterator[Fleet]:
    stack = ExitStack()
    run_dir = tmp_path_factory.mktemp("history-apps")
    # A virtual host of its own on the session's RabbitMQ node (tests/conftest.py).
    vhost = stack.enter_context(rabbitmq_node.vhost())
    amqp_url = vhost.url
    database, database_url = postgres.create_database(postgres_admin)
    engine = create_history_engine(database_url)
    clients: dict[str, Celery] = {}
    try:
        with processes_in(run_dir) as processes:
            redis_a, redis_b = RedisServer(processes).start(), RedisServer(processes).start()
            brokers = {"a": redis_a.url, "b": redis_b.url, "c": amqp_url}
            recorder = start_recorder(
                processes, "recorder", redis_a.url, database_url, wait=False,
                env={"FLEETOPS_APPS": ",".join(f"{n}={u}" for n, u in brokers.items())},
            )  # fmt: skip
            started: dict[str, CeleryProcess] = {}
            for name, url in brokers.items():
                data = run_dir / f"data-{name}"
                data.mkdir()
                env = {
                    "FLEETOPS_BROKER_URL": url,
                    "FLEETOPS_DATA_DIR": str(data),
                    "FLEETOPS_DATABASE_URL": f"sqlite:///{data / 'fleetops.db'}",
                    "FLEETOPS_TELEMETRY_INTERVAL": "1",
                }
                node = SHARED_NODE if name in ("a", "b") else f"{name}@127.0.0.1"
                # Cheapest worker there is: one process, no pool children.
                started[name] = run_worker(processes, node, "maintenance", env, 1, "solo",
                                           wait=False)  # fmt: skip
            recorder.child.wait_ready()
            for worker in started.values():
                worker.child.wait_ready()
            clients = {name: client_app(url, f"apps-test-{name}") for name, url in brokers.items()}
            yield Fleet(database_url, engine, recorder, brokers, redis_b, started, clients)
            # Their warm shutdown is not what this module tests: seconds saved at teardown.
            for worker in started.values():
                worker.kill(signal.SIGKILL)
    finally:
        for client in clients.values():
            client.close()
        engine.dispose()
        postgres.drop_database(postgres_admin, database)
        stack.close()


def _connected(fleet: Fleet, *apps: str) -> bool:
    fleet.recorder.child.alive()
    samples = fleet.recorder.metrics()
    return all(value(samples, "fleetops_history_broker_up", app=app) == 1 for app in apps)


def _run_probe(fleet: Fleet, app: str, **kwargs: object) -> str:
    return fleet.clients[app].send_task(PROBE, kwargs=kwargs, queue="maintenance").id


def _state_and_app(fleet: Fleet, task_id: str) -> tuple[str, str] | None:
    fleet.recorder.child.alive()
    if not inspect(fleet.engine).has_table(tasks.name):
        return None
    with fleet.engine.connect() as connection:
        row = connection.execute(
            select(tasks.c.state, tasks.c.app).where(tasks.c.task_id == task_id)
        ).first()
    return None if row is None else (row.state, row.app)


def test_every_app_lands_with_its_app_and_queries_filter_by_it(fleet: Fleet) -> None:
    wait_for(lambda: _connected(fleet, "a", "b", "c"), timeout=90,
             message="the recorder connected to every app's broker")  # fmt: skip
    ids = {app: _run_probe(fleet, app) for app in fleet.brokers}
    failed = _run_probe(fleet, "c", fail="ValueError")
    for app, task_id in ids.items():
        wait_for(lambda a=app, t=task_id: _state_and_app(fleet, t) == ("SUCCESS", a),
                 timeout=90, message=f"app {app}'s task recorded")  # fmt: skip
    wait_for(lambda: _state_and_app(fleet, failed) == ("FAILURE", "c"), timeout=90,
             message="app c's failure recorded")  # fmt: skip

    engine = fleet.engine
    assert set(queries.apps(engine)) == {"a", "b", "c"}
    for app, task_id in ids.items():
        listed = queries.search_tasks(engine, app=app)
        assert task_id in set(listed["task_id"]) and set(listed["app"]) == {app}
        assert not {*ids.values()} - {task_id} & set(listed["task_id"])
        assert queries.count_tasks(engine, app=app) == len(listed)
        assert queries.task_detail(engine, task_id, app=app) is not None
        other = "a" if app != "a" else "b"
        assert queries.task_detail(engine, task_id, app=other) is None
    everything = queries.search_tasks(engine)
    assert {*ids.values(), failed} <= set(everything["task_id"])
    page, count = queries.search_page(engine, app="c")
    assert set(page["task_id"]) >= {ids["c"], failed} and count == len(page)
    assert queries.task_detail(engine, failed).fields["app"] == "c"  # type: ignore[union-attr]
    grouped = queries.failures(engine, since=None, app="c")
    assert grouped[["name", "app", "count"]].values.tolist() == [[PROBE, "c", 1]]
    assert queries.failures(engine, since=None, app="a").empty
    assert queries.task_names(engine, app="b") == [PROBE]
    assert queries.task_names(engine, app="nope") == []
    # The same node name on brokers a and b is two workers, one per app.
    shared = queries.list_workers(engine)
    assert sorted(shared[shared["hostname"] == SHARED_NODE]["app"]) == ["a", "b"]
    assert set(queries.list_workers(engine, app="c")["hostname"]) == {"c@127.0.0.1"}
    assert set(queries.task_runs(engine, ids["a"], app="a")["kind"]) == {"started"}
    assert queries.task_runs(engine, ids["a"], app="b").empty
    assert set(queries.runs_of(engine, ids.values(), app="b")["task_id"]) == {ids["b"]}
    with pytest.raises(ValueError, match="app must be a name"):
        queries.search_tasks(engine, app=["a"])  # type: ignore[arg-type]


def test_the_app_is_the_broker_that_delivered_the_event_never_the_event(fleet: Fleet) -> None:
    """An event that names another app lands in its broker's app; events on app b's broker
    for a task id app a already holds change nothing and are counted."""
    wait_for(lambda: _connected(fleet, "a", "b"), timeout=90, message="brokers a and b")
    owned = _run_probe(fleet, "a")
    wait_for(lambda: _state_and_app(fleet, owned) == ("SUCCESS", "a"), timeout=90,
             message="app a's task recorded")  # fmt: skip
    posing = f"posing-{uuid.uuid4().hex[:8]}"
    now = time.time()
    publisher_b = Publisher(fleet.brokers["b"])
    try:
        publisher_b.send({"type": "task-received", "uuid": posing, "hostname": "x@h",
                          "name": "posing.as.a", "app": "a", "timestamp": now})  # fmt: skip
        # A failure for app a's task, sent on app b's broker: not app a's business.
        not_yours = "ValueError('not yours')"
        publisher_b.send({"type": "task-failed", "uuid": owned, "hostname": "x@h",
                          "exception": not_yours, "timestamp": now + 1})  # fmt: skip
        wait_for(lambda: _state_and_app(fleet, posing) == ("RECEIVED", "b"), timeout=60,
                 message="the event recorded under the app of its broker")  # fmt: skip

        def counted() -> bool:
            samples = fleet.recorder.metrics()
            return total(samples, "fleetops_history_events_dropped_total", reason="other_app") >= 1

        wait_for(counted, timeout=60, message="the other app's event counted, not stored")
    finally:
        publisher_b.close()
    assert _state_and_app(fleet, owned) == ("SUCCESS", "a")


def test_one_brokers_outage_stops_no_other_app(fleet: Fleet) -> None:
    wait_for(lambda: _connected(fleet, "a", "b", "c"), timeout=90, message="every broker")
    fleet.redis_b.stop()
    # Its worker has nothing left to do, and would spend the teardown reconnecting.
    fleet.workers["b"].kill(signal.SIGKILL)
    health = fleet.recorder.url.replace("/metrics", "/healthz")

    def b_down() -> bool:
        fleet.recorder.child.alive()
        samples = fleet.recorder.metrics()
        return value(samples, "fleetops_history_broker_up", app="b") == 0

    wait_for(b_down, timeout=60, message="the recorder seeing app b's broker down")
    answer = httpx.get(health, timeout=10)
    # Unhealthy, as the exporter says, naming the app whose history is being lost; the
    # recorder still serves the others.
    assert answer.status_code == 503, answer.text
    assert "app b: event stream down" in answer.text, answer.text
    assert "app a" not in answer.text and "app c" not in answer.text, answer.text
    assert _connected(fleet, "a", "c")
    ids = {app: _run_probe(fleet, app) for app in ("a", "c")}
    for app, task_id in ids.items():
        wait_for(lambda a=app, t=task_id: _state_and_app(fleet, t) == ("SUCCESS", a),
                 timeout=90, message=f"app {app} recorded while b's broker is down")  # fmt: skip


# ---- without the fleet -------------------------------------------------------------------------


def test_migration_0005_gives_an_existing_history_the_default_app(database_url: str) -> None:
    engine = create_history_engine(database_url)
    try:
        migrate.upgrade(engine, "0004")
        write_before_apps(engine, [*task_lifecycle("old-task"), worker_event("online")])
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO history_task_runs (task_id, kind, at, worker)"
                " VALUES ('old-task', 'started', 1.0, 'w')"
            )
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision() == "0005"
        with engine.connect() as connection:
            for table in (tasks, workers, task_runs):
                assert set(connection.execute(select(table.c.app)).scalars()) == {"default"}
            # Workers are keyed by host and app now: another app's worker of that name fits.
            connection.execute(
                insert(workers).values(
                    hostname="w1@127.0.0.1",
                    app="b",
                    status="online",
                    first_seen=1.0,
                    last_seen=1.0,
                    status_ts=1.0,
                )
            )
            connection.commit()
        assert queries.apps(engine) == ["b", "default"]
        assert queries.search_tasks(engine, app="default")["task_id"].tolist() == ["old-task"]
        # And back: the other apps' rows go, the history of the default app stays.
        migrate.upgrade(engine)
        from alembic import command

        with engine.begin() as connection:
            migrate.lock_for_migration(connection)
            command.downgrade(migrate._config(connection), "0004")
        with engine.connect() as connection:
            assert connection.execute(select(text("count(*)")).select_from(workers)).scalar() == 1
            assert "app" not in {
                c["name"] for c in inspect(connection).get_columns("history_tasks")
            }
        migrate.upgrade(engine)
        assert queries.search_tasks(engine)["app"].tolist() == ["default"]
    finally:
        engine.dispose()


def _plan(engine: Engine, query: object) -> str:
    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})  # type: ignore[attr-defined]
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            # A few rows: the planner would rightly scan them. What matters is which index
            # serves the query once the table is big, so sequential scans are priced out.
            connection.exec_driver_sql("SET enable_seqscan = off")
            rows = connection.exec_driver_sql(f"EXPLAIN {compiled}").scalars()
        else:
            rows = (r[-1] for r in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
        return "\n".join(rows)


def test_one_apps_pages_are_served_by_an_index(engine: Engine) -> None:
    from tests.stream.checked import CheckedHistoryWriter

    writer = CheckedHistoryWriter(engine, default_app="a")
    writer.write([e for n in range(20) for e in task_lifecycle(f"t{n}", start=1e9 + n)])
    c = tasks.c
    newest = select(c.task_id).where(c.app == "a").order_by(c.timestamp.desc()).limit(50)
    plan = _plan(engine, newest)
    assert "ix_history_tasks_app_timestamp" in plan, plan
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan
    failures = select(c.name, c.exception_type, c.app, c.task_id).where(
        c.state == queries.FAILED_STATE, c.timestamp >= 0, c.app == "a"
    )
    plan = _plan(engine, failures)
    assert "ix_history_tasks_failures" in plan, plan
    if engine.dialect.name == "postgresql":
        assert "Index Only Scan" in plan, plan
    else:
        assert "COVERING INDEX" in plan, plan
    # `fleetops history search --app` reads the same query.
    url = engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(history_app, ["search", "--app", "b", "--database-url", url])
    assert result.exit_code == 0 and "no tasks match" in result.output, result.output
    result = CliRunner().invoke(history_app, ["search", "--app", "a", "--database-url", url])
    assert result.exit_code == 0 and "t19" in result.output, result.output


def test_spooled_events_keep_their_app_and_a_bad_one_is_counted(tmp_path: Path) -> None:
    settings = HistorySettings(
        apps="a=redis://127.0.0.1:1/0,b=redis://127.0.0.1:1/1",
        data_dir=tmp_path, history_metrics_port=0,
    )  # fmt: skip
    recorder = Recorder(settings)
    try:
        event = {"type": "task-received", "uuid": "u", "hostname": "h@x", "timestamp": 1e9}
        checked = recorder.check_spooled([
            {**event, "app": "b"},
            {**event, "app": "gone"},  # an app no longer followed still owns its events
            event,  # spooled before several apps: the one app of then, FLEETOPS_APP_NAME
            {**event, "app": "../etc"},
            {**event, "app": 7},
        ])  # fmt: skip
        assert [e["app"] for e in checked] == ["b", "gone", "default"]
        counts = recorder.sources[0].stream.rejections.counts()
        assert {reason: n for reason, n in counts.items() if n} == {"bad_field": 2}
        assert queue_name(settings, "default") == "fleetops.history"
        assert queue_name(settings, "b") == "fleetops.history.b"
        with pytest.raises(ValueError, match="same broker URL"):
            Recorder(HistorySettings(apps="a=redis://h:1/0,b=redis://h:1/0", data_dir=tmp_path))
    finally:
        recorder.spool_lock.release()


def test_the_recorder_refuses_one_broker_written_two_ways() -> None:
    from exporters.history.sources import check_distinct_brokers
    from fleetops.apps import App

    with pytest.raises(ValueError, match="same broker URL"):
        check_distinct_brokers([App("a", "redis://h/0"), App("b", "redis://:pw@H:6379")])
    check_distinct_brokers([App("a", "redis://h/0"), App("b", "redis://h/1")])
