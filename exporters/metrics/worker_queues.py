"""Which queues each worker consumes, asked of that worker once, never on the scrape path.

Redis has no notion of a consumer, so the queue -> consumers gauge is built from the workers'
own answer to ``active_queues``, addressed only to workers we have not asked yet (and to all
of them every ``refresh_every`` seconds, to catch ``add_consumer``/``cancel_consumer``). It runs
in the poller thread with a short timeout; a worker that does not answer is asked again later.
"""

from __future__ import annotations

import logging
import time

from celery import Celery

log = logging.getLogger(__name__)


class WorkerQueues:
    def __init__(self, url: str, timeout: float = 1.0, refresh_every: float = 300.0) -> None:
        self.app = Celery("fleetops-exporter-control", broker=url, set_as_current=False)
        self.app.conf.broker_connection_retry_on_startup = False
        self.timeout = timeout
        self.refresh_every = refresh_every
        self.queues: dict[str, set[str]] = {}
        self._asked_at = 0.0

    def update(self, nodes: set[str]) -> dict[str, set[str]]:
        """Queues of each node in ``nodes`` (nodes that never answered are left out)."""
        for gone in set(self.queues) - nodes:
            del self.queues[gone]
        now = time.monotonic()
        ask = nodes - set(self.queues)
        if now - self._asked_at > self.refresh_every:
            ask = set(nodes)
            self._asked_at = now
        if ask:
            self._ask(sorted(ask))
        return self.queues

    def _ask(self, nodes: list[str]) -> None:
        try:
            inspect = self.app.control.inspect(destination=nodes, timeout=self.timeout)
            replies = inspect.active_queues() or {}
        except Exception as exc:  # broker down: the poller reports it, try again next poll
            log.debug("could not ask %d workers for their queues: %s", len(nodes), exc)
            return
        for node, queues in replies.items():
            self.queues[node] = {q.get("name") for q in queues or [] if q.get("name")}

    def close(self) -> None:
        self.app.close()


def consumers_per_queue(queues_by_node: dict[str, set[str]], up_nodes: set[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in up_nodes:
        for queue in queues_by_node.get(node, ()):
            counts[queue] = counts.get(queue, 0) + 1
    return counts
