"""The same fleet on RabbitMQ: priorities, dead letters, requeue."""

from __future__ import annotations

from tests.helpers import wait_for
from workers import deadletter
from workers.client import client_app


def test_failures_dead_letter_and_requeue_on_rabbitmq(rabbitmq_url, fleet_env, start_worker):
    fleet_env["FLEETOPS_BROKER_URL"] = rabbitmq_url
    fleet_env["FLEETOPS_RESULT_BACKEND"] = "rpc://"
    worker = start_worker(queues="maintenance", concurrency=1)
    client = client_app(rabbitmq_url, "fleetops-test-client")
    for n in range(3):
        client.send_task(
            "maintenance.probe", kwargs={"fail": "ValueError", "duration": n / 100},
            queue="maintenance",
        )  # fmt: skip
    letters = wait_for(
        lambda: len(found := deadletter.entries(client)) == 3 and found,
        timeout=60, message="three dead letters on RabbitMQ",
    )  # fmt: skip
    # Browsing twice returns the same entries: listing removes nothing.
    assert {letter.id for letter in deadletter.entries(client)} == {x.id for x in letters}
    assert all(letter.exception == "ValueError" for letter in letters)
    assert all(letter.queue == "maintenance" for letter in letters)

    requeued = deadletter.requeue(client, deadletter.selector(ids=[letters[0].id]))
    assert [letter.id for letter in requeued] == [letters[0].id]
    # The requeued task fails again and comes back as a new entry: three in all.
    wait_for(
        lambda: worker.log().count("raised unexpected: ValueError") == 4,
        timeout=60, message="requeued task ran again",
    )  # fmt: skip
    wait_for(lambda: len(deadletter.entries(client)) == 3, timeout=30, message="three entries")
    purged = deadletter.purge(client, deadletter.selector(exception="ValueError"))
    assert len(purged) == 3
    assert deadletter.entries(client) == []
    client.close()
