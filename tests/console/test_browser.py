"""The console in a real browser: `streamlit run` as the fleet starts it, every page opened
in Debian's headless Chromium, a screenshot of each kept under artifacts/console/."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.fleet import processes as console_specs
from fleetops.fleet.spec import FleetContext
from tests.console.conftest import Workload
from tests.console.fleet import Fleet
from tests.processes import REPO, Processes

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts" / "console"
PAGES = {
    "": "Overview",
    "queues": "Queues",
    "workers": "Workers",
    "tasks": "Tasks",
    "failures": "Failures",
    "dead_letters": "Dead letters",
    "beat": "Beat",
    "alerts": "Alerts",
    "runbooks?runbook=CeleryQueueDepthWarning": "Runbooks",
}


def test_every_page_renders_in_chromium(
    fleet: Fleet, workload: Workload, processes: Processes, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/test installs it)")
    from playwright.sync_api import sync_playwright

    ctx = FleetContext(run_dir=tmp_path, env=dict(fleet.console_env), any_port=True)
    ctx.endpoints.update(
        prometheus=fleet.prometheus.url,
        alertmanager=fleet.alertmanager_url,
        history_database=fleet.history_url,
    )
    [spec] = console_specs(ctx)
    assert spec.ready is not None and spec.url is not None
    # Ready once its health answers, as in the fleet.
    processes.start(spec, fleet.console_env)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)
        for path, title in PAGES.items():
            page.goto(f"{spec.url}/{path}")
            page.wait_for_selector(f'[data-testid="stAppViewContainer"] h1:has-text("{title}")')
            # Done once Streamlit's "running" indicator is gone.
            page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached")
            name = path.split("?")[0] or "overview"
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            exceptions = page.locator('[data-testid="stException"]')
            assert exceptions.count() == 0, f"{title}: {exceptions.first.inner_text()}"
        browser.close()
