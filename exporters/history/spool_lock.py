"""One recorder per spool directory.

A recorder replays and deletes the segments it finds in its spool at start
(exporters/history/buffer.py). Two recorders sharing one directory (several recorders on a
host, docs/history.md "Several recorders", with one data dir) would replay, and delete, the
segment the other is still writing. The first takes an exclusive lock on a file there and holds
it while it runs; the second refuses to start and names the setting to change. The kernel
drops the lock with the process, so a recorder killed with SIGKILL leaves nothing to clean up.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from fleetops.errors import ConfigError

LOCK_NAME = ".recorder.lock"


class SpoolLock:
    def __init__(self, spool_dir: Path) -> None:
        spool_dir.mkdir(parents=True, exist_ok=True)
        path = spool_dir / LOCK_NAME
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise ConfigError(
                f"FLEETOPS_HISTORY_SPOOL_DIR: {spool_dir} is the spool of another running"
                " recorder; give each recorder its own (FLEETOPS_HISTORY_SPOOL_DIR or"
                " FLEETOPS_DATA_DIR)"
            ) from None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the last descriptor releases the lock
            self._fd = None
