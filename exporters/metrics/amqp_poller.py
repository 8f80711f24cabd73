"""Poll any other broker through kombu: a passive ``queue_declare`` per queue answers with the
ready messages and the consumers (RabbitMQ's own answer, no management plugin needed).

Unacknowledged messages and the oldest message's age are not part of that answer: on RabbitMQ
they come from the management API (exporters/metrics/rabbitmq_management.py), which falls back
to this poller when the API does not answer (docs/exporter.md, "RabbitMQ").
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from kombu import Connection
from kombu.exceptions import ChannelError, OperationalError

from exporters.metrics.queues import QueueSnapshot
from workers.queues import DEAD_LETTER

log = logging.getLogger(__name__)


class KombuPoller:
    def __init__(self, url: str, dead_letter_queue: str = DEAD_LETTER, timeout: float = 5.0):
        self.url = url
        self.dead_letter_queue = dead_letter_queue
        self.timeout = timeout
        self._connection: Connection | None = None

    def _channel(self):  # type: ignore[no-untyped-def]
        if self._connection is None:
            self._connection = Connection(self.url, connect_timeout=self.timeout)
            self._connection.ensure_connection(max_retries=1)
        return self._connection.default_channel

    def _reports_consumers(self) -> bool:
        # kombu's Redis transport (e.g. behind Sentinel) always answers 0 consumers: leave the
        # gauge to the workers' own answers (worker_queues) instead of overriding them with 0.
        assert self._connection is not None
        return self._connection.transport.driver_type != "redis"

    def close(self) -> None:
        if self._connection is not None:
            self._connection.release()
            self._connection = None

    def poll(self, queues: set[str], sent_at: Callable[[str], float | None]) -> QueueSnapshot:
        lengths: dict[str, dict[int, int]] = {}
        consumers: dict[str, int] = {}
        try:
            for queue in sorted(queues | {self.dead_letter_queue}):
                try:
                    _name, ready, consuming = self._channel().queue_declare(
                        queue=queue, passive=True
                    )
                except ChannelError:
                    # Not declared (yet): a passive declare closes the channel; open another.
                    self.close()
                    continue
                lengths[queue] = {0: int(ready)}
                if self._reports_consumers():
                    consumers[queue] = int(consuming)
        except (OperationalError, OSError, ConnectionError) as exc:
            self.close()
            raise ConnectionError(f"cannot poll the broker: {exc}") from exc
        dead = lengths.get(self.dead_letter_queue, {}).get(0, 0)
        return QueueSnapshot(
            ok=True,
            lengths=lengths,
            consumers=consumers,
            dead_letters={"unknown": dead} if dead else {},
        )
