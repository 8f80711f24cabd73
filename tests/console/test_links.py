"""One click from symptom to cause: every link between pages carries its filters in the URL,
and a page opened from such a URL shows what the link promised (AppTest, the real fleet)."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from console import links
from tests.console.apptest import page, run, texts
from tests.console.canvas import CHORD_FAILURE, image_like_chord
from tests.console.conftest import Workload
from tests.console.fleet import Fleet

pytestmark = pytest.mark.slow

HREF = re.compile(r'href="([^"]+)"')


def hrefs(app: object) -> list[tuple[str, dict[str, str]]]:
    """(path, single-valued query) of every same-tab link on the page."""
    found = []
    for href in HREF.findall(texts(app)):
        parts = urlsplit(unescape(href))
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        found.append((parts.path, query))
    return found


def opened(name: str, query: dict[str, str]) -> AppTest:
    """A page as a link with this query opens it (a query may hold a "name" of its own)."""
    app = page(name)
    for key, value in query.items():
        app.query_params[key] = value
    return app


def link_query(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.path, {key: values[-1] for key, values in parse_qs(parts.query).items()}


def test_failures_link_to_the_matching_tasks_and_an_example(
    console_env: Fleet, workload: Workload
) -> None:
    app = run(page("failures", since="7d"))
    assert app.selectbox(key="window").value == "7d"
    found = hrefs(app)
    matching = {"name": "maintenance.probe", "state": "FAILURE", "exception": "ValueError"}
    assert ("/tasks", {**matching, "since": "7d"}) in found
    # The example opens one of the group's tasks: a failed ValueError probe.
    examples = [q[links.TASK_ID] for path, q in found if path == "/tasks" and links.TASK_ID in q]
    assert examples

    # Following the group's link: the Tasks page searches with exactly those filters.
    tasks = run(opened("tasks", {**matching, "since": "7d"}))
    assert tasks.text_input(key="f_name").value == "maintenance.probe"
    assert tasks.selectbox(key="f_state").value == "FAILURE"
    results = tasks.dataframe[0].value
    assert len(results) == workload.failed
    assert f"{workload.failed} matching tasks" in texts(tasks)
    # Each id links to its detail, keeping the search for the way back.
    detail_links = [link_query(url) for url in results["task_id"]]
    assert {path for path, _ in detail_links} == {"/tasks"}
    ids = {query.pop(links.TASK_ID) for _, query in detail_links}
    assert all(query == {**matching, "since": "7d"} for _, query in detail_links)
    assert set(examples) & ids
    assert set(results["worker"]) == {f"/workers?worker={console_env.worker.hostname}"}
    assert set(results["queue"]) == {"/queues?queue=maintenance"}


def test_a_queues_failures_link_keeps_only_that_queue(
    console_env: Fleet, workload: Workload
) -> None:
    # The queue pages and charts link to /failures?queue=...: the filter must be applied.
    probes = run(page("failures", since="7d", queue="maintenance"))
    matching = {"name": "maintenance.probe", "state": "FAILURE", "exception": "ValueError"}
    assert ("/tasks", {**matching, "since": "7d", "queue": "maintenance"}) in hrefs(probes)
    images = run(page("failures", since="7d", queue="images"))
    assert "No failure in the last 7d on this queue." in texts(images)
    assert not [q for path, q in hrefs(images) if path == "/tasks" and "name" in q]


def test_changing_the_failures_window_writes_it_to_the_url(
    console_env: Fleet, workload: Workload
) -> None:
    app = run(page("failures"))
    run(app.selectbox(key="window").select("6h"))
    assert app.query_params[links.SINCE] == "6h"
    assert all(q.get("since") == "6h" for path, q in hrefs(app) if "name" in q)


def test_a_search_writes_its_filters_into_the_url(console_env: Fleet, workload: Workload) -> None:
    app = run(page("tasks"))
    app.text_input(key="f_name").input("maintenance.probe")
    app.selectbox(key="f_state").select("SUCCESS")
    run(app.button(key="search_submit").click())
    wanted = {"name": "maintenance.probe", "state": "SUCCESS", "since": "24h"}
    assert dict(app.query_params) == wanted
    # The same URL, opened afresh, shows the same tasks.
    again = run(opened("tasks", dict(app.query_params)))
    first, second = app.dataframe[0].value, again.dataframe[0].value
    assert list(first["task_id"]) == list(second["task_id"])
    assert set(second["state"]) == {"SUCCESS"}


def test_task_detail_links_its_workflow_parent_root_and_search(
    console_env: Fleet, workload: Workload
) -> None:
    canvas = image_like_chord(console_env, failing=True)
    app = run(
        opened(
            "tasks", {"task_id": canvas.failing, "name": "maintenance.probe", "state": "FAILURE"}
        )
    )
    found = hrefs(app)
    assert ("/workflow", {"task_id": canvas.failing}) in found
    assert ("/tasks", {"task_id": canvas.root}) in found  # parent and root: the first task
    assert ("/tasks", {"name": "maintenance.probe", "state": "FAILURE", "since": "24h"}) in found
    assert ("/workers", {"worker": console_env.worker.hostname}) in found
    assert ("/queues", {"queue": "maintenance"}) in found
    assert app.text_input(key="task_id").value == canvas.failing
    assert f"{CHORD_FAILURE}:" in app.code[0].value

    # The root's detail lists the header tasks it started, each a link to its detail.
    root = run(page("tasks", task_id=canvas.root))
    children = root.dataframe[-1].value
    assert set(children["task_id"]) == {f"/tasks?task_id={child}" for child in canvas.header}


def test_alerts_link_their_runbook_and_queue(console_env: Fleet, workload: Workload) -> None:
    app = run(page("alerts"))
    found = hrefs(app)
    assert ("/runbooks", {"runbook": workload.alert}) in found
    assert ("/queues", {"queue": "images"}) in found


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"name": "x" * 100_000}, "'name' in the link is 100,000 characters long"),
        ({"state": "EXPLODED"}, "The state 'EXPLODED' in the link is not a Celery state"),
        ({"since": "last tuesday"}, "'since' in the link: cannot read the time 'last tuesday'"),
        ({"until": "nan"}, "'until' in the link: cannot read the time 'nan'"),
        ({"worker": "bad\x00byte"}, "'worker' in the link holds control characters"),
        ({"queue": "\ufffd\ufffd"}, "'queue' in the link holds control characters"),
        ({"task_id": "t" * 5000}, "'task_id' in the link is 5,000 characters long"),
    ],
)
def test_hostile_task_links_say_what_is_wrong(
    console_env: Fleet, params: dict[str, str], message: str
) -> None:
    app = run(opened("tasks", params))
    errors = [e.value for e in app.error]
    assert any(message in error for error in errors), errors


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("failures", {"since": "in a bit"}, "cannot read the time 'in a bit'"),
        ("failures", {"since": "9" * 400 + "x"}, "characters long"),
        ("workflow", {"task_id": "w" * 300}, "'task_id' in the link is 300 characters long"),
        ("workflow", {"task_id": "no-such-task"}, "No task no-such-task in the history"),
        ("runbooks", {"runbook": "<script>alert(1)</script>"}, "no runbook named"),
    ],
)
def test_hostile_links_on_other_pages(
    console_env: Fleet, name: str, params: dict[str, str], message: str
) -> None:
    app = run(opened(name, params))
    assert message in texts(app)
