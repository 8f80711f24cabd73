"""Every page under AppTest against the real fleet: the numbers shown are what the fleet did."""

from __future__ import annotations

import math
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from console.metrics import minutes_text
from fleetops.breaking_points import current
from tests.console.apptest import login, page, run, texts
from tests.console.conftest import Workload
from tests.console.fleet import Fleet

pytestmark = pytest.mark.slow


def test_overview_shows_each_queue_against_the_breaking_points(
    console_env: Fleet, workload: Workload
) -> None:
    app = run(page("overview"))
    queues = app.dataframe[0].value.set_index("queue")
    images = queues.loc["images"]
    assert images["depth"] == workload.waiting_images
    assert images["depth"] == console_env.prometheus_value(
        'sum(celery_queue_length{queue_name="images"})'
    )
    assert images["band"] == current().queue_depth.level_of(workload.waiting_images)
    assert "dead_letter" not in queues.index  # watched by its own alert, not a work queue
    assert images["consumers"] == 0
    shown = texts(app)
    # Nobody consumes images: a task enqueued now would never start at this rate.
    assert f"the last task enqueued now waits about **{minutes_text(math.inf)}**" in shown
    depth = current().queue_depth
    assert f"warning ≥ {depth.warning:g}, critical ≥ {depth.critical:g}" in shown
    metrics = {m.label: m.value for m in app.metric}
    assert metrics == {"Workers up": "1", "Workers down": "0"}
    assert f"**{workload.alert}**" in shown
    assert f"/runbooks?runbook={workload.alert}" in shown


def test_queues_page_lists_depth_and_consumers(console_env: Fleet, workload: Workload) -> None:
    app = run(page("queues"))
    queues = app.dataframe[0].value.set_index("queue")
    assert queues.loc["images", "depth"] == workload.waiting_images
    assert queues.loc["images", "consumers"] == 0
    assert queues.loc["maintenance", "consumers"] >= 1
    assert "priority" in " ".join(queues.columns)


def test_workers_page_shows_memory_against_its_bands(
    console_env: Fleet, workload: Workload
) -> None:
    app = run(page("workers"))
    workers = app.dataframe[0].value.set_index("worker")
    row = workers.loc[console_env.worker.hostname]
    assert bool(row["up"]) is True
    assert 0 < row["memory %"] < 100
    assert row["memory band"] == current().worker_memory.level_of(row["memory %"])
    assert row["processed"] >= workload.succeeded + workload.failed
    pool = f'fleetops_worker_pool_size{{hostname="{console_env.worker.hostname}"}}'
    assert row["pool"] == console_env.prometheus_value(pool)
    assert row["heartbeat age (s)"] < 30
    assert f"warning ≥ {current().worker_memory.warning:g}%" in texts(app)


def test_tasks_search_and_detail(console_env: Fleet, workload: Workload) -> None:
    app = run(page("tasks"))
    app.text_input(key="f_name").input("maintenance.probe")
    app.selectbox(key="f_state").select("FAILURE")
    app.text_input(key="f_exception").input("ValueError")
    run(app.button(key="search_submit").click())
    failed = app.dataframe[0].value
    assert len(failed) == workload.failed
    assert set(failed["exception_type"]) == {"ValueError"}
    assert f"{workload.failed} matching tasks" in texts(app)

    app.selectbox(key="f_state").select("")
    app.text_input(key="f_exception").input("")
    app.text_input(key="f_text").input("ValueError")  # argument text: fail='ValueError'
    run(app.button(key="search_submit").click())
    assert len(app.dataframe[0].value) == workload.failed

    # Each id is a link to its detail (tests/console/test_links.py checks where they lead).
    task_id = parse_qs(urlsplit(failed["task_id"].iloc[0]).query)["task_id"][0]
    run(app.text_input(key="task_id").input(task_id))
    timeline = app.dataframe[1].value.set_index("event")
    assert timeline.index[0] == "sent" and timeline.index[-1] == "failed"
    assert {"received", "started"} <= set(timeline.index)
    # The phases are the gaps between the stored events.
    phases = {m.label: m.value for m in app.metric}
    running = (timeline.loc["failed", "at"] - timeline.loc["started", "at"]).total_seconds()
    assert phases["running"] == f"{running:.2f} s"
    assert set(phases) == {"waiting in queue", "waiting in worker", "running"}


