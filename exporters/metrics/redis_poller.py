"""Poll a Redis broker the way kombu's Redis transport lays it out.

- A queue ``q`` is a list; priority ``p > 0`` messages live in the sub-queue ``q\\x06\\x16p``.
  kombu pushes on the left and pops on the right, so the oldest message is at index -1.
- Messages reserved but not acknowledged (acks_late, prefetch) sit in the ``unacked`` hash, each
  value being ``[message, exchange, routing_key]``.
- Declared queues are the members ``routing_key\\x06\\x16pattern\\x06\\x16queue`` of the sets
  ``_kombu.binding.<exchange>``, which is how we find queues no event has named yet.
- Dead letters are ordinary messages in the ``dead_letter`` queue whose body names the queue
  the task came from.
Only O(queues) commands per poll, pipelined; the hashes and the dead-letter list are read
whole only up to a cap.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable

import orjson
import redis

from exporters.metrics.queues import FirstSeen, QueueSnapshot
from workers.queues import DEAD_LETTER

log = logging.getLogger(__name__)

SEP = "\x06\x16"
PRIORITY_STEPS = range(10)  # kombu allows steps 0..9 whatever priority_steps a user chose
UNACKED_KEY = "unacked"
DISCOVER_EVERY = 60.0
SKIPPED_EXCHANGES = ("celeryev", "celery.pidbox", "reply.celery.pidbox")


def sub_queue(queue: str, step: int) -> str:
    return f"{queue}{SEP}{step}" if step else queue


def message_task_id(raw: bytes | str) -> str | None:
    try:
        message = orjson.loads(raw)
        return (message.get("headers") or {}).get("id") or (message.get("properties") or {}).get(
            "correlation_id"
        )
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return None


def dead_letter_origin(raw: bytes | str) -> str:
    try:
        message = orjson.loads(raw)
        body = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        letter = orjson.loads(body)
        return str(letter.get("queue") or "unknown")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return "unknown"


class RedisPoller:
    def __init__(
        self,
        url: str,
        dead_letter_queue: str = DEAD_LETTER,
        max_scan: int = 50_000,
        timeout: float = 5.0,
        max_queues: int = 1_000,
    ) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=0
        )
        self.dead_letter_queue = dead_letter_queue
        self.max_scan = max_scan
        self.max_queues = max_queues
        # Declared queues left unpolled because of max_queues (exported as a gauge).
        self.skipped_queues = 0
        self._declared: set[str] = set()
        self._routing: dict[str, str] = {}
        self._discovered_at = 0.0
        self._first_seen = FirstSeen()
        self._dlq_cache: tuple[tuple, dict[str, int]] | None = None

    def close(self) -> None:
        self.client.close()

    def discover(self) -> set[str]:
        """Queues bound to any exchange but Celery's own fanouts (events, remote control)."""
        now = time.monotonic()
        if now - self._discovered_at < DISCOVER_EVERY and self._declared:
            return self._declared
        declared: set[str] = set()
        routing: dict[str, str] = {}
        for key in self.client.scan_iter(match="_kombu.binding.*", count=1000):
            exchange = key.decode(errors="replace").removeprefix("_kombu.binding.")
            if exchange in SKIPPED_EXCHANGES or exchange.endswith(".pidbox"):
                continue
            for member in self.client.smembers(key):
                routing_key, _pattern, queue = member.decode(errors="replace").split(SEP, 2)
                declared.add(queue)
                if routing_key:
                    routing[routing_key] = queue
        self._declared, self._routing, self._discovered_at = declared, routing, now
        return declared

    def poll(self, queues: set[str], sent_at: Callable[[str], float | None]) -> QueueSnapshot:
        now_wall = time.time()
        asked = queues | {self.dead_letter_queue}
        # Queues named by events or settings first (already capped by the caller), then the
        # declared ones up to the cap: a broker with 100,000 bindings costs a bounded poll.
        discovered = sorted(self.discover() - asked)
        room = max(0, self.max_queues - len(asked))
        self.skipped_queues = max(0, len(discovered) - room)
        names = sorted(asked | set(discovered[:room]))
        pipe = self.client.pipeline(transaction=False)
        for queue in names:
            for step in PRIORITY_STEPS:
                pipe.llen(sub_queue(queue, step))
        pipe.hlen(UNACKED_KEY)
        replies = pipe.execute()
        lengths: dict[str, dict[int, int]] = {}
        width = len(PRIORITY_STEPS)
        for index, queue in enumerate(names):
            row = replies[index * width : (index + 1) * width]
            lengths[queue] = {s: n for s, n in zip(PRIORITY_STEPS, row, strict=True) if n or not s}
        unacked_total = replies[-1]

        oldest = self._oldest_ages(lengths, sent_at, now_wall)
        unacked = self._unacked(names, unacked_total)
        dead = self._dead_letters(lengths.get(self.dead_letter_queue, {}))
        return QueueSnapshot(
            ok=True,
            lengths=lengths,
            unacked=unacked,
            oldest_age=oldest,
            dead_letters=dead,
        )

    def _oldest_ages(
        self, lengths: dict[str, dict[int, int]], sent_at: Callable[[str], float | None], now: float
    ) -> dict[str, float]:
        heads = [(q, s) for q, steps in lengths.items() for s, n in steps.items() if n]
        pipe = self.client.pipeline(transaction=False)
        for queue, step in heads:
            pipe.lindex(sub_queue(queue, step), -1)
        ages: dict[str, float] = {q: 0.0 for q in lengths}
        seen_ids: set[str] = set()
        for (queue, _step), raw in zip(heads, pipe.execute() if heads else [], strict=True):
            if raw is None:
                continue
            task_id = message_task_id(raw)
            if task_id is None:
                continue
            seen_ids.add(task_id)
            sent = sent_at(task_id)
            age = now - sent if sent is not None else now - self._first_seen.since(task_id, now)
            ages[queue] = max(ages[queue], age, 0.0)
        self._first_seen.keep_only(seen_ids)
        return ages

    def _unacked(self, names: list[str], total: int) -> dict[str, int]:
        counts = dict.fromkeys(names, 0)
        if not total:
            return counts
        if total > self.max_scan:
            log.warning("unacked hash holds %d entries; not attributing them to queues", total)
            counts["unknown"] = total
            return counts
        for raw in self.client.hvals(UNACKED_KEY):
            try:
                _message, exchange, routing_key = orjson.loads(raw)[:3]
            except (orjson.JSONDecodeError, ValueError, TypeError):
                counts["unknown"] = counts.get("unknown", 0) + 1
                continue
            queue = self._routing.get(routing_key, routing_key) or str(exchange) or "unknown"
            counts[queue] = counts.get(queue, 0) + 1
        return counts

    def _dead_letters(self, steps: dict[int, int]) -> dict[str, int]:
        total = sum(steps.values())
        if not total:
            self._dlq_cache = None
            return {}
        head = self.client.lindex(self.dead_letter_queue, 0)
        signature = (tuple(sorted(steps.items())), head)
        if self._dlq_cache is not None and self._dlq_cache[0] == signature:
            return self._dlq_cache[1]
        counts: dict[str, int] = {}
        read = 0
        for step, length in steps.items():
            key = sub_queue(self.dead_letter_queue, step)
            for start in range(0, min(length, self.max_scan - read), 1000):
                for raw in self.client.lrange(key, start, start + 999):
                    origin = dead_letter_origin(raw)
                    counts[origin] = counts.get(origin, 0) + 1
                    read += 1
        if read < total:
            counts["unknown"] = counts.get("unknown", 0) + total - read
        self._dlq_cache = (signature, counts)
        return counts


__all__ = ["RedisPoller"]
