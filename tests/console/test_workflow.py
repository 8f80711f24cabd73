"""The Workflow page: a real chord on the fleet's worker drawn from its root with each task's
state, its timeline, and the bounds that keep a huge canvas from hanging the page."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import insert

from console import links, workflow
from console.timeline import workflow_bars
from exporters.history import migrate
from exporters.history.database import create_history_engine
from exporters.history.queries import workflow as workflow_query
from exporters.history.queries import workflow_root
from exporters.history.schema import tasks
from tests.console.apptest import page, run, texts
from tests.console.canvas import image_like_chord
from tests.console.conftest import Workload
from tests.console.fleet import Fleet

NODE = re.compile(r'^\s+"([0-9a-f-]{36})" \[label="[^"]*\\n[0-9a-f]{8} (\w+)', re.MULTILINE)
EDGE = re.compile(r'^\s+"([0-9a-f-]{36})" -> "([0-9a-f-]{36})";', re.MULTILINE)


def drawn(app: object) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """The nodes (task id -> state) and edges of the page's graph."""
    [chart] = app.get("graphviz_chart")  # type: ignore[attr-defined]
    source = chart.proto.spec
    return dict(NODE.findall(source)), set(EDGE.findall(source))


@pytest.mark.slow
def test_a_chord_is_drawn_from_its_root_with_every_state(
    console_env: Fleet, workload: Workload
) -> None:
    canvas = image_like_chord(console_env, failing=False)
    # Opened from the callback: the page finds the root and draws the whole canvas.
    app = run(page("workflow", task_id=canvas.callback))
    nodes, edges = drawn(app)
    assert nodes == canvas.expected
    # The header hangs under the first task; the callback under the header task that finished
    # last (Celery's chord join sends it from there).
    assert {(canvas.root, task) for task in canvas.header} <= edges
    [(callback_parent, _)] = [edge for edge in edges if edge[1] == canvas.callback]
    assert callback_parent in canvas.header
    table = app.dataframe[0].value
    assert {link for link in table["task"]} == {links.task(t) for t in canvas.expected}
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["tasks"] == "6"
    assert f"**SUCCESS** {len(canvas.expected)}" in texts(app)


@pytest.mark.slow
def test_a_failed_chord_shows_the_failure_and_no_callback(
    console_env: Fleet, workload: Workload
) -> None:
    canvas = image_like_chord(console_env, failing=True)
    app = run(page("workflow", task_id=canvas.header[0]))
    nodes, _ = drawn(app)
    assert nodes == canvas.expected
    assert nodes[canvas.failing] == "FAILURE"
    assert canvas.callback not in nodes  # a header task failed: Celery never sent it
    assert app.query_params[links.TASK_ID] == canvas.header[0]


def _history_with_one_huge_workflow(tmp_path: Path, size: int) -> tuple[str, str]:
    # A stand-in: a 10,000-task canvas on the test worker would take minutes, so the rows a
    # recorder would write for one are inserted into a real, migrated history database.
    url = f"sqlite:///{tmp_path / 'history.db'}"
    engine = create_history_engine(url)
    migrate.upgrade(engine)
    root = str(uuid.uuid4())
    start = 1_800_000_000.0
    rows = [
        {
            "task_id": root if index == 0 else str(uuid.uuid4()),
            "name": "images.process" if index == 0 else "images.thumbnails",
            "state": "FAILURE" if index % 1000 == 1 else "SUCCESS",
            "root_id": root,
            "parent_id": None if index == 0 else root,
            "sent_at": start + index * 0.001,
            "started_at": start + index * 0.001 + 0.5,
            "succeeded_at": start + index * 0.001 + 0.6,
            "timestamp": start + index * 0.001 + 0.6,
            "state_class": 2,
            "state_ts": start,
            "state_rank": 1,
        }
        for index in range(size)
    ]
    with engine.begin() as connection:
        connection.execute(insert(tasks), rows)
    engine.dispose()
    return url, root


