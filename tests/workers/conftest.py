"""A client of the fleet inside the test process: uploads, reads records, browses dead letters."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery import Celery

from tests.servers import REPO
from workers import deadletter
from workers.client import client_app
from workers.config import WorkerSettings
from workers.db import session_scope
from workers.images.models import Image


@dataclass
class FleetClient:
    settings: WorkerSettings
    app: Celery

    def images(self) -> dict[str, Image]:
        with session_scope(self.settings.effective_database_url) as session:
            return {image.id: image for image in session.query(Image)}

    def stored(self, key: str) -> Path:
        return self.settings.effective_object_store_dir / key

    def dead_letters(self) -> list[deadletter.DeadLetter]:
        return deadletter.entries(self.app)


@pytest.fixture
def fleet_client(fleet_env: dict[str, str]) -> Iterator[FleetClient]:
    # The limit only when the test sets one: otherwise WorkerSettings' own default, not a copy.
    limit = fleet_env.get("FLEETOPS_IMAGE_MAX_BYTES")
    settings = WorkerSettings(
        broker_url=fleet_env["FLEETOPS_BROKER_URL"],
        data_dir=Path(fleet_env["FLEETOPS_DATA_DIR"]),
        database_url=fleet_env["FLEETOPS_DATABASE_URL"],
        **({"image_max_bytes": int(limit)} if limit else {}),
    )
    app = client_app(settings.broker_url, "fleetops-test-client")
    yield FleetClient(settings, app)
    app.close()


def fleetops(
    env: dict[str, str], *args: str, input_text: str | None = None
) -> subprocess.CompletedProcess:
    """Run the real CLI, as an operator would."""
    merged = {k: v for k, v in os.environ.items() if not k.startswith("FLEETOPS_")}
    # Only what the test sets: never the addresses of a fleet running from the repository.
    merged["FLEETOPS_FLEET"] = "none"
    merged.update(env)
    return subprocess.run(
        [sys.executable, "-m", "fleetops", *args], env=merged, cwd=REPO, capture_output=True,
        text=True, timeout=120, input=input_text,
    )  # fmt: skip
