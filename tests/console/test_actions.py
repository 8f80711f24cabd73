"""Control actions from the console: without login nothing runs; with login and confirmation
a revoke really revokes (the worker's own revoked list says so) and is audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from console import audit
from console.sources import control
from exporters.history.database import create_history_engine
from exporters.history.schema import tasks
from tests.console.apptest import login, page, run, texts
from tests.console.conftest import Workload
from tests.console.fleet import Fleet
from tests.helpers import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def audit_log(console_env: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own audit log: what other tests did to the shared fleet is not in it, in
    whatever order they run. The console keeps it under its data dir."""
    monkeypatch.setenv("FLEETOPS_DATA_DIR", str(tmp_path))
    return tmp_path / "console-audit.jsonl"


def _state(fleet: Fleet, task_id: str) -> str | None:
    engine = create_history_engine(fleet.history_url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                select(tasks.c.state).where(tasks.c.task_id == task_id)
            ).scalar()
    finally:
        engine.dispose()


def test_revoke_needs_login_and_confirmation_and_is_audited(
    console_env: Fleet, workload: Workload, audit_log: Path
) -> None:
    client = console_env.client()
    task_id = client.send_task("maintenance.probe", kwargs={"duration": 120.0}).id
    client.close()
    wait_for(lambda: _state(console_env, task_id) == "STARTED", timeout=60, message="started")
    celery = control.app_for(console_env.redis.url)
    hostname = console_env.worker.hostname

    app = run(page("tasks"))
    run(app.text_input(key="task_id").input(task_id))
    app.toggle(key="terminate").set_value(True)
    # Without login the confirmation and the button are disabled: nothing can be run.
    assert app.checkbox(key="revoke_confirm").disabled
    assert app.button(key="revoke_run").disabled
    assert "Read-only: log in as an operator (sidebar) to act." in texts(app)
    assert audit.read(audit_log) == []

    login(app, "wrong", "not the password")
    assert "Wrong password, or no name given." in texts(app)

    login(app, "alice", console_env.console_password)
    app.toggle(key="terminate").set_value(True)
    assert not app.checkbox(key="revoke_confirm").value
    assert app.button(key="revoke_run").disabled  # until the confirmation is ticked
    assert task_id not in control.revoked_ids(celery, hostname)
    assert audit.read(audit_log) == []

    run(app.checkbox(key="revoke_confirm").check())
    run(app.button(key="revoke_run").click())
    wait_for(
        lambda: task_id in control.revoked_ids(celery, hostname),
        timeout=30,
        message="the worker lists the task as revoked",
    )
    wait_for(lambda: _state(console_env, task_id) == "REVOKED", timeout=60, message="revoked")
    [entry] = audit.read(audit_log)
    assert entry["who"] == "alice"
    assert entry["what"] == f"terminate task {task_id}"
    assert entry["result"] == "sent"
    assert entry["task_id"] == task_id and entry["terminate"] is True


def _pool(fleet: Fleet) -> int:
    host = fleet.worker.hostname
    stats = (
        control.app_for(fleet.redis.url).control.inspect([host], timeout=5, limit=1).stats() or {}
    )
    return len(stats.get(host, {}).get("pool", {}).get("processes", []))


def test_pool_grow_and_shrink_from_the_workers_page(
    console_env: Fleet, workload: Workload, audit_log: Path
) -> None:
    before = _pool(console_env)
    app = login(run(page("workers")), "bob", console_env.console_password)
    assert app.selectbox(key="worker_action").value == "Pool grow / shrink"
    run(app.checkbox(key="worker_confirm").check())
    run(app.button(key="worker_run").click())
    wait_for(lambda: _pool(console_env) == before + 1, timeout=30, message="pool grew")

    run(app.number_input(key="delta").set_value(-1))
    run(app.checkbox(key="worker_confirm").check())
    run(app.button(key="worker_run").click())
    wait_for(lambda: _pool(console_env) == before, timeout=30, message="pool shrank")
    host = console_env.worker.hostname
    assert [(e["who"], e["what"]) for e in audit.read(audit_log)] == [
        ("bob", f"pool grow {host} by 1"),
        ("bob", f"pool shrink {host} by 1"),
    ]


def test_a_failed_task_is_sent_again_with_its_arguments(
    console_env: Fleet, workload: Workload, audit_log: Path
) -> None:
    client = console_env.client()
    # KeyError, not the workload's ValueError: the pages' counts stay as the workload made them.
    task_id = client.send_task("maintenance.probe", kwargs={"fail": "KeyError"}).id
    client.close()
    wait_for(lambda: _state(console_env, task_id) == "FAILURE", timeout=60, message="failed")

    app = login(run(page("tasks")), "carol", console_env.console_password)
    run(app.text_input(key="task_id").input(task_id))
    run(app.checkbox(key="retry_confirm").check())
    run(app.button(key="retry_run").click())
    [entry] = audit.read(audit_log)
    assert entry["who"] == "carol"
    new_id = entry["result"].removeprefix("sent as ")
    assert new_id != task_id
    wait_for(lambda: _state(console_env, new_id) == "FAILURE", timeout=60, message="resent")
    engine = create_history_engine(console_env.history_url)
    try:
        with engine.connect() as connection:
            kwargs = connection.execute(
                select(tasks.c.kwargs).where(tasks.c.task_id == new_id)
            ).scalar()
    finally:
        engine.dispose()
    assert "KeyError" in kwargs


def _queues(fleet: Fleet) -> set[str]:
    host = fleet.worker.hostname
    app = control.app_for(fleet.redis.url)
    replies = app.control.inspect([host], timeout=5, limit=1).active_queues() or {}
    return {queue["name"] for queue in replies.get(host, [])}


def test_add_and_cancel_a_consumer(console_env: Fleet, workload: Workload, audit_log: Path) -> None:
    app = login(run(page("workers")), "dave", console_env.console_password)
    run(app.selectbox(key="worker_action").select("Add consumer"))
    run(app.text_input(key="consumer_queue").input("console-extra"))
    run(app.checkbox(key="worker_confirm").check())
    run(app.button(key="worker_run").click())
    wait_for(lambda: "console-extra" in _queues(console_env), timeout=30, message="consuming")

    run(app.selectbox(key="worker_action").select("Cancel consumer"))
    run(app.checkbox(key="worker_confirm").check())
    run(app.button(key="worker_run").click())
    wait_for(lambda: "console-extra" not in _queues(console_env), timeout=30, message="cancelled")
    assert [e["who"] for e in audit.read(audit_log)] == ["dave", "dave"]
