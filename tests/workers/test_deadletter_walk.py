"""A requeue or purge walks the dead-letter queue as it was when the walk began (real brokers)."""

from __future__ import annotations

import pytest

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
