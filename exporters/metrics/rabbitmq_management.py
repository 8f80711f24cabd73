"""Poll RabbitMQ through its management HTTP API, falling back to AMQP when it cannot answer.

A passive ``queue_declare`` (exporters/metrics/amqp_poller.py) tells ready messages and
consumers only. The management API's ``GET /api/queues/<vhost>`` also tells, per queue,
unacknowledged messages, the ready messages per priority of an ``x-max-priority`` queue
(``backing_queue_status.priority_lengths``) and ``head_message_timestamp``: the ``timestamp``
property of the oldest waiting message, when its publisher set one (Celery does not by default).

One GET per poll, only the columns used, the body read up to a bound. Every answer is treated
as hostile: a field of the wrong type, NaN, negative or absurdly large is left out and counted;
an answer that is not a JSON list of objects is counted and the AMQP answer is used instead.
The numbers are the broker's statistics, refreshed every ``collect_statistics_interval``
(5 s by default), so they may lag the queue by that much. Decisions in docs/exporter.md
("RabbitMQ").
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import orjson
from kombu.utils.url import parse_url

from exporters.metrics.amqp_poller import KombuPoller
from exporters.metrics.queues import QueueSnapshot
from workers.queues import DEAD_LETTER

log = logging.getLogger(__name__)
T = TypeVar("T")

MANAGEMENT_PORT = 15672
MANAGEMENT_TLS_PORT = 15671
ENABLE_HINT = "rabbitmq-plugins enable rabbitmq_management"
COLUMNS = (
    "name,messages_ready,messages_unacknowledged,consumers,head_message_timestamp,"
    "backing_queue_status"
)
# About 400 bytes a queue: room for tens of thousands of queues, not for a runaway answer.
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_NAME = 255
# Larger counts than this are not counts (2**53: the last integer a float holds exactly).
MAX_COUNT = 2**53
# A head timestamp this far ahead of our clock is not a time in seconds (milliseconds, junk).
MAX_FUTURE_SECONDS = 300.0
# How often a management API that stays down is named again in the log.
LOG_EVERY = 300.0
# Celery's and fleetops' own queues: events, remote control, replies; not task queues.
INTERNAL_PREFIXES = ("celeryev.", "fleetops.events.", "amq.")
INTERNAL_SUFFIXES = (".pidbox",)
INTERNAL_NAMES = frozenset({"fleetops.history"})
# What a management URL set to this means: do not use the API, AMQP only.
OFF = "off"


class ManagementError(Exception):
    """The management API gave no usable answer; ``reason`` is the metric's label value."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class QueueStats:
    name: str
    ready: int
    unacked: int | None = None
    consumers: int | None = None
    head_timestamp: float | None = None
    # priority -> ready messages, for an x-max-priority queue whose numbers add up
    by_priority: dict[int, int] = field(default_factory=dict)


def is_internal(name: str) -> bool:
    return (
        name.startswith(INTERNAL_PREFIXES)
        or name.endswith(INTERNAL_SUFFIXES)
        or name in INTERNAL_NAMES
    )


def broker_parts(broker_url: str) -> dict:
    """kombu's reading of the (first) broker URL: host, credentials, virtual host."""
    return parse_url(broker_url.split(";", 1)[0].strip())


def management_url_for(broker_url: str) -> str:
    """The management API where it is by default: the broker's host, port 15672 (15671 and
    https for amqps), without credentials (they come from the broker URL)."""
    parts = broker_parts(broker_url)
    host = parts.get("hostname") or "localhost"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    tls = parts.get("transport") == "amqps"
    scheme, port = ("https", MANAGEMENT_TLS_PORT) if tls else ("http", MANAGEMENT_PORT)
    return f"{scheme}://{host}:{port}"


def _count(value: object) -> int | None:
    """A message or consumer count, or None when ``value`` is not one."""
    if type(value) is int and 0 <= value <= MAX_COUNT:
        return value
    if type(value) is float and math.isfinite(value) and value.is_integer():
        return _count(int(value))
    return None


