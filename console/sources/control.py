"""Live control of the workers through Celery's control API, and the dead-letter queue
through workers.deadletter (the same functions as ``fleetops dlq``)."""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from celery import Celery

from console.sources import SourceDown
from workers import deadletter
from workers.client import client_app

NAME = "Broker (Celery control)"


@cache
def app_for(broker_url: str) -> Celery:
    app = client_app(broker_url, name="fleetops-console")
    # A page must answer while the broker is down: fail fast instead of retrying for minutes.
    app.conf.broker_connection_timeout = 3
    app.conf.broker_connection_max_retries = 1
    app.conf.broker_connection_retry_on_startup = False
    return app


def _guard(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except deadletter.PartialBatch:
        # Part of a batch is done: the caller must see which entries, not only that the
        # broker failed.
        raise
    # kombu, redis-py and py-amqp each raise their own connection errors; whichever it is,
    # the broker did not do what was asked.
    except Exception as exc:
        raise SourceDown(NAME, f"{type(exc).__name__}: {exc}") from exc


def revoke(app: Celery, task_id: str, *, terminate: bool) -> None:
    _guard(lambda: app.control.revoke(task_id, terminate=terminate, signal="SIGTERM"))


def _one(hostname: str) -> dict[str, Any]:
    # One destination answers once: stop waiting at its reply instead of the full timeout.
    return {"destination": [hostname], "reply": True, "timeout": 3, "limit": 1}


def pool_resize(app: Celery, hostname: str, delta: int) -> list[dict]:
    """Grow (delta > 0) or shrink one worker's pool; the worker's replies."""
    method = app.control.pool_grow if delta > 0 else app.control.pool_shrink
    return _guard(lambda: method(abs(delta), **_one(hostname)))


def autoscale(app: Celery, hostname: str, maximum: int, minimum: int) -> list[dict]:
    return _guard(lambda: app.control.autoscale(maximum, minimum, **_one(hostname)))


def add_consumer(app: Celery, hostname: str, queue: str) -> list[dict]:
    return _guard(lambda: app.control.add_consumer(queue, **_one(hostname)))


def cancel_consumer(app: Celery, hostname: str, queue: str) -> list[dict]:
    return _guard(lambda: app.control.cancel_consumer(queue, **_one(hostname)))


def shutdown(app: Celery, hostname: str) -> None:
    # Warm shutdown: the worker finishes its running tasks first.
    _guard(lambda: app.control.shutdown(destination=[hostname]))


def retry(app: Celery, name: str, args: str | None, kwargs: str | None, queue: str | None) -> str:
    """Send a task again from its stored argument reprs; refuses what cannot be read back."""
    try:
        parsed_args = ast.literal_eval(args) if args else ()
        parsed_kwargs = ast.literal_eval(kwargs) if kwargs else {}
    except (ValueError, SyntaxError) as exc:
        raise ValueError(
            "the stored arguments are not plain literals (or were cut at the recorder's"
            " FLEETOPS_HISTORY_ARGS_MAX_CHARS): send this task again by hand"
        ) from exc
    if not isinstance(parsed_args, list | tuple) or not isinstance(parsed_kwargs, dict):
        raise ValueError("the stored arguments are not a tuple and a dict")
    result = _guard(
        lambda: app.send_task(name, args=list(parsed_args), kwargs=parsed_kwargs, queue=queue)
    )
    return result.id


def revoked_ids(app: Celery, hostname: str) -> list[str]:
    replies = _guard(
        lambda: app.control.inspect(destination=[hostname], timeout=3, limit=1).revoked()
    )
    return list((replies or {}).get(hostname, []))


def dead_letters(app: Celery, limit: int = 500) -> list[deadletter.DeadLetter]:
    return _guard(lambda: deadletter.entries(app, limit=limit))


MAX_IDS = 1000


class NoSelection(ValueError):
    """A batch action with no filter that did not say "all"."""


@dataclass(frozen=True)
class Selection:
    """Which dead letters a requeue, purge or dry run touches: ids (entry or task), a task name,
    an exception class; with none of them, only ``everything`` selects anything."""

    ids: tuple[str, ...] = ()
    name: str | None = None
    exception: str | None = None
    everything: bool = False

    @classmethod
    def parse(cls, ids: str, name: str, exception: str, *, everything: bool) -> Selection:
        wanted = tuple(dict.fromkeys(part.strip() for part in ids.split(",") if part.strip()))
        if len(wanted) > MAX_IDS:
            raise NoSelection(f"at most {MAX_IDS} ids at once, {len(wanted)} given")
        return cls(wanted, name.strip() or None, exception.strip() or None, everything)

    @property
    def filtered(self) -> bool:
        return bool(self.ids or self.name or self.exception)

    def describe(self) -> str:
        if not self.filtered:
            return "ALL entries" if self.everything else "no entries (no filter, not all)"
        parts = [f"ids={','.join(self.ids)}"] if self.ids else []
        parts += [f"name={self.name}"] if self.name else []
        parts += [f"exception={self.exception}"] if self.exception else []
        return " ".join(parts)

    def audit(self) -> dict[str, Any]:
        return {
            "selection": {
                "ids": list(self.ids),
                "name": self.name,
                "exception": self.exception,
                "all": self.everything and not self.filtered,
            }
        }

    def predicate(self) -> Callable[[deadletter.DeadLetter], bool]:
        if not self.filtered and not self.everything:
            raise NoSelection("no filter given: name ids, a task name or an exception, or all")
        return deadletter.selector(list(self.ids), self.name, self.exception)


# Dry run and action go through the same function (deadletter.take): the dry run returns
# exactly the entries the action would touch.
def requeue(app: Celery, selection: Selection, *, dry_run: bool) -> list[deadletter.DeadLetter]:
    select = selection.predicate()
    return _guard(lambda: deadletter.requeue(app, select, dry_run=dry_run))


def purge(app: Celery, selection: Selection, *, dry_run: bool) -> list[deadletter.DeadLetter]:
    select = selection.predicate()
    return _guard(lambda: deadletter.purge(app, select, dry_run=dry_run))
