"""Writes into real SQLite and PostgreSQL: migrations, merging of out-of-order and duplicate
events across batches, workers, retention and the console's queries."""

from __future__ import annotations

import itertools
import random
from dataclasses import fields
from inspect import Parameter
from inspect import signature as inspect_signature
from pathlib import Path
from types import MappingProxyType

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select
from typer.testing import CliRunner

from exporters.history import migrate, queries, text_index
from exporters.history.cli import history_app
from exporters.history.database import create_history_engine
from exporters.history.merge import Limits
from exporters.history.queries import (
    LIST_COLUMNS,
    TaskFilter,
    count_tasks,
    failures,
    list_workers,
    search_page,
    search_tasks,
    task_detail,
    task_names,
)
from exporters.history.retention import DAY, RetentionPolicy, prune, row_counts
from exporters.history.schema import TRIGRAM_INDEXES, VERSION_TABLE, metadata, tasks, workers
from tests.history.events import task_lifecycle, worker_event, write_before_apps
from tests.stream.checked import CheckedHistoryWriter as HistoryWriter


def stored(engine: Engine, task_id: str) -> dict:
    with engine.connect() as connection:
        row = connection.execute(select(tasks).where(tasks.c.task_id == task_id)).mappings().one()
    return dict(row)


def test_migrations_build_the_schema_from_an_empty_database(database_url: str) -> None:
    engine = create_history_engine(database_url)
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    migrate.upgrade(engine)  # a second start finds nothing to do
    assert migrate.current_revision(engine) == migrate.head_revision()
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) >= {"history_tasks", "history_workers", VERSION_TABLE}
    for table in metadata.sorted_tables:
        assert [c["name"] for c in inspector.get_columns(table.name)] == [
            c.name for c in table.columns
        ]
        expected = {index.name for index in table.indexes}
        assert expected <= {index["name"] for index in inspector.get_indexes(table.name)}
    if engine.dialect.name == "postgresql":
        names = {index["name"] for index in inspector.get_indexes("history_tasks")}
        assert "ix_history_tasks_args_trgm" in names
    # Alembic's own comparison: the migrated database and schema.py agree on every column,
    # type, nullability and index (the trigram indexes are PostgreSQL extras, on purpose).
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        differences = [
            diff
            for diff in compare_metadata(context, metadata)
            if not (diff[0] == "remove_index" and diff[1].name in TRIGRAM_INDEXES)
            # SQLite's FTS5 text index and its shadow tables are extras too (text_index.py).
            and not (diff[0] == "remove_table" and diff[1].name.startswith(text_index.TABLE))
        ]
    assert differences == []
    engine.dispose()


def test_upgrading_a_recorded_history_keeps_its_rows(database_url: str) -> None:
    # A history written by the first schema, then upgraded by a newer recorder at start.
    engine = create_history_engine(database_url)
    migrate.upgrade(engine, "0001")
    write_before_apps(engine, task_lifecycle("kept"))
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert stored(engine, "kept")["state"] == "SUCCESS"
    names = {index["name"] for index in inspect(engine).get_indexes("history_tasks")}
    assert "ix_history_tasks_parent_id" in names
    engine.dispose()


def test_every_arrival_order_of_a_lifecycle_ends_in_success(engine: Engine) -> None:
    writer = HistoryWriter(engine)
    lifecycle = task_lifecycle("00000000-order")
    for number, order in enumerate(itertools.permutations(lifecycle)):
        task_id = f"order-{number}"
        # One batch per event: the database, not the in-memory merge, orders them.
        for event in order:
            writer.write([{**event, "uuid": task_id}])
        row = stored(engine, task_id)
        assert row["state"] == "SUCCESS", order
        assert row["worker"] == "w1@127.0.0.1"
        assert row["queue"] == "maintenance"
        assert row["name"] == "maintenance.probe"
        assert row["runtime"] == pytest.approx(0.01)
        assert row["sent_at"] and row["received_at"] and row["started_at"]


def test_duplicates_and_a_late_received_never_overwrite_success(engine: Engine) -> None:
    writer = HistoryWriter(engine)
    events = task_lifecycle("dup-1")
    writer.write(events)
    writer.write(events)  # a replay from the disk spool, say
    late_received = {**events[1], "timestamp": events[-1]["timestamp"] + 5}
    writer.write([late_received])
    writer.write([events[0]])
    row = stored(engine, "dup-1")
    assert row["state"] == "SUCCESS"
    assert row["succeeded_at"] == pytest.approx(events[-1]["timestamp"])
    with engine.connect() as connection:
        assert connection.execute(select(tasks.c.task_id)).all() == [("dup-1",)]


