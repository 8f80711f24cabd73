"""What the stream reader tells the rest of the exporter (written by the reader thread only)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class StreamStatus:
    connected: bool = False
    connects: int = 0
    messages: int = 0
    bytes: int = 0
    last_error: str = ""
    # Messages delivered on the current channel and not yet acknowledged (manual acks only).
    unacked: int = 0
    # Monotonic time of the last disconnect; None while connected or before the first connect.
    disconnected_since: float | None = field(default_factory=time.monotonic)
    # Monotonic time the reader thread last went round its loop (at least once a second while
    # connected, around every backoff wait while not): health uses it to tell a stuck reader.
    last_beat: float = field(default_factory=time.monotonic)

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def on_connected(self) -> None:
        self.last_beat = time.monotonic()
        self.connected = True
        self.connects += 1
        self.disconnected_since = None

    def on_disconnected(self, error: str) -> None:
        self.last_beat = time.monotonic()
        if self.connected:
            self.disconnected_since = time.monotonic()
        self.connected = False
        self.last_error = error
