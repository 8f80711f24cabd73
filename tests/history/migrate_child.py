"""``python -m tests.history.migrate_child URL GATE``: connect, say so with a file
``GATE.ready-<pid>``, wait until the file GATE exists, then migrate. Several of these released
by one file start their migrations within a millisecond of each other, as recorders started
together do at their first batch."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from exporters.history import migrate
from exporters.history.database import create_history_engine

# The test that starts these fails long before: this only keeps an orphan from living forever.
GATE_TIMEOUT = 120.0


def main(url: str, gate: Path) -> None:
    engine = create_history_engine(url)
    with engine.connect():  # connected before the gate opens: only the migration races
        pass
    gate.with_name(f"{gate.name}.ready-{os.getpid()}").touch()
    deadline = time.monotonic() + GATE_TIMEOUT
    while not gate.exists():
        if time.monotonic() > deadline:
            sys.exit("the gate never opened")
        time.sleep(0.001)
    migrate.upgrade(engine)
    print(f"at revision {migrate.current_revision(engine)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