def test_a_retried_task_ends_in_its_last_attempts_state(engine: Engine) -> None:
    writer = HistoryWriter(engine)
    t0 = 1_700_000_000.0
    first = task_lifecycle("retry-1", outcome="none", start=t0)
    retried = {"type": "task-retried", "uuid": "retry-1", "hostname": "w1@127.0.0.1",
               "exception": "TransientError('try again')", "timestamp": t0 + 0.05}  # fmt: skip
    second = task_lifecycle("retry-1", outcome="failed", start=t0 + 2, worker="w2@127.0.0.1")
    second[1]["retries"] = 1
    everything = [*first, retried, *second]
    random.Random(7).shuffle(everything)
    for event in everything:
        writer.write([event])
    row = stored(engine, "retry-1")
    assert row["state"] == "FAILURE"
    assert row["retries"] == 1
    assert row["worker"] == "w2@127.0.0.1"
    assert row["exception_type"] == "ValueError"
    assert row["retried_at"] == pytest.approx(t0 + 0.05)
    assert row["received_at"] == pytest.approx(t0 + 2.01)  # the latest attempt's


def test_arguments_are_truncated_or_not_stored(engine: Engine) -> None:
    HistoryWriter(engine, Limits(args_max_chars=20)).write(
        task_lifecycle("long", args="(" + "x" * 500 + ",)")
    )
    assert len(stored(engine, "long")["args"]) == 20
    HistoryWriter(engine, Limits(record_args=False)).write(task_lifecycle("private"))
    row = stored(engine, "private")
    assert row["args"] is None and row["kwargs"] is None and row["result"] is None
    assert row["state"] == "SUCCESS"


def test_worker_rows_follow_the_newest_status(engine: Engine) -> None:
    writer = HistoryWriter(engine)
    writer.write([worker_event("online", timestamp=100.0, sw_ver="5.5", pid=10)])
    writer.write([worker_event("heartbeat", timestamp=110.0, active=2, processed=7,
                               loadavg=[0.1, 0.2, 0.3])])  # fmt: skip
    writer.write([worker_event("telemetry", timestamp=111.0, rss_bytes=1000, pool_size=2,
                               memory_limit_bytes=4000, memory_percent=25.0)])  # fmt: skip
    writer.write([worker_event("offline", timestamp=120.0)])
    writer.write([worker_event("heartbeat", timestamp=115.0, active=9)])  # late, from before
    with engine.connect() as connection:
        row = connection.execute(select(workers)).mappings().one()
    assert row["status"] == "offline"
    assert row["first_seen"] == 100.0 and row["last_seen"] == 120.0
    assert row["processed"] == 7 and row["active"] == 2 and row["rss_bytes"] == 1000
    assert row["loadavg"] == "0.1,0.2,0.3"
    frame = list_workers(engine)
    assert frame["hostname"].tolist() == ["w1@127.0.0.1"]


def test_retention_by_age_and_count_keeps_failures_longer(engine: Engine) -> None:
    now = 1_800_000_000.0
    writer = HistoryWriter(engine)
    for index in range(10):
        age = (index + 1) * 2 * DAY  # 2, 4, ... 20 days old
        outcome = "failed" if index % 2 else "succeeded"
        writer.write(task_lifecycle(f"t{index:02d}", start=now - age, outcome=outcome))
    policy = RetentionPolicy(retention_days=7, failed_retention_days=15, max_rows=100)
    result = prune(engine, policy, now=now)
    remaining = set(search_tasks(engine, limit=100)["task_id"])
    # successes: 2, 6 days kept (t00, t02); failures: 4, 8, 12 days kept (t01, t03, t05)
    assert remaining == {"t00", "t02", "t01", "t03", "t05"}
    assert result.by_age == 5
    result = prune(engine, RetentionPolicy(max_rows=1, max_failed_rows=2), now=now)
    assert set(search_tasks(engine)["task_id"]) == {"t00", "t01", "t03"}
    assert result.by_count == 2
    assert row_counts(engine) == {"other": 1, "failed": 2}


