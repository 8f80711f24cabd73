"""The image workflow end to end, through a real Redis and a real prefork worker."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from PIL import Image

from tests.helpers import wait_for
from tests.workers.conftest import FleetClient, fleetops
from workers.images import samples
from workers.images.upload import submit


def upload(client: FleetClient, data: bytes, name: str = "photo.jpg") -> str:
    return submit(io.BytesIO(data), name, client.settings, app=client.app)


def wait_status(client: FleetClient, ids: list[str], status: str) -> dict:
    def reached():  # type: ignore[no-untyped-def]
        images = client.images()
        return images if all(images[i].status == status for i in ids) else None

    return wait_for(reached, timeout=90, message=f"images {status}")


def test_upload_gets_thumbnails_checksum_dimensions_and_duplicate_flag(fleet_client, start_worker):
    start_worker(queues="images", concurrency=2)
    original_bytes = samples.jpeg(11, 1600, 1200)
    original_id = upload(fleet_client, original_bytes)
    wait_status(fleet_client, [original_id], "done")
    # The copy arrives after the original is done, as a second user would upload it.
    copy_id = upload(fleet_client, samples.reencoded(original_bytes), "copy.jpg")
    images = wait_status(fleet_client, [original_id, copy_id], "done")

    original = images[original_id]
    source = fleet_client.stored(original.object_key)
    assert original.checksum_sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert (original.width, original.height) == (1600, 1200)
    assert original.duplicate_of is None
    for size in (150, 300, 600):
        with Image.open(fleet_client.stored(original.thumbnails[str(size)])) as thumb:
            assert max(thumb.size) == size
            assert abs(thumb.size[1] - size * 3 / 4) <= 1  # aspect ratio kept
    copy = images[copy_id]
    assert copy.checksum_sha256 != original.checksum_sha256
    assert copy.duplicate_of == original_id


@pytest.fixture
def small_limit_env(fleet_env: dict[str, str]) -> dict[str, str]:
    fleet_env["FLEETOPS_IMAGE_MAX_BYTES"] = "50000"
    return fleet_env


def test_bad_uploads_fail_fast_with_reason_and_land_in_dead_letter_queue(
    small_limit_env, fleet_client, start_worker
):
    worker = start_worker(queues="images", concurrency=2)
    ids = {
        "corrupt": upload(fleet_client, samples.corrupt(5), "cut.jpg"),
        "not_image": upload(fleet_client, samples.not_an_image(5), "notes.jpg"),
        "bomb": upload(fleet_client, samples.bomb(), "bomb.png"),
        "oversized": upload(fleet_client, samples.jpeg(5, 2000, 1500, quality=98), "big.jpg"),
    }
    images = wait_status(fleet_client, list(ids.values()), "rejected")
    assert images[ids["corrupt"]].reason.startswith("corrupt image")
    assert images[ids["not_image"]].reason.startswith("not an image")
    assert images[ids["bomb"]].reason.startswith("decompression bomb")
    assert images[ids["oversized"]].reason.startswith("oversized")

    letters = wait_for(
        lambda: (found := fleet_client.dead_letters()) and len(found) >= 4 and found,
        timeout=30, message="four dead letters",
    )  # fmt: skip
    assert len(letters) == 4
    assert {tuple(letter.args) for letter in letters} == {(i,) for i in ids.values()}
    for letter in letters:
        assert letter.name == "images.process"
        assert letter.queue == "images"
        assert letter.exception == "InvalidImage"
        assert letter.retries == 0  # bad input is never retried
        assert "Traceback" in letter.traceback
    assert "Retry in" not in worker.log()
    # Listing through the CLI shows the same entries and removes none.
    listed = fleetops(small_limit_env, "dlq", "list", "--json")
    assert {json.loads(line)["id"] for line in listed.stdout.splitlines()} == {
        letter.id for letter in letters
    }
    assert len(fleet_client.dead_letters()) == 4


def test_requeue_from_dead_letter_queue_processes_the_fixed_upload(
    fleet_env, fleet_client, start_worker
):
    start_worker(queues="images", concurrency=1)
    image_id = upload(fleet_client, samples.corrupt(9), "cut.jpg")
    wait_for(fleet_client.dead_letters, timeout=60, message="the corrupt upload dead-lettered")
    # Someone restores the original file, then requeues: the workflow now completes.
    key = fleet_client.images()[image_id].object_key
    fleet_client.stored(key).write_bytes(samples.jpeg(9, 640, 480))

    dry = fleetops(fleet_env, "dlq", "requeue", "--all", "--dry-run")
    assert dry.returncode == 0 and "would requeue" in dry.stdout
    assert len(fleet_client.dead_letters()) == 1  # a dry run changes nothing
    unconfirmed = fleetops(fleet_env, "dlq", "requeue", "--all", input_text="n\n")
    assert unconfirmed.returncode != 0
    assert len(fleet_client.dead_letters()) == 1
    done = fleetops(fleet_env, "dlq", "requeue", "--all", "--yes")
    assert done.returncode == 0, done.stderr
    assert fleet_client.dead_letters() == []
    wait_status(fleet_client, [image_id], "done")
