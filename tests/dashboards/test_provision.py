"""`fleetops dashboards provision` against a STAND-IN FOR GRAFANA (tests/dashboards/
grafana_standin.py): Grafana cannot be installed here, so a local HTTP server that speaks the
same API records every call grafana-client makes; the tests assert the exact payloads,
idempotency and the errors a person sees."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from dashboards.build import build_all, render
from dashboards.cli import group
from dashboards.config import DATASOURCE_NAME, DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID, Uid
from dashboards.provision import COMMIT_MESSAGE
from fleetops.fleet.spec import free_port
from tests.dashboards.grafana_standin import GrafanaStandIn

runner = CliRunner()
PROMETHEUS_URL = "http://prometheus.internal:9090"


@pytest.fixture
def grafana() -> Iterator[GrafanaStandIn]:
    standin = GrafanaStandIn().start()
    yield standin
    standin.stop()


def provision(url: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(
        group,
        ["provision", "--grafana-url", url, "--prometheus-url", PROMETHEUS_URL, *args],
        env={"FLEETOPS_GRAFANA_TOKEN": None},
    )
    return result.exit_code, result.output


def with_token(grafana: GrafanaStandIn, *args: str) -> tuple[int, str]:
    return provision(grafana.url, "--token", grafana.token, *args)


def expected_dashboard(name: str) -> dict:
    dashboard = json.loads(render(build_all()[name]))
    dashboard["templating"]["list"][0]["current"] = {
        "text": DATASOURCE_NAME,
        "value": DATASOURCE_UID,
    }
    return dashboard


def test_first_run_creates_folder_datasource_and_every_dashboard(
    grafana: GrafanaStandIn,
) -> None:
    code, output = with_token(grafana)
    assert code == 0, output

    calls = [(c.method, c.path) for c in grafana.calls]
    assert calls[:5] == [
        ("GET", "/api/health"),
        ("GET", f"/api/folders/{FOLDER_UID}"),
        ("POST", "/api/folders"),
        ("GET", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("POST", "/api/datasources"),
    ]
    names = list(build_all())
    for index, uid in enumerate(build_all()[name].uid for name in names):
        assert calls[5 + 2 * index : 7 + 2 * index] == [
            ("GET", f"/api/dashboards/uid/{uid}"),
            ("POST", "/api/dashboards/db"),
        ]
    assert len(calls) == 5 + 2 * len(names)

    assert all(c.authorization == f"Bearer {grafana.token}" for c in grafana.calls[1:])
    writes = grafana.writes()
    assert writes[0].body == {"title": FOLDER_TITLE, "uid": FOLDER_UID}
    assert writes[1].body == {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": "prometheus",
        "access": "proxy",
        "url": PROMETHEUS_URL,
        "isDefault": False,
        "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
    }
    for name, call in zip(names, writes[2:], strict=True):
        assert call.body == {
            "dashboard": {**expected_dashboard(name), "id": None},
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": COMMIT_MESSAGE,
        }
    assert set(grafana.dashboards) == {uid.value for uid in Uid}
    assert output.count("created") == 2 + len(names)


def test_second_run_changes_nothing(grafana: GrafanaStandIn) -> None:
    assert with_token(grafana)[0] == 0
    grafana.calls.clear()

    code, output = with_token(grafana)

    assert code == 0, output
    assert grafana.writes() == []
    assert "created" not in output and "updated" not in output
    assert output.count("unchanged") == 2 + len(build_all())


def test_drift_is_put_back(grafana: GrafanaStandIn) -> None:
    assert with_token(grafana)[0] == 0
    grafana.folders[FOLDER_UID]["title"] = "Renamed by hand"
    grafana.dashboards[Uid.QUEUE]["dashboard"]["title"] = "Edited in the UI"
    grafana.calls.clear()

    code, output = with_token(grafana, "--prometheus-url", "http://prometheus.new:9090")

    assert code == 0, output
    writes = [(c.method, c.path) for c in grafana.writes()]
    assert writes == [
        ("PUT", f"/api/folders/{FOLDER_UID}"),
        ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("POST", "/api/dashboards/db"),
    ]
    folder_put, datasource_put, dashboard_post = grafana.writes()
    assert folder_put.body == {"title": FOLDER_TITLE, "overwrite": True}
    assert datasource_put.body["url"] == "http://prometheus.new:9090"
    assert dashboard_post.body["dashboard"]["uid"] == Uid.QUEUE
    assert grafana.dashboards[Uid.QUEUE]["dashboard"]["title"] == "Fleetops / Queue"


def test_basic_auth(grafana: GrafanaStandIn) -> None:
    code, output = provision(grafana.url, "--user", grafana.user, "--password", grafana.password)
    assert code == 0, output
    basic = base64.b64encode(f"{grafana.user}:{grafana.password}".encode()).decode()
    assert {c.authorization for c in grafana.calls[1:]} == {f"Basic {basic}"}


def test_bad_credentials(grafana: GrafanaStandIn) -> None:
    code, output = provision(grafana.url, "--token", "wrong-token")
    assert code == 1
    assert "refused the credentials" in output and "401" in output
    assert grafana.writes() == []


def test_missing_or_mixed_credentials(grafana: GrafanaStandIn) -> None:
    code, output = provision(grafana.url)
    assert code == 1 and "no Grafana credentials" in output
    code, output = provision(grafana.url, "--user", "admin")
    assert code == 1 and "--user and --password go together" in output
    code, output = provision(grafana.url, "--token", "t", "--user", "u", "--password", "p")
    assert code == 1 and "not both" in output
    assert grafana.calls == []


def test_permission_denied(grafana: GrafanaStandIn) -> None:
    grafana.mode = "viewer"
    code, output = with_token(grafana)
    assert code == 1
    assert "403 Forbidden" in output and "creating folder" in output


def test_grafana_down() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code, output = provision(url, "--token", "t")
    assert code == 1
    assert f"cannot reach Grafana at {url}" in output
    assert "connection refused (nothing listens there)" in output


def test_wrong_url(grafana: GrafanaStandIn) -> None:
    grafana.mode = "not-grafana"
    code, output = with_token(grafana)
    assert code == 1
    assert "does not look like Grafana" in output and "/api/health answered 404" in output

    code, output = provision("grafana:3000", "--token", "t")
    assert code == 1 and "is not an http(s) URL" in output


def test_grafana_failing(grafana: GrafanaStandIn) -> None:
    grafana.mode = "broken"
    code, output = with_token(grafana)
    assert code == 1
    assert f"Grafana at {grafana.url} failed while reading folder" in output
    assert "Internal Server Error" in output