def test_console_queries(engine: Engine) -> None:
    writer = HistoryWriter(engine)
    t0 = 1_700_000_000.0
    writer.write(task_lifecycle("a", name="images.process", start=t0, args="('cat_100%.png',)"))
    writer.write(task_lifecycle("b", name="images.process", start=t0 + 10, outcome="failed"))
    writer.write(task_lifecycle("c", name="images.process", start=t0 + 20, outcome="failed",
                                kwargs="{'image_id': 'dog_1'}"))  # fmt: skip
    writer.write(task_lifecycle("d", name="reminders.send_due_soon", start=t0 + 30))

    def ids(**filters: object) -> list[str]:
        return search_tasks(engine, TaskFilter(**filters))["task_id"].tolist()  # type: ignore[arg-type]

    assert ids() == ["d", "c", "b", "a"]  # newest first
    assert ids(name="images.process", state="failure") == ["c", "b"]
    assert ids(name="images.process", since=t0 + 5, until=t0 + 15) == ["b"]
    assert ids(exception="ValueError") == ["c", "b"]
    assert ids(exception_text="asked to") == ["c", "b"]
    assert ids(text="100%") == ["a"]  # % is literal, not a wildcard
    assert ids(text="DOG_1") == ["c"]  # case-insensitive
    assert ids(text="_") == ["c", "a"]
    assert ids(worker="w1@127.0.0.1", queue="maintenance", state="SUCCESS") == ["d", "a"]
    assert count_tasks(engine, TaskFilter(state="FAILURE")) == 2
    page, total = search_page(engine, TaskFilter(state="FAILURE"), limit=1)
    assert page["task_id"].tolist() == ["c"] and total == 2  # full page: counted
    page, total = search_page(engine, TaskFilter(state="FAILURE"), limit=5)
    assert len(page) == total == 2  # the page holds every match

    detail = task_detail(engine, "b")
    assert detail is not None
    assert [entry.event for entry in detail.timeline] == ["sent", "received", "started", "failed"]
    assert detail.timeline[1].since_previous == pytest.approx(0.01)
    assert detail.fields["exception_type"] == "ValueError"
    assert task_detail(engine, "missing") is None

    grouped = failures(engine, since=None)
    assert grouped[["name", "exception_type", "count"]].values.tolist() == [
        ["images.process", "ValueError", 2]
    ]
    assert grouped["last_seen"][0] > grouped["first_seen"][0]
    assert list(grouped.columns) == [
        "name", "exception_type", "count", "first_seen", "last_seen", "example_task_id", "app",
    ]  # fmt: skip

    # The shape the console renders: the documented columns, times as UTC datetimes, and the
    # same columns when nothing matches.
    found = search_tasks(engine, TaskFilter(name="images.process"))
    assert tuple(found.columns) == LIST_COLUMNS
    assert str(found["timestamp"].dtype).endswith("UTC]")
    assert found["timestamp"][0].timestamp() == pytest.approx(t0 + 20.03)
    none = search_tasks(engine, TaskFilter(name="no.such.task"))
    assert none.empty and tuple(none.columns) == LIST_COLUMNS
    assert task_names(engine, since=None) == ["images.process", "reminders.send_due_soon"]


def test_the_timeline_starts_at_sent_when_the_client_stamped_it_late(engine: Engine) -> None:
    # Celery stamps task-sent after publishing: on a busy client the worker's task-received
    # can carry the earlier time. The timeline still starts at "sent", and the gap says so.
    events = task_lifecycle("late", outcome="failed")
    events[0]["timestamp"] += 0.015  # sent 5 ms after received
    HistoryWriter(engine).write(events)
    detail = task_detail(engine, "late")
    assert detail is not None
    assert [entry.event for entry in detail.timeline] == ["sent", "received", "started", "failed"]
    assert detail.timeline[1].since_previous == pytest.approx(-0.005, abs=1e-6)


