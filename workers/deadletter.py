"""The dead-letter queue: tasks that failed for good, kept with everything needed to retry them.

Entries are messages in the broker queue ``dead_letter`` (no worker consumes it), so it works on
every broker and its depth is measured like any other queue. Browsing takes messages without
acknowledging them; closing the channel hands them back, so a listing never loses an entry.
"""

from __future__ import annotations

import logging
import math
import time
import traceback as tb
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from celery import Celery
from kombu import Exchange, Queue

from workers.queues import DEAD_LETTER

log = logging.getLogger(__name__)

DLQ_EXCHANGE = Exchange(DEAD_LETTER, type="direct", durable=True)
DLQ_QUEUE = Queue(DEAD_LETTER, DLQ_EXCHANGE, routing_key=DEAD_LETTER, durable=True)


@dataclass
class DeadLetter:
    task_id: str
    name: str
    args: list
    kwargs: dict
    queue: str
    exception: str
    reason: str
    traceback: str = ""
    retries: int = 0
    hostname: str = ""
    failed_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def from_body(cls, body: dict) -> DeadLetter:
        known = {k: body[k] for k in cls.__dataclass_fields__ if k in body}
        return cls(**known)


class PartialBatch(Exception):
    """A requeue or purge stopped part-way: ``taken`` were already acted on (and are gone
    from the queue unless their acknowledgement failed); the rest are still in it."""

    def __init__(self, taken: list[DeadLetter], cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause} (after {len(taken)} entries were done)")
        self.taken = taken
        self.cause = cause


def record(app: Celery, letter: DeadLetter) -> None:
    with app.connection_for_write() as conn:
        producer = conn.Producer(serializer="json")
        producer.publish(
            asdict(letter),
            exchange=DLQ_EXCHANGE,
            routing_key=DEAD_LETTER,
            declare=[DLQ_QUEUE],
            retry=True,
            retry_policy={"max_retries": 5, "interval_start": 0.5, "interval_step": 1},
        )
    log.warning(
        "dead-lettered %s[%s] from %s: %s", letter.name, letter.task_id, letter.queue, letter.reason
    )


def from_failure(task_name: str, task_id: str, request, exc: BaseException, einfo) -> DeadLetter:  # type: ignore[no-untyped-def]
    delivery = getattr(request, "delivery_info", None) or {}
    return DeadLetter(
        task_id=task_id,
        name=task_name,
        args=list(getattr(request, "args", None) or []),
        kwargs=dict(getattr(request, "kwargs", None) or {}),
        queue=delivery.get("routing_key") or "",
        exception=type(exc).__name__,
        reason=str(exc) or type(exc).__name__,
        traceback=str(einfo) if einfo else "".join(tb.format_exception(exc)),
        retries=int(getattr(request, "retries", 0) or 0),
        hostname=getattr(request, "hostname", "") or "",
    )


@contextmanager
def _browse(app: Celery) -> Iterator[tuple[int, Callable[[], object | None]]]:
    """How many messages the queue holds now, and a way to take the next one unacknowledged."""
    with app.connection_for_read() as conn:
        channel = conn.channel()
        queue = DLQ_QUEUE.bind(channel)
        # Declared (not looked up): an empty queue has no key on Redis, and a passive
        # declaration of it fails.
        queue.declare()
        _name, held, _consumers = queue.queue_declare()
        try:
            yield held, lambda: queue.get(no_ack=False, accept=["json"])
        finally:
            # Unacknowledged messages go back to the queue when the channel closes.
            channel.close()


# Selection compares these (``id``, ``task_id`` against a set of wanted ids, ``name`` and
# ``exception`` against the filter): anything but a string there made every requeue or purge
# by ids raise, for every entry, not only the bad one.
_TEXT_FIELDS = ("id", "task_id", "name", "exception")
_SKIP_WARNING_EVERY = 60.0
_skips = {"unreported": 0, "last_warned": -math.inf}


