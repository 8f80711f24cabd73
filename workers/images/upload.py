"""Accept an upload: store the bytes, create the record, queue the workflow. Returns at once."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import BinaryIO

from celery import Celery

from workers.config import WorkerSettings
from workers.db import session_scope
from workers.images.models import Image
from workers.images.store import ObjectStore
from workers.queues import IMAGES

# The store refuses an upload this many times over the image limit outright; anything smaller
# is kept so that the workflow can reject it with a reason and nothing is lost.
HARD_LIMIT_FACTOR = 4


def submit(
    stream: BinaryIO,
    original_name: str,
    settings: WorkerSettings,
    priority: int | None = None,
    app: Celery | None = None,
) -> str:
    """``app`` is any Celery client of the fleet's broker; by default the fleet's own app."""
    if app is None:
        from workers.app import app

    image_id = uuid.uuid4().hex
    suffix = Path(original_name).suffix.lower()[:8]
    key = f"uploads/{image_id}{suffix}"
    store = ObjectStore(settings.effective_object_store_dir)
    size = store.put_stream(key, stream, settings.image_max_bytes * HARD_LIMIT_FACTOR)
    with session_scope(settings.effective_database_url) as session:
        session.add(
            Image(id=image_id, object_key=key, original_name=original_name, size_bytes=size)
        )
    options = {"priority": priority} if priority is not None else {}
    app.send_task("images.process", args=[image_id], queue=IMAGES, **options)
    return image_id


def submit_file(path: Path, settings: WorkerSettings, app: Celery | None = None) -> str:
    with path.open("rb") as stream:
        return submit(stream, path.name, settings, app=app)
