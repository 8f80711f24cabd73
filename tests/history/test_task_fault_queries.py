"""The history's reads of orphaned, stuck and twice-run tasks and of the visibility-timeout
trap (exporters/history/queries.py), on real SQLite and PostgreSQL, from the history of
tests/history/faults.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, update

from exporters.history import queries
from exporters.history.queries import (
    eta_beyond_visibility,
    orphaned_tasks,
    runs_of,
    stuck_tasks,
    task_runs,
    twice_run_tasks,
)
from exporters.history.schema import tasks
from fleetops.task_faults import eta_epoch
from tests.history.events import task_lifecycle, worker_event
from tests.history.faults import (
    ALIVE,
    DEAD,
    GONE,
    NOW_OFFSET,
    OTHER,
    RESTARTED,
    record,
    seed,
    started,
    succeeded,
)

T0 = 1_700_000_000.0
NOW = T0 + NOW_OFFSET
# dead@h is known down at T0+130, gone@h at T0+200: a window of 840 s makes the first orphan
# lost (870 s ago) and the second waiting (800 s).
WINDOW = 840.0
# gone@h announced its shutdown at T0+200 while orphan-waiting (maintenance.probe, started
# T0+150) ran: with a bound of 100 s that task is orphaned from T0+250 on (750 s before NOW).
DRAIN_BOUNDS = {"maintenance.probe": 100.0}


def fleet(engine: Engine) -> None:
    seed(engine, T0)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


def test_task_runs_lists_every_start_and_retry_oldest_first(engine: Engine) -> None:
    fleet(engine)
    runs = task_runs(engine, "retried")
    assert runs.values.tolist() == [
        ["started", at(600), ALIVE],
        ["retried", at(610), ALIVE],
        ["started", at(700), ALIVE],
    ]
    assert str(runs["at"].dtype).endswith("UTC]")
    none = task_runs(engine, "no-such-task")
    assert none.empty and list(none.columns) == ["kind", "at", "worker"]


def test_runs_of_reads_the_runs_of_many_tasks_in_one_query(engine: Engine) -> None:
    fleet(engine)
    ids = ["thrice", "retried", "no-such-task", "redelivered"]
    runs = runs_of(engine, ids)
    assert list(runs.columns) == ["task_id", "kind", "at", "worker"]
    assert str(runs["at"].dtype).endswith("UTC]")
    # Grouped by task, each task's runs as task_runs gives them (oldest first).
    assert sorted(set(runs["task_id"])) == ["redelivered", "retried", "thrice"]
    for task_id in ids:
        own = runs[runs["task_id"] == task_id].drop(columns="task_id").reset_index(drop=True)
        assert own.values.tolist() == task_runs(engine, task_id).values.tolist(), task_id
    empty = runs_of(engine, [])
    assert empty.empty and list(empty.columns) == ["task_id", "kind", "at", "worker"]


def test_twice_run_tasks_count_starts_within_one_attempt(engine: Engine) -> None:
    fleet(engine)
    found = twice_run_tasks(engine, since=T0 - 3600)
    assert tuple(found.columns) == queries.TWICE_RUN_COLUMNS
    # Most runs first, then the newest; the retried task ran once per attempt: not listed.
    assert found["task_id"].tolist() == ["thrice", "trap", "redelivered"]
    rows = found.set_index("task_id")
    assert rows.loc["thrice", "runs"] == 3
    # Each worker once (the databases join them in no promised order).
    assert sorted(rows.loc["thrice", "workers"].split(",")) == [ALIVE, OTHER]
    assert set(rows.loc["redelivered", "workers"].split(",")) == {DEAD, ALIVE}
    assert rows.loc["trap", "workers"] == ALIVE
    assert rows.loc["trap", "name"] == "trap.task" and rows.loc["trap", "state"] == "STARTED"
    assert rows.loc["trap", "first_started_at"] == at(500)
    assert rows.loc["trap", "last_started_at"] == at(560)
    assert rows.loc["redelivered", "state"] == "SUCCESS"
    assert str(found["timestamp"].dtype).endswith("UTC]")
    # Bounded: the window (by the latest repeated start) and the limit.
    assert twice_run_tasks(engine, since=T0 + 450)["task_id"].tolist() == ["trap"]
    assert twice_run_tasks(engine, since=T0 - 3600, limit=1)["task_id"].tolist() == ["thrice"]
    empty = twice_run_tasks(engine, since=NOW)
    assert empty.empty and tuple(empty.columns) == queries.TWICE_RUN_COLUMNS


def test_a_start_before_the_window_still_counts_with_the_one_inside(engine: Engine) -> None:
    fleet(engine)
    # redelivered: first start at T0+20, the second at T0+400; a window from T0+300 holds one.
    found = twice_run_tasks(engine, since=T0 + 300, limit=10)
    assert "redelivered" in found["task_id"].tolist()
    assert found.set_index("task_id").loc["redelivered", "runs"] == 2


def test_an_orphan_of_a_worker_only_silent_is_not_lost_while_it_may_be_blocked(
    engine: Engine,
) -> None:
    # dead@h went silent at T0+100: 300 s later it may only be blocked (a solo pool in a long
    # task), so even without acks_late its task waits; once the exporter would have purged
    # the worker, the process counts as gone and the task as lost.
    fleet(engine)
    early = orphaned_tasks(engine, now=T0 + 400, redelivery_window=0.0, since=T0 - 3600)
    assert early.set_index("task_id").loc["orphan-lost", "outcome"] == "waiting"
    late = orphaned_tasks(
        engine, now=T0 + 100 + queries.SILENT_WORKER_GONE_AFTER + 1, redelivery_window=0.0,
        since=T0 - 3600,
    )  # fmt: skip
    assert late.set_index("task_id").loc["orphan-lost", "outcome"] == "lost"


def test_orphaned_tasks_lost_then_waiting_then_redelivered(engine: Engine) -> None:
    fleet(engine)
    found = orphaned_tasks(
        engine, now=NOW, worker_timeout=30, redelivery_window=WINDOW, since=T0 - 3600,
        bounds=DRAIN_BOUNDS,
    )  # fmt: skip
    assert tuple(found.columns) == queries.ORPHAN_COLUMNS
    assert found[["task_id", "outcome", "worker"]].values.tolist() == [
        ["orphan-lost", "lost", DEAD],
        ["orphan-waiting", "waiting", GONE],
        ["orphan-restart", "waiting", RESTARTED],
        ["redelivered", "redelivered", DEAD],
    ]
    rows = found.set_index("task_id")
    assert rows.loc["redelivered", "finished_on"] == ALIVE
    assert rows.loc["redelivered", "started_at"] == at(20)  # the orphaned run's start
    assert rows.loc["orphan-lost", "worker_seen_at"] == at(100)
    assert rows.loc["orphan-lost", "finished_on"] is None
    assert rows.loc["orphan-waiting", "state"] == "STARTED"
    # The trap's worker never went down, nor did the worker of the thrice-run task between
    # its starts on alive@h: neither is an orphan.
    assert "trap" not in rows.index and "thrice" not in rows.index
    # Without acks_late nothing comes back: every orphan is lost at once.
    at_once = orphaned_tasks(
        engine, now=NOW, redelivery_window=0.0, since=T0 - 3600, bounds=DRAIN_BOUNDS
    )
    assert set(at_once.loc[at_once["outcome"] != "redelivered", "outcome"]) == {"lost"}
    limited = orphaned_tasks(engine, now=NOW, redelivery_window=WINDOW, since=T0 - 3600, limit=1)
    assert limited["task_id"].tolist() == ["orphan-lost"]
    # The window is the task's latest event: nothing happened after T0+950.
    assert orphaned_tasks(engine, now=NOW, since=T0 + 950).empty


def test_a_task_draining_on_a_worker_that_announced_its_shutdown_is_not_orphaned(
    engine: Engine,
) -> None:
    fleet(engine)

    # gone@h sent worker-offline at T0+200 while orphan-waiting (started T0+150) ran: Celery
    # sends it before a warm shutdown waits for the running tasks, so the task may still
    # finish there. It is orphaned only once it has run past its stuck bound.
    def orphans(**kwargs: object) -> list[str]:
        found = orphaned_tasks(engine, redelivery_window=WINDOW, since=T0 - 3600, **kwargs)
        return found["task_id"].tolist()

    # The default bound (an hour): still draining at NOW, 850 s after its start.
    assert "orphan-waiting" not in orphans(now=NOW)
    assert "orphan-waiting" in orphans(now=T0 + 150 + 3601)
    # A per-name bound of 900 s: orphaned from T0+1050 on, waiting then lost by the window.
    bounds = {"maintenance.probe": 900.0}
    assert "orphan-waiting" not in orphans(now=NOW, bounds=bounds)
    later = orphaned_tasks(
        engine, now=T0 + 1060, redelivery_window=WINDOW, since=T0 - 3600, bounds=bounds
    ).set_index("task_id")
    assert later.loc["orphan-waiting", "outcome"] == "waiting"
    lost = orphaned_tasks(
        engine, now=T0 + 1050 + WINDOW + 1, redelivery_window=WINDOW, since=T0 - 3600,
        bounds=bounds,
    ).set_index("task_id")  # fmt: skip
    assert lost.loc["orphan-waiting", "outcome"] == "lost"
    # The default bound given by the caller, and a hostile one (the product default then).
    assert "orphan-waiting" in orphans(now=NOW, default_bound=800.0)
    assert "orphan-waiting" not in orphans(now=NOW, default_bound=float("nan"))
    hostile = {"maintenance.probe": "900", "other": None, "x": float("inf")}
    assert "orphan-waiting" not in orphans(now=NOW, bounds=hostile)  # the default hour
    # A worker that came online again is a new process: its old tasks are orphaned at once,
    # whatever their bound (restarted@h at T0+300, its task started at T0+250).
    assert "orphan-restart" in orphans(now=T0 + 310)


def test_a_second_start_while_the_first_drains_is_not_a_redelivery(engine: Engine) -> None:
    fleet(engine)
    # drain@h announced its shutdown at T0+110 while its run of "dup" (T0+100) drained; the
    # task was started again on alive@h at T0+120 (the visibility-timeout trap, not a
    # redelivery of an orphan): run twice, but its first run was not orphaned then.
    record(
        engine,
        [
            worker_event("online", "drain@h", T0 - 100),
            *task_lifecycle("dup", start=T0 - 10, outcome="none")[:2],
            started("dup", "drain@h", T0 + 100),
            worker_event("offline", "drain@h", T0 + 110),
            started("dup", ALIVE, T0 + 120),
            succeeded("dup", ALIVE, T0 + 130),
        ],
    )

    def outcome(**kwargs: object) -> str | None:
        found = orphaned_tasks(
            engine, now=NOW, redelivery_window=WINDOW, since=T0 - 3600, **kwargs
        ).set_index("task_id")
        return found.loc["dup", "outcome"] if "dup" in found.index else None

    assert outcome() is None
    assert "dup" in twice_run_tasks(engine, since=T0 - 3600)["task_id"].tolist()
    # With a bound of 15 s the first run was orphaned at T0+115: the new start redelivered it.
    assert outcome(bounds={"maintenance.probe": 15.0}) == "redelivered"
    # The worker that died without a word (dead@h) still counts at once: see "redelivered".


def test_a_worker_silent_for_less_than_the_timeout_orphans_nothing(engine: Engine) -> None:
    fleet(engine)
    # At T0+120 dead@h was heard 20 s ago: alive as far as anyone can tell.
    found = orphaned_tasks(engine, now=T0 + 120, worker_timeout=30, since=T0 - 3600)
    assert "orphan-lost" not in found["task_id"].tolist()
    found = orphaned_tasks(engine, now=T0 + 140, worker_timeout=30, since=T0 - 3600)
    assert "orphan-lost" in found["task_id"].tolist()


def test_stuck_tasks_by_their_bound_on_live_workers(engine: Engine) -> None:
    fleet(engine)
    found = stuck_tasks(engine, bounds={"slow.task": 600.0}, default_bound=500.0, now=NOW)
    assert tuple(found.columns) == queries.STUCK_COLUMNS
    # Longest over its bound first: 950 s against 500, then 900 s against 600. Tasks on dead,
    # offline or restarted workers are orphans, not stuck; a finished one is neither.
    assert found[["task_id", "bound_seconds"]].values.tolist() == [
        ["stuck-default", 500.0],
        ["stuck-named", 600.0],
    ]
    assert found["running_seconds"].tolist() == [pytest.approx(950.0), pytest.approx(900.0)]
    assert found["started_at"][0] == at(50)
    limited = stuck_tasks(engine, bounds={}, default_bound=500.0, now=NOW, limit=1)
    assert limited["task_id"].tolist() == ["stuck-default"]
    # The default bound (task_faults.DEFAULT_STUCK_AFTER_SECONDS): nothing runs for an hour.
    assert stuck_tasks(engine, bounds={}, default_bound=3600.0, now=NOW).empty
    # A hostile bound is not a bound: the default applies.
    hostile = stuck_tasks(
        engine, bounds={"slow.task": float("nan"), "other.task": -1.0}, default_bound=850.0,
        now=NOW,
    )  # fmt: skip
    assert hostile["task_id"].tolist() == ["stuck-default", "stuck-named"]
    # Not numbers at all (a caller's JSON): ignored the same way, never an error.
    odd = stuck_tasks(
        engine,
        bounds={"slow.task": "600", "other.task": None, "x": True},
        default_bound=850.0,
        now=NOW,
    )
    assert odd["task_id"].tolist() == ["stuck-default", "stuck-named"]
    # A worker silent past the timeout is not live: its tasks are not stuck.
    assert stuck_tasks(engine, bounds={}, default_bound=500.0, now=NOW + 60).empty


HOSTILE_ETAS = [
    "", "nan", "not a date", "2023-13-45T00:00:00", "1e400", "\ufffd", "x" * 64,
    "2023-11-14T22:13:20+99:00", "0001-01-01T00:00:00+23:59",
]  # fmt: skip


def test_eta_beyond_the_visibility_timeout_skips_unreadable_etas(engine: Engine) -> None:
    received = T0 + 0.01  # task_lifecycle's task-received
    sent = T0  # its task-sent: the ETA counts from here
    etas = {
        "eta-far": datetime.fromtimestamp(sent + 7200, UTC).isoformat(),
        "eta-near": datetime.fromtimestamp(sent + 600, UTC).isoformat(),
        # Without a zone an ETA is UTC (Celery's enable_utc).
        "eta-naive": datetime.fromtimestamp(sent + 4000, UTC).replace(tzinfo=None).isoformat(),
        "eta-offset": datetime.fromtimestamp(sent + 5000, UTC)
        .astimezone(timezone(timedelta(hours=2)))
        .isoformat(),
        **{f"hostile-{index}": eta for index, eta in enumerate(HOSTILE_ETAS)},
    }
    for task_id in [*etas, "no-eta"]:
        record(engine, task_lifecycle(task_id, start=T0, outcome="none"))
    with engine.begin() as connection:
        for task_id, eta in etas.items():
            # Straight into the table: the stream's checker would refuse most of these, but a
            # history written by an older recorder or by hand may hold anything.
            connection.execute(update(tasks).where(tasks.c.task_id == task_id).values(eta=eta))
    found = eta_beyond_visibility(engine, visibility_timeout=3600, since=T0 - 60)
    assert tuple(found.columns) == queries.ETA_COLUMNS
    assert found["task_id"].tolist() == ["eta-far", "eta-offset", "eta-naive"]
    assert found["ahead_seconds"].tolist() == [
        pytest.approx(7200, abs=1e-3), pytest.approx(5000, abs=1e-3), pytest.approx(4000, abs=1e-3)
    ]  # fmt: skip
    assert found["eta"][0].timestamp() == pytest.approx(sent + 7200, abs=1e-3)
    assert found["received_at"][0].timestamp() == pytest.approx(received)
    assert found["state"][0] == "STARTED"
    limited = eta_beyond_visibility(engine, visibility_timeout=3600, since=T0 - 60, limit=1)
    assert limited["task_id"].tolist() == ["eta-far"]
    # No usable visibility timeout (RabbitMQ, or NaN from a hostile source): no trap.
    assert eta_beyond_visibility(engine, visibility_timeout=float("nan"), since=T0 - 60).empty
    assert eta_beyond_visibility(engine, visibility_timeout=3600, since=T0 + 60).empty


def test_a_task_received_again_after_its_copy_was_restored_stays_in_the_trap(
    engine: Engine,
) -> None:
    # Sent at T0 with an ETA 4000 s away; the visibility timeout (3600 s) passed while the
    # worker held it, so the broker restored it and a second worker received it at T0+3700.
    # The task row keeps that latest receipt (300 s before the ETA), but the trap was sprung
    # by the first one: the distance counts from the send.
    for task_id in ("restored", "unsent"):
        record(engine, task_lifecycle(task_id, start=T0, outcome="none"))
    with engine.begin() as connection:
        eta = datetime.fromtimestamp(T0 + 4000, UTC).isoformat()
        connection.execute(
            update(tasks).where(tasks.c.task_id == "restored")
            .values(eta=eta, received_at=T0 + 3700)
        )  # fmt: skip
        # No task-sent seen (a client that sends no events): measured from the receipt.
        connection.execute(
            update(tasks).where(tasks.c.task_id == "unsent")
            .values(eta=datetime.fromtimestamp(T0 + 5000, UTC).isoformat(), sent_at=None)
        )  # fmt: skip
    found = eta_beyond_visibility(engine, visibility_timeout=3600, since=T0 - 60)
    assert found["task_id"].tolist() == ["unsent", "restored"]
    assert found["ahead_seconds"].tolist() == [
        pytest.approx(5000 - 0.01, abs=1e-3), pytest.approx(4000, abs=1e-3)
    ]  # fmt: skip
    # The latest receipt is still the one shown.
    assert found["received_at"][1].timestamp() == pytest.approx(T0 + 3700)


def test_eta_epoch_reads_iso_8601_and_nothing_else() -> None:
    assert eta_epoch("2026-01-01T00:00:00+00:00") == 1_767_225_600.0
    assert eta_epoch("2026-01-01T02:00:00+02:00") == 1_767_225_600.0
    assert eta_epoch("2026-01-01T00:00:00") == 1_767_225_600.0
    for hostile in [*HOSTILE_ETAS[:-1], None, 12, 1.5, b"2026-01-01", "2026-01-01T00:00:00" * 4]:
        assert eta_epoch(hostile) is None, hostile