def test_sqlite_text_index_follows_every_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_history_engine(f"sqlite:///{tmp_path / 'history.db'}")
    migrate.upgrade(engine, "0002")
    write_before_apps(engine, task_lifecycle("old", args="('before-the-index',)"))
    migrate.upgrade(engine)  # builds the index from the rows already there
    writer = HistoryWriter(engine)
    assert text_index.present(engine)
    t0 = 1_700_000_000.0
    for index in range(30):
        outcome = "failed" if index % 3 == 0 else "succeeded"
        args = f"('user-{index:03d}@example.org', 'w1280')"
        writer.write(task_lifecycle(f"t{index:02d}", start=t0 + index, outcome=outcome, args=args))
    # Out of order: the failure (with its exception text) is stored before the task's args.
    late = task_lifecycle("late", start=t0 + 100, outcome="failed", args="('arrived-late',)")
    writer.write(late[2:])
    writer.write(late[:2])

    def ids(**filters: object) -> list[str]:
        return search_tasks(engine, TaskFilter(**filters))["task_id"].tolist()  # type: ignore[arg-type]

    assert ids(text="before-the") == ["old"]
    assert ids(text="USER-007@") == ["t07"]
    assert len(text_index.matching_rowids(engine, ("args", "kwargs"), "USER-007@", 10) or []) == 1
    assert ids(text="arrived-late") == ["late"]
    assert ids(text='quote"d') == []
    assert ids(exception_text="asked to", text="user-00") == ["t09", "t06", "t03", "t00"]
    # A common needle takes the newest-first scan instead of the index: same answer.
    monkeypatch.setattr(queries, "INDEXED_MATCHES_MAX", 5)
    assert ids(text="w1280")[:3] == ["t29", "t28", "t27"]
    assert len(ids(text="w1280")) == 30

    prune(engine, RetentionPolicy(max_rows=5, max_failed_rows=5), now=t0 + 200)
    kept = set(search_tasks(engine, limit=100)["task_id"])
    assert set(ids(text="@example.org")) == kept - {"late"}
    with engine.begin() as connection:
        # FTS5 compares the index with the table: triggers kept them equal through it all.
        connection.exec_driver_sql(
            f"INSERT INTO {text_index.TABLE}({text_index.TABLE}) VALUES ('integrity-check')"
        )
        text_index.rebuild(connection)
    assert ids(text="arrived-late") == ["late"]
    engine.dispose()


