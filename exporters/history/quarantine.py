"""Events the database refuses even one at a time: kept aside on disk, never replayed.

A batch that cannot be written must not stop the recorder, and must not come back from the
spool at the next start to stop it again. Each such event goes to a JSON-lines file under
``<data_dir>/history-quarantine/`` with the reason, for a person to look at (runbook
FleetopsHistoryEventsQuarantined); the files are bounded in total size, and what does not fit
or cannot be written is counted as dropped.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)


class Quarantine:
    def __init__(self, directory: Path, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.kept = 0
        self.dropped = 0
        self._bytes: int | None = None

    def _size(self) -> int:
        if self._bytes is None:
            try:
                self._bytes = sum(p.stat().st_size for p in self.directory.glob("*.jsonl"))
            except OSError:
                self._bytes = 0
        return self._bytes

    def keep(self, event: Any, reason: str) -> bool:
        """Write one event aside; False (and counted in ``dropped``) when it cannot be."""
        record = {"quarantined_at": time.time(), "reason": reason[:500], "event": event}
        try:
            line = orjson.dumps(record, default=str) + b"\n"
        except (TypeError, ValueError):  # not JSON-representable: keep its repr
            record["event"] = repr(event)[:100_000]
            line = orjson.dumps(record) + b"\n"
        if self._size() + len(line) > self.max_bytes:
            self.dropped += 1
            log.error("recorder: quarantine full (%d bytes); event dropped", self.max_bytes)
            return False
        path = self.directory / time.strftime("quarantine-%Y%m%d.jsonl", time.gmtime())
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as file:
                file.write(line)
        except OSError as exc:
            self.dropped += 1
            log.error("recorder: cannot write the quarantine file %s: %s", path, exc)
            return False
        self._bytes = self._size() + len(line)
        self.kept += 1
        return True