def test_failures_grouped_by_task_and_exception(console_env: Fleet, workload: Workload) -> None:
    app = run(page("failures"))
    # A Markdown table whose cells are links: | task | exception | failed | first | last | ...
    [table] = [m.value for m in app.markdown if m.value.startswith("| task |")]
    [row] = [line for line in table.splitlines() if "| ValueError |" in line]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert ">maintenance.probe</a>" in cells[0]
    assert f">{workload.failed} tasks</a>" in cells[2]
    assert cells[3] <= cells[4]  # first seen, last seen


def test_dead_letters_browse_and_dry_run(console_env: Fleet, workload: Workload) -> None:
    app = run(page("dead_letters"))
    letters = app.dataframe[0].value
    assert (letters["exception"] == "ValueError").sum() == workload.failed
    app.text_input(key="dl_name").input("maintenance.probe")
    app.text_input(key="dl_exception").input("ValueError")
    run(app.button(key="dl_dry_run").click())
    assert f"Dry run: {workload.failed} entries would be requeued" in texts(app)
    # The dry run took nothing away.
    assert len(run(page("dead_letters")).dataframe[0].value) == len(letters)


def test_beat_page_shows_the_periodic_task(console_env: Fleet, workload: Workload) -> None:
    app = run(page("beat"))
    entries = app.dataframe[0].value.set_index("periodic task")
    assert len(entries) >= 1
    entry = entries.iloc[0]
    assert entry["every (s)"] == 2  # FLEETOPS_REMINDER_INTERVAL_SECONDS of the fleet
    assert entry["missed runs"] == 0
    assert entry["next run"] > entry["last run"]


def test_alerts_page_links_the_runbook(console_env: Fleet, workload: Workload) -> None:
    app = run(page("alerts"))
    shown = texts(app)
    assert "Firing (1)" in [s.value for s in app.subheader]
    assert f"**{workload.alert}**" in shown
    assert f"/runbooks?runbook={workload.alert}" in shown


def test_runbook_page_renders_the_linked_runbook(console_env: Fleet) -> None:
    app = run(page("runbooks", runbook="CeleryQueueDepthWarning"))
    assert app.selectbox(key="runbook").value == "CeleryQueueDepthWarning"
    assert "Meaning" in texts(app)


def test_a_source_that_is_down_shows_a_banner_and_the_rest_works(
    console_env: Fleet, workload: Workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETOPS_PROMETHEUS_URL", "http://127.0.0.1:9")  # discard port
    app = run(page("overview"))
    banners = [e.value for e in app.error]
    assert any(b.startswith("Prometheus is unavailable") for b in banners)
    # Alertmanager is up: its part of the page still renders.
    assert f"**{workload.alert}**" in texts(app)

    monkeypatch.setenv("FLEETOPS_HISTORY_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    app = run(page("failures"))
    assert any(e.value.startswith("Task history database is unavailable") for e in app.error)


def test_silence_needs_login_and_confirmation(console_env: Fleet, workload: Workload) -> None:
    def silences() -> list[dict]:
        found = httpx.get(f"{console_env.alertmanager_url}/api/v2/silences").json()
        return [s for s in found if s["status"]["state"] == "active"]

    app = run(page("alerts"))
    # Read-only without login: a browser cannot tick or press a disabled widget.
    assert app.button(key="silence_create_run").disabled
    assert app.checkbox(key="silence_create_confirm").disabled
    login(app, "alice", console_env.console_password)
    app.text_input(key="silence_comment").input("deploying a fix")
    run(app.checkbox(key="silence_create_confirm").check())
    run(app.button(key="silence_create_run").click())
    created = silences()
    # The login's identity (local:<operator>), not a typed name.
    assert len(created) == 1 and created[0]["createdBy"].startswith("local:")
    run(app)  # the expire list is read before the create action ran
    run(app.checkbox(key="silence_expire_confirm").check())
    run(app.button(key="silence_expire_run").click())
    assert silences() == []