def test_a_huge_workflow_is_bounded_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = _history_with_one_huge_workflow(tmp_path, 10_000)
    engine = create_history_engine(url)
    frame, count = workflow_query(engine, root, limit=2000)
    assert len(frame) == 2000 and count == 2001  # "more than 2,000", not a full count
    assert frame["task_id"].iloc[0] == root  # the earliest sent first
    assert workflow_root(engine, frame["task_id"].iloc[-1]) == root
    engine.dispose()

    for key in ("FLEETOPS_PROMETHEUS_URL", "FLEETOPS_ALERTMANAGER_URL"):
        monkeypatch.setenv(key, "http://127.0.0.1:9")  # not read by this page
    monkeypatch.setenv("FLEETOPS_HISTORY_DATABASE_URL", url)
    app = run(page("workflow", task_id=root))
    shown = texts(app)
    assert "more than 2,000 tasks: the first 2,000 sent are shown" in shown
    assert f"one box per task name (a box per task is drawn up to {workflow.DRAW_MAX})" in shown
    [chart] = app.get("graphviz_chart")
    assert '"images.thumbnails" [label="images.thumbnails ×1,999' in chart.proto.spec
    assert '"images.process" -> "images.thumbnails";' in chart.proto.spec
    assert {m.label: m.value for m in app.metric}["tasks"] == "> 2,000"


def test_the_root_is_found_through_parents_when_root_id_is_missing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    engine = create_history_engine(url)
    migrate.upgrade(engine)
    common = {"state": "SUCCESS", "timestamp": 1.0, "state_class": 2, "state_ts": 1.0,
              "state_rank": 1, "root_id": None}  # fmt: skip
    chain = [("a", None), ("b", "a"), ("c", "b")]
    with engine.begin() as connection:
        connection.execute(
            insert(tasks), [{"task_id": t, "parent_id": p, **common} for t, p in chain]
        )
        # A corrupt cycle of parents must not loop forever.
        connection.execute(
            insert(tasks), [{"task_id": "x", "parent_id": "y", **common},
                            {"task_id": "y", "parent_id": "x", **common}]
        )  # fmt: skip
    assert workflow_root(engine, "c") == "a"
    assert workflow_root(engine, "x") in {"x", "y"}
    assert workflow_root(engine, "missing") is None
    engine.dispose()


def test_dot_text_quotes_hostile_names() -> None:
    frame = pd.DataFrame(
        [
            {"task_id": "r", "name": 'evil" URL="http://x', "state": "SUCCESS", "parent_id": None,
             "retries": 0},
            {"task_id": "c", "name": "line\nbreak\\", "state": "BOGUS", "parent_id": "r",
             "retries": 2},
        ]
    )  # fmt: skip
    source = workflow.dot(frame, "r", focus="c")
    assert 'evil\\" URL=\\"http://x' in source
    assert "line break\\\\" in source  # the newline is a space, the backslash escaped
    assert '"r" -> "c";' in source
    assert "retries 2" in source and "penwidth" in source


def test_timeline_bars_per_phase() -> None:
    at = pd.Timestamp("2026-01-01T00:00:00Z")
    second = pd.Timedelta(seconds=1)
    frame = pd.DataFrame(
        [
            {"task_id": "a", "name": "n", "state": "SUCCESS", "retries": 1, "sent_at": at,
             "received_at": at + second, "started_at": at + 2 * second,
             "succeeded_at": at + 5 * second, "failed_at": pd.NaT, "revoked_at": pd.NaT,
             "rejected_at": pd.NaT, "timestamp": at + 5 * second},
            {"task_id": "b", "name": "n", "state": "PENDING", "retries": None, "sent_at": at,
             "received_at": pd.NaT, "started_at": pd.NaT, "succeeded_at": pd.NaT,
             "failed_at": pd.NaT, "revoked_at": pd.NaT, "rejected_at": pd.NaT, "timestamp": at},
        ]
    )  # fmt: skip
    bars = workflow_bars(frame)
    assert list(zip(bars["task_id"], bars["phase"], bars["seconds"], strict=True)) == [
        ("a", "queue wait", 2.0),
        ("a", "running", 3.0),
    ]
    assert bars["retries"].tolist() == [1, 1]