class ManagementApi:
    """``GET /api/queues/<vhost>`` of one RabbitMQ, parsed defensively."""

    def __init__(
        self,
        base_url: str,
        vhost: str,
        username: str,
        password: str,
        timeout: float = 5.0,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        split = urlsplit(base_url)
        # Credentials in the URL win over the broker's; base_url (logged) keeps none.
        username = split.username if split.username is not None else username
        password = split.password if split.password is not None else password
        host = split.hostname or "localhost"
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{split.port}" if split.port else "")
        self.base_url = urlunsplit((split.scheme, netloc, split.path.rstrip("/"), "", ""))
        self.vhost = vhost
        self.max_body = max_body
        self.total_timeout = 2 * timeout
        self.client = httpx.Client(
            auth=(username, password), timeout=timeout, follow_redirects=False
        )
        # Fields left out of answers, counted by the poller as reason="bad_value".
        self.bad_values = 0

    @property
    def queues_url(self) -> str:
        return f"{self.base_url}/api/queues/{quote(self.vhost, safe='')}"

    def close(self) -> None:
        self.client.close()

    def queues(self) -> list[QueueStats]:
        return self.parse(self._get(self.queues_url, {"columns": COLUMNS}))

    def _get(self, url: str, params: dict[str, str]) -> bytes:
        # httpx's timeout bounds each read: a body trickling in must not hold the poller longer.
        deadline = time.monotonic() + self.total_timeout
        try:
            with self.client.stream("GET", url, params=params) as response:
                if response.status_code != 200:
                    raise ManagementError(*_refusal(response.status_code, url))
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_body:
                    raise ManagementError("too_large", f"{url} answers {declared} bytes")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.max_body:
                        raise ManagementError("too_large", f"{url} answers over {self.max_body}")
                    if time.monotonic() > deadline:
                        raise ManagementError("timeout", f"{url} answers too slowly")
                return bytes(body)
        except httpx.TimeoutException as exc:
            raise ManagementError("timeout", f"{url} did not answer in time: {exc}") from exc
        except (httpx.HTTPError, OSError, ValueError) as exc:
            # ValueError: httpx refuses a malformed URL or header.
            raise ManagementError("unreachable", f"cannot reach {url}: {exc}") from exc

    def parse(self, body: bytes) -> list[QueueStats]:
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ManagementError("not_json", f"{self.queues_url} answered no JSON: {exc}") from exc
        if not isinstance(items, list):
            raise ManagementError("bad_answer", f"{self.queues_url} answered no list of queues")
        queues: list[QueueStats] = []
        for item in items:
            stats = self._queue(item)
            if stats is not None:
                queues.append(stats)
        return queues

    def _queue(self, item: object) -> QueueStats | None:
        if not isinstance(item, dict):
            self.bad_values += 1
            return None
        name = item.get("name")
        ready = _count(item.get("messages_ready"))
        # AMQP queue names are at most 255 bytes: a longer one is not a queue of this broker.
        if not isinstance(name, str) or len(name) > MAX_NAME or ready is None:
            # A queue whose name or depth cannot be read: nothing of it can be reported.
            # (A queue just declared has no statistics yet: no depth, not counted.)
            if not (
                isinstance(name, str) and len(name) <= MAX_NAME and "messages_ready" not in item
            ):
                self.bad_values += 1
            return None
        return QueueStats(
            name=name,
            ready=ready,
            unacked=self._field(item, "messages_unacknowledged", _count),
            consumers=self._field(item, "consumers", _count),
            head_timestamp=self._field(item, "head_message_timestamp", _timestamp),
            by_priority=self._priorities(item.get("backing_queue_status"), ready),
        )

    def _field(self, item: dict, key: str, read: Callable[[object], T | None]) -> T | None:
        raw = item.get(key)
        if raw is None:
            return None
        value = read(raw)
        if value is None:
            self.bad_values += 1
        return value

    def _priorities(self, status: object, ready: int) -> dict[int, int]:
        """Ready messages per priority of an x-max-priority queue; {} for other queues, or
        when the numbers are not counts or do not add up to the ready messages."""
        if not isinstance(status, dict) or "priority_lengths" not in status:
            if status is not None and not isinstance(status, dict):
                self.bad_values += 1
            return {}
        lengths = status["priority_lengths"]
        if not isinstance(lengths, dict) or len(lengths) > 256:
            self.bad_values += 1
            return {}
        split: dict[int, int] = {}
        for key, value in lengths.items():
            count = _count(value)
            if not (isinstance(key, str) and key.isdigit() and len(key) <= 3) or count is None:
                self.bad_values += 1
                return {}
            split[int(key)] = count
        # Both come from one statistics event; should they disagree, the total is trusted.
        return split if sum(split.values()) == ready else {}


def _timestamp(value: object) -> float | None:
    """Seconds since the epoch, or None when ``value`` is not a plausible one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    plausible = math.isfinite(seconds) and 0 < seconds <= time.time() + MAX_FUTURE_SECONDS
    return seconds if plausible else None


def _refusal(status: int, url: str) -> tuple[str, str]:
    reason = {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(status, "http_error")
    return reason, f"{url} answered HTTP {status}"


def _advice(reason: str) -> str:
    if reason in ("unauthorized", "forbidden"):
        return (
            "the management API refuses the broker's user: give it the monitoring tag"
            " (rabbitmqctl set_user_tags <user> monitoring) and access to the virtual host, or"
            " set FLEETOPS_EXPORTER_RABBITMQ_MANAGEMENT_URLS with a user that has it"
        )
    return (
        f"is the management plugin enabled? {ENABLE_HINT}; if it listens elsewhere set"
        " FLEETOPS_EXPORTER_RABBITMQ_MANAGEMENT_URLS (off: AMQP only, no unacknowledged counts"
        " nor message ages)"
    )


class RabbitMQPoller:
    """Queue depths of one RabbitMQ virtual host: the management API when it answers, a
    passive ``queue_declare`` per queue (ready messages and consumers only) when it does not.

    Self-contained for one broker URL, so that each app of an exporter has its own.
    ``management_url`` None means the broker's host on port 15672; ``"off"``: AMQP only.
    """

    def __init__(
        self,
        url: str,
        dead_letter_queue: str = DEAD_LETTER,
        management_url: str | None = None,
        timeout: float = 5.0,
        max_queues: int = 1_000,
    ) -> None:
        self.dead_letter_queue = dead_letter_queue
        self.max_queues = max_queues
        self.amqp = KombuPoller(url, dead_letter_queue, timeout)
        parts = broker_parts(url)
        self.api: ManagementApi | None = None
        if (management_url or "").strip().lower() != OFF:
            self.api = ManagementApi(
                management_url or management_url_for(url),
                parts.get("virtual_host") or "/",
                parts.get("userid") or "guest",
                parts.get("password") or "guest",
                timeout=timeout,
            )
        # Failed or hostile answers of the management API by reason, since start.
        self.errors: dict[str, int] = {}
        self.skipped_queues = 0
        self._failing_since: float | None = None
        self._logged_at = -math.inf
        self._last_reason = ""

    def close(self) -> None:
        self.amqp.close()
        if self.api is not None:
            self.api.close()

    def poll(self, queues: set[str], sent_at: Callable[[str], float | None]) -> QueueSnapshot:
        if self.api is None:
            return self.amqp.poll(queues, sent_at)
        bad_before = self.api.bad_values
        try:
            stats = self.api.queues()
        except ManagementError as exc:
            self._count(exc.reason)
            self._say_down(exc)
            snapshot = self.amqp.poll(queues, sent_at)
            return dataclasses.replace(
                snapshot, management_up=0, management_errors=dict(self.errors)
            )
        if self.api.bad_values > bad_before:
            self._count("bad_value", self.api.bad_values - bad_before)
        self._say_up()
        # The connection stays closed while the API answers: AMQP is only the fallback.
        self.amqp.close()
        return self._snapshot(stats, queues)

    def _snapshot(self, stats: list[QueueStats], asked: set[str]) -> QueueSnapshot:
        now = time.time()
        wanted = asked | {self.dead_letter_queue}
        chosen = [s for s in stats if s.name in wanted]
        others = sorted((s for s in stats if s.name not in wanted and not is_internal(s.name)),
                        key=lambda s: s.name)  # fmt: skip
        room = max(0, self.max_queues - len(chosen))
        self.skipped_queues = max(0, len(others) - room)
        lengths: dict[str, dict[int, int]] = {}
        unacked: dict[str, int] = {}
        consumers: dict[str, int] = {}
        oldest: dict[str, float] = {}
        for queue in chosen + others[:room]:
            split = {p: n for p, n in queue.by_priority.items() if n}
            lengths[queue.name] = split or {0: queue.ready}
            lengths[queue.name].setdefault(0, 0)
            if queue.unacked is not None:
                unacked[queue.name] = queue.unacked
            if queue.consumers is not None:
                consumers[queue.name] = queue.consumers
            # Only the head message's own timestamp tells its age: without one (Celery sets
            # none by default) the queue has no sample rather than a made-up age.
            if queue.ready == 0:
                oldest[queue.name] = 0.0
            elif queue.head_timestamp is not None:
                oldest[queue.name] = round(max(0.0, now - queue.head_timestamp), 3)
        dead = sum(lengths.get(self.dead_letter_queue, {}).values())
        return QueueSnapshot(
            ok=True,
            lengths=lengths,
            unacked=unacked,
            oldest_age=oldest,
            consumers=consumers,
            dead_letters={"unknown": dead} if dead else {},
            management_up=1,
            management_errors=dict(self.errors),
        )

    def _count(self, reason: str, n: int = 1) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + n

    def _say_down(self, exc: ManagementError) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        if exc.reason == self._last_reason and now - self._logged_at < LOG_EVERY:
            return
        self._logged_at, self._last_reason = now, exc.reason
        assert self.api is not None
        log.warning(
            "RabbitMQ management API %s: %s (%s); serving ready messages and consumers from"
            " AMQP only, without unacknowledged counts or message ages; %s",
            self.api.base_url,
            exc,
            exc.reason,
            _advice(exc.reason),
        )

    def _say_up(self) -> None:
        if self._failing_since is not None:
            assert self.api is not None
            log.info("RabbitMQ management API %s answers again", self.api.base_url)
        self._failing_since = None
        self._last_reason = ""


__all__ = ["ManagementApi", "ManagementError", "RabbitMQPoller", "management_url_for"]
