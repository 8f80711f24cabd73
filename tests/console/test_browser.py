"""The console in a real browser: `streamlit run` as the fleet starts it, every page opened
in Debian's headless Chromium at a desktop and a phone width (screenshots kept under
artifacts/console/), and the on-call path clicked through: a failure group, its tasks, one
task's detail, its workflow and back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console import links
from console.fleet import processes as console_specs
from fleetops.fleet.spec import FleetContext
from tests.console.canvas import CHORD_FAILURE, Canvas, image_like_chord
from tests.console.conftest import Workload
from tests.console.fleet import Fleet
from tests.helpers import wait_for
from tests.processes import REPO, processes_in

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts" / "console"
PAGES = {
    "": "Overview",
    "queues": "Queues",
    "workers": "Workers",
    "tasks": "Tasks",
    "failures": "Failures",
    "task_faults": "Stuck & orphaned",
    "dead_letters": "Dead letters",
    "beat": "Beat",
    "alerts": "Alerts",
    "runbooks?runbook=CeleryQueueDepthWarning": "Runbooks",
}
VIEWPORTS = {"desktop": {"width": 1400, "height": 1000}, "phone": {"width": 390, "height": 844}}
EXCEPTION = '[data-testid="stException"]'


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def console_url(
    fleet: Fleet, browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One console for the module's tests, started as the fleet starts it."""
    run_dir = tmp_path_factory.mktemp("console")
    ctx = FleetContext(run_dir=run_dir, env=dict(fleet.console_env), any_port=True)
    ctx.endpoints.update(
        prometheus=fleet.prometheus.url,
        alertmanager=fleet.alertmanager_url,
        history_database=fleet.history_url,
    )
    [spec] = console_specs(ctx)
    assert spec.ready is not None and spec.url is not None
    with processes_in(run_dir) as processes:
        # Ready once its health answers, as in the fleet.
        processes.start(spec, fleet.console_env)
        # The first page this fresh console serves is a deep link, as one pasted into a
        # ticket: it must open without a "Page not found" box (console/views/__init__.py).
        page = browser.new_page()
        page.set_default_timeout(90_000)
        page.goto(f"{spec.url}/failures?since=7d")
        settled(page, "Failures")
        page.close()
        yield spec.url


def settled(page: Any, title: str) -> None:
    """Wait for the page's title, for Streamlit to finish its script run and for every
    element to be drawn; fail on an exception box or a dialog (e.g. "Page not found")."""
    page.wait_for_selector(f'[data-testid="stAppViewContainer"] h1:has-text("{title}")')
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached")
    page.wait_for_function(
        "() => !document.querySelector("
        '\'[data-testid="stSkeleton"], [data-testid="stSkeletonElement"]\')'
    )
    exceptions = page.locator(EXCEPTION)
    assert exceptions.count() == 0, f"{title}: {exceptions.first.inner_text()}"
    dialogs = page.locator('[role="dialog"]')
    assert dialogs.count() == 0, f"{title}: {dialogs.first.inner_text()}"


def test_every_page_renders_at_desktop_and_phone_width(
    fleet: Fleet, workload: Workload, console_url: str, browser: Any
) -> None:
    canvas = image_like_chord(fleet, failing=True)
    pages = {**PAGES, f"workflow?task_id={canvas.failing}": "Workflow"}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width, viewport in VIEWPORTS.items():
        page = browser.new_page(viewport=viewport)
        page.set_default_timeout(90_000)
        for path, title in pages.items():
            page.goto(f"{console_url}/{path}")
            settled(page, title)
            if title == "Workflow":
                page.wait_for_selector('[data-testid="stGraphVizChart"] svg')
            name = path.split("?")[0] or "overview"
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        page.close()


def test_click_from_a_failure_to_its_workflow_and_back(
    fleet: Fleet, workload: Workload, console_url: str, browser: Any
) -> None:
    canvas: Canvas = image_like_chord(fleet, failing=True)
    assert canvas.failing is not None
    page = browser.new_page(viewport=VIEWPORTS["desktop"])
    page.set_default_timeout(90_000)
    page.goto(f"{console_url}/failures")
    settled(page, "Failures")

    # The failure group of the chord: its count opens the matching tasks in the same tab.
    row = page.locator("tr", has_text=CHORD_FAILURE)
    row.locator('a[href^="/tasks?"]', has_text="1 task").click()
    page.wait_for_url(f"**/tasks?*exception={CHORD_FAILURE}*")
    settled(page, "Tasks")
    assert "state=FAILURE" in page.url and "name=maintenance.probe" in page.url
    page.wait_for_selector('[data-testid="stDataFrame"]')

    # The results table is a canvas: its first row's id cell opens the task's detail in a
    # new tab, as every table link does.
    # The grid draws a link as one only under the pointer: hover, then click.
    grid = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
    first_id = (grid["x"] + 60, grid["y"] + 35 + 18)  # below the 35 px header row
    page.mouse.move(*first_id)
    with page.context.expect_page() as opened:
        page.mouse.click(*first_id)
    detail = opened.value
    detail.set_default_timeout(90_000)
    detail.wait_for_load_state()
    assert f"task_id={canvas.failing}" in detail.url
    settled(detail, "Tasks")
    detail.wait_for_selector(f'code:has-text("{canvas.failing}")')

    # Its workflow, in the same tab: the tree holds every task of the chord.
    detail.locator(f'a[href="/workflow?task_id={canvas.failing}"]').click()
    detail.wait_for_url(f"**/workflow?task_id={canvas.failing}")
    settled(detail, "Workflow")
    tree = detail.locator('[data-testid="stGraphVizChart"] svg')
    tree.wait_for()
    drawn = tree.text_content()
    # Each box is a link to its task's detail.
    assert tree.locator("a").count() == len(canvas.expected)
    for task_id in canvas.expected:
        assert task_id[:8] in drawn
    assert "FAILURE" in drawn
    detail.screenshot(path=str(ARTIFACTS / "click-through-workflow.png"), full_page=True)

    # And back to the task with the browser's back button.
    detail.go_back()
    detail.wait_for_url(f"**/tasks?*task_id={canvas.failing}*")
    settled(detail, "Tasks")
    detail.wait_for_selector(f'code:has-text("{canvas.failing}")')
    # ... and the first tab still shows the search it came from.
    assert f"exception={CHORD_FAILURE}" in page.url
    assert page.locator(EXCEPTION).count() == 0


def test_charts_draw_in_chromium(
    fleet: Fleet, workload: Workload, console_url: str, browser: Any
) -> None:
    """Vega-Lite only complains about a chart's spec when it draws it."""
    host = fleet.worker.hostname
    # Path -> charts the page draws there (overview: depth, flow, wait, memory; failures and
    # latency only once Prometheus has a rate over their window).
    pages = {"": 4, "queues?queue=images": 2, links.worker(host).lstrip("/"): 2}
    page = browser.new_page(viewport={"width": 1400, "height": 3200})
    page.set_default_timeout(90_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for path, count in pages.items():
        page.goto(f"{console_url}/{path}")
        page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached")
        name = "charts-" + (path.split("?")[0] or "overview")
        drawn = page.locator('[data-testid="stVegaLiteChart"] svg.marks')
        try:
            wait_for(lambda: drawn.count() >= count, timeout=60, message=f"{path}: charts")  # noqa: B023
        finally:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        exceptions = page.locator(EXCEPTION)
        assert exceptions.count() == 0, f"{path}: {exceptions.first.inner_text()}"
    page.close()
    vega = [e for e in errors if "vega" in e.lower() or "spec" in e.lower()]
    assert not vega, vega
