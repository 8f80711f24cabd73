"""The committed JSON is exactly what the builders produce, and `build --check` says so."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from dashboards.build import GENERATED_DIR, compare, render_all
from dashboards.cli import group

runner = CliRunner()


def test_committed_json_equals_the_build() -> None:
    differences = compare(GENERATED_DIR)
    assert not differences, "\n".join(d.diff for d in differences) + (
        "\nrun `fleetops dashboards build` and commit dashboards/generated/"
    )


def test_build_writes_every_dashboard(tmp_path: Path) -> None:
    result = runner.invoke(group, ["build", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(render_all())
    assert runner.invoke(group, ["build", "--check", "--output", str(tmp_path)]).exit_code == 0


def test_check_fails_on_any_difference(tmp_path: Path) -> None:
    copy = tmp_path / "generated"
    shutil.copytree(GENERATED_DIR, copy)
    edited = copy / "queue.json"
    edited.write_text(edited.read_text().replace('"Depth"', '"Depth (edited by hand)"', 1))
    (copy / "stale.json").write_text("{}\n")
    (copy / "worker.json").unlink()

    result = runner.invoke(group, ["build", "--check", "--output", str(copy)])

    assert result.exit_code == 1
    assert "Depth (edited by hand)" in result.output
    assert "worker.json is missing" in result.output
    assert "stale.json is not built by any dashboard" in result.output
    assert "3 file(s) differ" in result.output


def test_runbook_base_url_option_changes_links(tmp_path: Path) -> None:
    result = runner.invoke(
        group,
        ["build", "--output", str(tmp_path), "--runbook-base-url", "https://runbooks.example/"],
    )
    assert result.exit_code == 0, result.output
    overview = (tmp_path / "overview.json").read_text()
    assert "https://runbooks.example/CeleryQueueDepthCritical.md" in overview


def test_file_provisioning_matches_the_api_provisioning() -> None:
    import yaml

    from dashboards.config import DATASOURCE_NAME, DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID

    provisioning = GENERATED_DIR.parent / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources.yaml").read_text())["datasources"][0]
    assert (datasource["uid"], datasource["name"], datasource["type"]) == (
        DATASOURCE_UID,
        DATASOURCE_NAME,
        "prometheus",
    )
    provider = yaml.safe_load((provisioning / "dashboards.yaml").read_text())["providers"][0]
    assert (provider["folder"], provider["folderUid"], provider["type"]) == (
        FOLDER_TITLE,
        FOLDER_UID,
        "file",
    )
