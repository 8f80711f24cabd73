"""A requeue or purge walks the dead-letter queue as it was when the walk began (real brokers)."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from tests.deadletters import publish_raw
from workers import deadletter
from workers.client import client_app


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_a_letter_dead_again_during_the_walk_is_not_taken_again(
    broker: str, fleet_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    url = (
        fleet_env["FLEETOPS_BROKER_URL"]
        if broker == "redis"
        else request.getfixturevalue("rabbitmq_url")
    )
    app = client_app(url, "fleetops-test-client")
    # An empty (never used) queue is walked too: nothing to take.
    assert deadletter.take(app, deadletter.selector(), lambda _letter: None) == []

    def letter(task_id: str) -> deadletter.DeadLetter:
        return deadletter.DeadLetter(
            task_id=task_id, name="maintenance.probe", args=[], kwargs={}, queue="maintenance",
            exception="ValueError", reason="failed for good",
        )  # fmt: skip

    for n in range(2):
        deadletter.record(app, letter(f"t{n}"))

    def fails_again_at_once(taken: deadletter.DeadLetter) -> None:
        # What a requeued task that fails at once does: a new entry behind the walk.
        deadletter.record(app, letter(taken.task_id))

    select = deadletter.selector(name="maintenance.probe")
    counted = deadletter.take(app, select, fails_again_at_once, dry_run=True)
    touched = deadletter.take(app, select, fails_again_at_once, limit=50)
    # Before, the walk met each new entry and requeued it again, up to the limit.
    # (A dry run puts its messages back; Redis may restore them in another order.)
    assert sorted(x.task_id for x in touched) == sorted(x.task_id for x in counted) == ["t0", "t1"]
    assert sorted(letter.task_id for letter in deadletter.entries(app)) == ["t0", "t1"]
    deadletter.purge(app, select)
    app.close()


def test_messages_with_wrong_field_types_are_left_alone_and_do_not_stop_actions(
    fleet_env: dict[str, str],
) -> None:
    app = client_app(fleet_env["FLEETOPS_BROKER_URL"], "fleetops-test-client")
    good = deadletter.DeadLetter(
        task_id="t-good", name="maintenance.probe", args=[], kwargs={}, queue="maintenance",
        exception="ValueError", reason="failed for good",
    )  # fmt: skip
    deadletter.record(app, good)
    body = asdict(good)
    without_id = {k: v for k, v in body.items() if k != "id"}
    hostile = [
        {**body, "id": {}},
        {**body, "id": "bad-1", "task_id": []},
        {**body, "id": "bad-2", "name": 5},
        {**body, "id": "bad-3", "exception": None},
        without_id,  # would get a new random id at every read: never selectable by id
        ["not", "a", "dead", "letter"],
    ]
    for bad in hostile:
        publish_raw(app, bad)

    assert [letter.id for letter in deadletter.entries(app)] == [good.id]
    # Before, the first bad id made every selection by ids raise TypeError.
    by_id = deadletter.selector(ids=[good.id, "bad-1"])
    assert [letter.id for letter in deadletter.purge(app, by_id, dry_run=True)] == [good.id]
    assert [letter.id for letter in deadletter.purge(app, by_id)] == [good.id]
    # Not ours: even "everything" leaves them where they are.
    assert deadletter.purge(app, deadletter.selector()) == []
    with deadletter._browse(app) as (held, _get):
        assert held == len(hostile)
    app.close()


def test_a_batch_that_fails_part_way_names_the_entries_it_already_touched(
    fleet_env: dict[str, str],
) -> None:
    app = client_app(fleet_env["FLEETOPS_BROKER_URL"], "fleetops-test-client")
    for n in range(3):
        deadletter.record(
            app,
            deadletter.DeadLetter(
                task_id=f"t{n}", name="maintenance.probe", args=[], kwargs={}, queue="maintenance",
                exception="ValueError", reason="failed for good",
            ),
        )  # fmt: skip
    acted: list[str] = []

    def fails_on_the_second(letter: deadletter.DeadLetter) -> None:
        if acted:
            raise RuntimeError("broker refused the send")
        acted.append(letter.task_id)

    with pytest.raises(deadletter.PartialBatch) as stopped:
        deadletter.take(app, deadletter.selector(), fails_on_the_second)
    assert isinstance(stopped.value.cause, RuntimeError)
    # The first is done and gone; the audit needs its id. The rest are still in the queue.
    assert [letter.task_id for letter in stopped.value.taken] == acted
    left = sorted(letter.task_id for letter in deadletter.entries(app))
    assert len(acted) == 1 and left == sorted({"t0", "t1", "t2"} - set(acted))
    app.close()
