"""The image workflow: validate, then thumbnails, checksum, dimensions and perceptual hash in
parallel, then one update of the record with near-duplicates found."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from celery import chord, group
from sqlalchemy import select

from workers.app import app, settings
from workers.db import session_scope
from workers.images import processing
from workers.images.models import Image, ImageStatus
from workers.images.store import ObjectStore

log = logging.getLogger(__name__)


def _store() -> ObjectStore:
    return ObjectStore(settings.effective_object_store_dir)


def _source(image_id: str) -> Path:
    with session_scope(settings.effective_database_url) as session:
        record = session.get(Image, image_id)
        if record is None:
            raise processing.InvalidImage(f"no image record {image_id}")
        return _store().path(record.object_key)


def _reject(image_id: str, reason: str) -> None:
    with session_scope(settings.effective_database_url) as session:
        record = session.get(Image, image_id)
        if record is not None:
            record.status, record.reason = ImageStatus.REJECTED, reason


@app.task(name="images.process")
def process(image_id: str) -> str:
    path = _source(image_id)
    try:
        processing.validate(path, settings.image_max_bytes, settings.image_max_pixels)
    except processing.InvalidImage as exc:
        _reject(image_id, str(exc))
        raise
    steps = group(
        make_thumbnails.s(image_id),
        checksum.s(image_id),
        measure.s(image_id),
        fingerprint.s(image_id),
    )
    return chord(steps)(finalize.s(image_id)).id


def _guarded(image_id: str, step):  # type: ignore[no-untyped-def]
    try:
        return step(_source(image_id))
    except processing.InvalidImage as exc:
        _reject(image_id, str(exc))
        raise


@app.task(name="images.thumbnails")
def make_thumbnails(image_id: str) -> dict:
    store = _store()
    made = _guarded(image_id, processing.thumbnails)
    keys = {}
    for size, data in made.items():
        key = f"thumbnails/{image_id}/{size}.jpg"
        store.put_bytes(key, data)
        keys[str(size)] = key
    return {"thumbnails": keys}


@app.task(name="images.checksum")
def checksum(image_id: str) -> dict:
    return {"checksum_sha256": _guarded(image_id, processing.sha256)}


@app.task(name="images.dimensions")
def measure(image_id: str) -> dict:
    width, height = _guarded(image_id, processing.dimensions)
    return {"width": width, "height": height}


@app.task(name="images.phash")
def fingerprint(image_id: str) -> dict:
    return {"phash": _guarded(image_id, processing.perceptual_hash)}


@app.task(name="images.finalize")
def finalize(parts: list[dict], image_id: str) -> dict:
    merged: dict = {}
    for part in parts:
        merged.update(part)
    with session_scope(settings.effective_database_url) as session:
        record = session.get(Image, image_id)
        if record is None:
            raise processing.InvalidImage(f"no image record {image_id}")
        for key, value in merged.items():
            setattr(record, key, value)
        record.duplicate_of = _nearest_duplicate(session, record)
        record.status, record.reason = ImageStatus.DONE, None
        record.processed_at = datetime.now(UTC)
        return {"image_id": image_id, "duplicate_of": record.duplicate_of, **merged}


def _nearest_duplicate(session, record: Image) -> str | None:  # type: ignore[no-untyped-def]
    rows = session.execute(
        select(Image.id, Image.phash, Image.created_at)
        .where(Image.status == ImageStatus.DONE, Image.phash.is_not(None), Image.id != record.id)
        .order_by(Image.created_at)
    )
    best: tuple[int, str] | None = None
    for other_id, other_hash, _created in rows:
        distance = processing.hamming(record.phash, other_hash)
        if distance <= settings.image_duplicate_distance and (best is None or distance < best[0]):
            best = (distance, other_id)
    return best[1] if best else None