def test_history_reindex_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    engine = create_history_engine(url)
    migrate.upgrade(engine)
    HistoryWriter(engine).write(task_lifecycle("kept", args="('after-a-vacuum',)"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM")  # what an operator may run by hand
    result = CliRunner().invoke(history_app, ["reindex", "--database-url", url])
    assert result.exit_code == 0 and "rebuilt" in result.output
    assert search_tasks(engine, TaskFilter(text="after-a-vac"))["task_id"].tolist() == ["kept"]
    engine.dispose()


def test_the_console_api_is_stable() -> None:
    # console/sources/history.py calls these by name and keyword: a change here breaks the
    # console's Tasks, Failures and task detail pages, so it must be a deliberate one.
    from exporters.history import queries

    def shape(function: object) -> list[tuple[str, str, object]]:
        return [
            (p.name, p.kind.name, p.default)
            for p in inspect_signature(function).parameters.values()
        ]

    empty = Parameter.empty
    assert shape(queries.search_tasks) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("filters", "POSITIONAL_OR_KEYWORD", None),
        ("limit", "KEYWORD_ONLY", 100),
        ("offset", "KEYWORD_ONLY", 0),
        ("columns", "KEYWORD_ONLY", queries.LIST_COLUMNS),
        ("app", "KEYWORD_ONLY", None),
    ]
    assert shape(queries.count_tasks) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("filters", "POSITIONAL_OR_KEYWORD", None),
        ("cap", "KEYWORD_ONLY", 10_000),
        ("app", "KEYWORD_ONLY", None),
    ]
    assert shape(queries.search_page) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("filters", "POSITIONAL_OR_KEYWORD", None),
        ("limit", "KEYWORD_ONLY", 100),
        ("offset", "KEYWORD_ONLY", 0),
        ("cap", "KEYWORD_ONLY", 10_000),
        ("app", "KEYWORD_ONLY", None),
    ]
    assert shape(queries.task_detail) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("task_id", "POSITIONAL_OR_KEYWORD", empty),
        ("app", "KEYWORD_ONLY", None),
    ]
    assert shape(queries.failures) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("since", "KEYWORD_ONLY", "24h"),
        ("until", "KEYWORD_ONLY", None),
        ("name", "KEYWORD_ONLY", None),
        ("queue", "KEYWORD_ONLY", None),
        ("limit", "KEYWORD_ONLY", 100),
        ("app", "KEYWORD_ONLY", None),
    ]
    assert shape(queries.task_names) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("since", "KEYWORD_ONLY", "7d"),
        ("app", "KEYWORD_ONLY", None),
    ]
    # The Stuck & orphaned page (issue 14's contract): orphaned, stuck and twice-run tasks and
    # the visibility-timeout trap.
    assert shape(queries.task_runs) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("task_id", "POSITIONAL_OR_KEYWORD", empty),
        ("app", "KEYWORD_ONLY", None),
    ]
    assert shape(queries.runs_of) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("task_ids", "POSITIONAL_OR_KEYWORD", empty),
        ("app", "KEYWORD_ONLY", None),
    ]
    assert queries.RUNS_OF_COLUMNS == ("task_id", "kind", "at", "worker")
    assert shape(queries.twice_run_tasks) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("since", "KEYWORD_ONLY", "24h"),
        ("limit", "KEYWORD_ONLY", 100),
        ("app", "KEYWORD_ONLY", None),
    ]
    assert shape(queries.orphaned_tasks) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("now", "KEYWORD_ONLY", None),
        ("worker_timeout", "KEYWORD_ONLY", 30.0),
        ("redelivery_window", "KEYWORD_ONLY", 300.0),
        ("since", "KEYWORD_ONLY", "24h"),
        ("limit", "KEYWORD_ONLY", 100),
        # The stuck bounds of stuck_tasks: a task on a worker that announced its shutdown is
        # orphaned once it has run past its bound (the warm shutdown drains it first).
        ("bounds", "KEYWORD_ONLY", {}),
        ("default_bound", "KEYWORD_ONLY", 3600.0),
        ("app", "KEYWORD_ONLY", None),
    ]
    # An empty default that no caller can fill for the next one.
    assert isinstance(inspect_signature(queries.orphaned_tasks).parameters["bounds"].default,
                      MappingProxyType)  # fmt: skip
    assert shape(queries.stuck_tasks) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("bounds", "KEYWORD_ONLY", empty),
        ("default_bound", "KEYWORD_ONLY", empty),
        ("now", "KEYWORD_ONLY", None),
        ("worker_timeout", "KEYWORD_ONLY", 30.0),
        ("limit", "KEYWORD_ONLY", 100),
        ("app", "KEYWORD_ONLY", None),
    ]
    assert shape(queries.eta_beyond_visibility) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("visibility_timeout", "KEYWORD_ONLY", empty),
        ("since", "KEYWORD_ONLY", "24h"),
        ("limit", "KEYWORD_ONLY", 100),
        ("app", "KEYWORD_ONLY", None),
    ]
    # Several apps (docs/history.md, "Several apps"): the console's app selector, and the
    # workflow and workers reads filtered like the rest.
    assert shape(queries.apps) == [("engine", "POSITIONAL_OR_KEYWORD", empty)]
    assert shape(queries.workflow) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("root_id", "POSITIONAL_OR_KEYWORD", empty),
        ("limit", "KEYWORD_ONLY", 2000),
        ("app", "KEYWORD_ONLY", None),
    ]
    assert shape(queries.workflow_root) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("task_id", "POSITIONAL_OR_KEYWORD", empty),
        ("max_depth", "KEYWORD_ONLY", 100),
        ("app", "KEYWORD_ONLY", None),
    ]
    assert shape(queries.list_workers) == [
        ("engine", "POSITIONAL_OR_KEYWORD", empty),
        ("app", "KEYWORD_ONLY", None),
    ]
    assert queries.LIST_COLUMNS[-1] == "app"
    assert queries.TWICE_RUN_COLUMNS == (
        "task_id", "name", "queue", "state", "runs", "workers", "first_started_at",
        "last_started_at", "timestamp", "app",
    )  # fmt: skip
    assert queries.ORPHAN_COLUMNS == (
        "task_id", "name", "queue", "worker", "started_at", "worker_seen_at", "outcome",
        "finished_on", "state", "app",
    )  # fmt: skip
    assert queries.STUCK_COLUMNS == (
        "task_id", "name", "queue", "worker", "started_at", "running_seconds", "bound_seconds",
        "app",
    )  # fmt: skip
    assert queries.ETA_COLUMNS == (
        "task_id", "name", "queue", "state", "received_at", "eta", "ahead_seconds", "app",
    )  # fmt: skip
    assert [f.name for f in fields(queries.TaskFilter)] == [
        "name", "state", "worker", "queue", "since", "until", "exception", "exception_text",
        "text", "root_id",
    ]  # fmt: skip
    assert [f.name for f in fields(queries.TaskDetail)] == ["fields", "timeline", "children"]
    assert [f.name for f in fields(queries.TimelineEntry)] == ["event", "at", "since_previous"]


def test_the_documented_sqlite_minimum_is_the_one_retention_needs() -> None:
    # Retention's DELETE ... RETURNING needs SQLite 3.35; the docs must not promise less, and
    # the SQLite this suite runs on must have it.
    import sqlite3

    from exporters.history import retention

    assert retention.SQLITE_MINIMUM == (3, 35)
    assert sqlite3.sqlite_version_info[:2] >= retention.SQLITE_MINIMUM
    text = (Path(__file__).parents[2] / "docs" / "history.md").read_text()
    assert "SQLite 3.35 or newer" in text
    # Slices of run ids stay within the bound parameters of SQLite >= 3.32 (32,766).
    assert retention.RUN_IDS_PER_DELETE <= 32_766
