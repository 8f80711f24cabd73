"""The local pager: a real `fleetops pager` process receiving Alertmanager webhooks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from alerts.fleet import pager_spec
from fleetops.fleet.spec import free_port
from tests.alerts.conftest import RUNBOOKS_DIR
from tests.helpers import wait_for
from tests.processes import processes_in

NOTIFICATION = {
    "version": "4",
    "status": "firing",
    "receiver": "pager",
    "groupLabels": {"alertname": "CeleryQueueDepthCritical"},
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "CeleryQueueDepthCritical", "severity": "critical",
                       "queue_name": "images"},
            "annotations": {
                "summary": "A Celery queue is deep.",
                "description": "Queue images holds 6k waiting messages.",
                "runbook_url": "http://127.0.0.1:9095/runbooks/CeleryQueueDepthCritical.md",
                "dashboard_url": "http://127.0.0.1:3000/d/fleetops-queue?var-queue=images",
            },
            "startsAt": "2026-01-01T00:00:00Z",
        }
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def pager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    port = free_port()
    with processes_in(tmp_path_factory.mktemp("pager")) as processes:
        pages_log = processes.run_dir / "pages.jsonl"
        pager = processes.start(pager_spec(port, pages_log))
        yield f"http://127.0.0.1:{port}", pages_log, pager.log_path


def test_a_page_is_logged_with_its_runbook_link(pager: tuple[str, Path, Path]) -> None:
    url, pages_log, output = pager
    response = httpx.post(f"{url}/page", content=orjson.dumps(NOTIFICATION))
    assert response.status_code == 200
    pages = httpx.get(f"{url}/pages").json()
    assert pages[-1]["alertname"] == "CeleryQueueDepthCritical"
    assert pages[-1]["channel"] == "page"
    assert pages[-1]["runbook_url"].endswith("/CeleryQueueDepthCritical.md")
    logged = [orjson.loads(line) for line in pages_log.read_text().splitlines()]
    assert logged[-1]["labels"]["queue_name"] == "images"
    wait_for(
        lambda: "runbook: http://127.0.0.1:9095/runbooks/CeleryQueueDepthCritical.md"
        in output.read_text(),
        timeout=30, message="the page line in the pager's log",
    )  # fmt: skip
    line = next(x for x in output.read_text().splitlines() if "CeleryQueueDepthCritical" in x)
    assert "PAGE FIRING CeleryQueueDepthCritical [critical] queue_name=images" in line


def test_a_malformed_notification_is_refused_with_the_reason(
    pager: tuple[str, Path, Path],
) -> None:
    url, _, _ = pager
    before = len(httpx.get(f"{url}/pages").json())
    response = httpx.post(f"{url}/page", content=b"{not json")
    assert response.status_code == 400 and "not JSON" in response.text
    response = httpx.post(f"{url}/page", content=b'{"alerts": 3}')
    assert response.status_code == 400 and "'alerts' list" in response.text
    assert len(httpx.get(f"{url}/pages").json()) == before


def test_runbooks_are_served_and_nothing_else(pager: tuple[str, Path, Path]) -> None:
    url, _, _ = pager
    response = httpx.get(f"{url}/runbooks/CeleryQueueNoConsumer.md")
    assert response.status_code == 200
    assert response.text == (RUNBOOKS_DIR / "CeleryQueueNoConsumer.md").read_text()
    assert httpx.get(f"{url}/runbooks/NoSuchAlert.md").status_code == 404
    assert httpx.get(f"{url}/runbooks/..%2Fpyproject.toml").status_code == 404
