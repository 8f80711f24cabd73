"""Several recorders on one database: they start together, write the same events, prune the
same rows and are killed (docs/history.md, "Several recorders")."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, select

from exporters.history import migrate, retention
from exporters.history.database import create_history_engine
from exporters.history.retention import DAY, RetentionPolicy, prune, row_counts
from exporters.history.schema import tasks
from exporters.history.writer import HistoryWriter
from tests.helpers import wait_for
from tests.history.events import task_lifecycle
from tests.processes import REPO, child_env

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