def _refusal(body: object) -> str | None:
    """Why this message body is not a dead letter we can select and act on, or None."""
    if not isinstance(body, dict):
        return "not a JSON object"
    # Without a stored id an entry would get a new random one at every read, so no one could
    # ever select it by the id a listing showed.
    if "id" not in body:
        return "no id"
    wrong = [name for name in _TEXT_FIELDS if name in body and not isinstance(body[name], str)]
    if wrong:
        return f"not text: {', '.join(wrong)}"
    return None


def _skipped(why: str) -> None:
    # One foreign message is met at every listing and every walk: warn about it at most once
    # a minute (with how many were skipped since), not on every page rerun.
    _skips["unreported"] += 1
    now = time.monotonic()
    if now - _skips["last_warned"] < _SKIP_WARNING_EVERY:
        return
    log.warning(
        "dead-letter queue: skipped %d message(s) that are not dead letters (left in place;"
        " latest: %s)",
        _skips["unreported"],
        why,
    )
    _skips["unreported"] = 0
    _skips["last_warned"] = now


def _parse(message) -> DeadLetter | None:  # type: ignore[no-untyped-def]
    # Anything can be published to the queue: an entry that is not ours stays where it is,
    # untouched, rather than stopping every listing and action.
    try:
        body = message.payload
        why = _refusal(body)
        if why is None:
            return DeadLetter.from_body(body)
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
    _skipped(why)
    return None


def entries(app: Celery, limit: int = 1000) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    with _browse(app) as (_held, get):
        while len(found) < limit:
            message = get()
            if message is None:
                break
            letter = _parse(message)
            if letter is not None:
                found.append(letter)
    return found


def take(
    app: Celery,
    select: Callable[[DeadLetter], bool],
    act: Callable[[DeadLetter], None],
    limit: int = 100_000,
    dry_run: bool = False,
) -> list[DeadLetter]:
    """Run ``act`` on each selected entry and remove it; leave every other entry in place.

    A dry run walks the same loop and selects the same way, but neither acts nor removes: what
    it returns is exactly what the real run would touch at that moment.

    Only the messages the queue held when the walk began are looked at: a requeued task that
    fails again at once is dead-lettered behind them, and taking it in the same walk would
    requeue it again, round and round, and touch more than the dry run counted.

    When the walk fails part-way (``act`` raises, the broker goes away), the entries already
    acted on are not lost with the exception: it is a ``PartialBatch`` that carries them."""
    taken: list[DeadLetter] = []
    with _browse(app) as (held, get):
        try:
            for _ in range(min(limit, held)):
                message = get()
                if message is None:
                    break
                letter = _parse(message)
                if letter is not None and select(letter):
                    if not dry_run:
                        act(letter)
                        # Acted on: touched, even should the acknowledgement fail below.
                        taken.append(letter)
                        message.ack()
                    else:
                        taken.append(letter)
        except Exception as exc:
            if dry_run:
                raise
            # Entries before this one are already requeued or purged for good: whoever
            # audits the batch must be able to name them.
            raise PartialBatch(taken, exc) from exc
    return taken


def requeue(
    app: Celery, select: Callable[[DeadLetter], bool], dry_run: bool = False
) -> list[DeadLetter]:
    def resend(letter: DeadLetter) -> None:
        app.send_task(
            letter.name, args=letter.args, kwargs=letter.kwargs, queue=letter.queue or None
        )

    return take(app, select, resend, dry_run=dry_run)


def purge(
    app: Celery, select: Callable[[DeadLetter], bool], dry_run: bool = False
) -> list[DeadLetter]:
    return take(app, select, lambda _letter: None, dry_run=dry_run)


def selector(
    ids: list[str] | None = None, name: str | None = None, exception: str | None = None
) -> Callable[[DeadLetter], bool]:
    wanted = set(ids or [])

    def select(letter: DeadLetter) -> bool:
        if wanted and letter.id not in wanted and letter.task_id not in wanted:
            return False
        if name and letter.name != name:
            return False
        return not (exception and letter.exception != exception)

    return select
