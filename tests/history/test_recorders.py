"""Several recorders on one database: they start together, write the same events, prune the
same rows and are killed (docs/history.md, "Several recorders")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from exporters.history import migrate
from exporters.history.database import create_history_engine
from tests.helpers import wait_for
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
