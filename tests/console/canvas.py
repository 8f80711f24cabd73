"""Real Celery canvases on the console fleet's worker, shaped like the image workflow: a first
task, then a chord of four tasks whose callback runs once they are all done
(images.process -> thumbnails, checksum, dimensions, phash -> finalize). The worker consumes
only maintenance and reminders, so every step is a maintenance.probe."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import uuid4

from celery import chain, chord, signature
from sqlalchemy import select

from exporters.history.database import create_history_engine
from exporters.history.schema import tasks
from tests.console.fleet import Fleet
from tests.helpers import wait_for

# Not the workload's ValueError nor the actions tests' KeyError: the counts those tests read
# on the Failures and Dead letters pages stay as they made them.
CHORD_FAILURE = "LookupError"


@dataclass(frozen=True)
class Canvas:
    root: str
    header: tuple[str, ...]
    callback: str
    failing: str | None  # the header task that fails; the callback then never runs

    @property
    def expected(self) -> dict[str, str]:
        """task id -> the state the history must end with."""
        states = {self.root: "SUCCESS"}
        states.update(dict.fromkeys(self.header, "SUCCESS"))
        if self.failing:
            states[self.failing] = "FAILURE"
        else:
            states[self.callback] = "SUCCESS"
        return states


_sent: dict[tuple[str, bool], Canvas] = {}


def _states(fleet: Fleet, ids: set[str]) -> dict[str, str]:
    engine = create_history_engine(fleet.history_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(tasks.c.task_id, tasks.c.state).where(tasks.c.task_id.in_(ids))
            ).all()
    finally:
        engine.dispose()
    return {task_id: state for task_id, state in rows}


def image_like_chord(fleet: Fleet, *, failing: bool) -> Canvas:
    """Send the canvas once per fleet and wait until the history holds every task's final
    state (the chord callback is joined through the fleet's Redis result backend). Call it
    after the ``workload`` fixture: its probes are counted while it runs."""
    key = (fleet.redis.url, failing)
    if key in _sent:
        return _sent[key]
    client = fleet.client()
    client.conf.result_backend = fleet.redis.url  # chords need one, as the workers have

    def probe(task_id: str, **kwargs: object):  # type: ignore[no-untyped-def]
        # Immutable: the callback must not receive the header's results as its duration.
        return signature(
            "maintenance.probe", kwargs=kwargs, immutable=True, app=client, task_id=task_id
        )

    root, callback = str(uuid4()), str(uuid4())
    header = tuple(str(uuid4()) for _ in range(4))
    durations = (0.3, 0.1, 0.2, 0.0)
    steps = [
        probe(task_id, fail=CHORD_FAILURE) if failing and index == 2 else probe(task_id, duration=d)
        for index, (task_id, d) in enumerate(zip(header, durations, strict=True))
    ]
    canvas = Canvas(root, header, callback, header[2] if failing else None)
    chain(probe(root, duration=0.05), chord(steps, probe(callback))).apply_async()
    # Sending subscribed the client to each result's Redis channel, and a result unsubscribes
    # when it is collected, which may be after the fleet's Redis is gone: close the
    # subscription now and leave the collected results nothing to unsubscribe.
    consumer = client.backend.result_consumer
    consumer.stop()
    consumer.subscribed_to.clear()
    wait_for(
        lambda: _states(fleet, set(canvas.expected)) == canvas.expected,
        timeout=90,
        message="the history recorded every task of the chord",
    )
    client.close()
    _sent[key] = canvas
    return canvas
