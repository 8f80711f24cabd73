"""Three thumbnails (150/300/600) of a 5 MB 4000x3000 JPEG: a naive Pillow resize side by side
with ours (workers/images/processing.py), in one run, on one core. Prints the ratio.

    uv run python bench/thumbnails.py [--rounds 10]

ADR-0012 measured 2-3 s for this step; the goal is under 150 ms per image.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from workers.images import processing, samples

SIZES = (150, 300, 600)


def five_megabyte_jpeg(path: Path) -> None:
    """A photo-like 4000x3000 JPEG of about 5 MB: shapes plus sensor-like noise."""
    base = samples.picture(7, 4000, 3000)
    noise = Image.effect_noise((4000, 3000), 40).convert("RGB")
    Image.blend(base, noise, 0.25).save(path, "JPEG", quality=93)


def naive(path: Path) -> dict[int, bytes]:
    out = {}
    for size in SIZES:
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = size / max(image.size)
            resized = image.resize(
                (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
            )
            buffer = io.BytesIO()
            resized.save(buffer, "JPEG", quality=processing.JPEG_QUALITY)
            out[size] = buffer.getvalue()
    return out


def measure(fn, path: Path, rounds: int) -> list[float]:  # type: ignore[no-untyped-def]
    fn(path)  # warm caches and imports
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the goal says
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.jpg"
        five_megabyte_jpeg(path)
        size_mb = path.stat().st_size / 1e6
        ours = measure(processing.thumbnails, path, args.rounds)
        peer = measure(naive, path, args.rounds)
    med_ours, med_peer = statistics.median(ours), statistics.median(peer)
    print(f"input: 4000x3000 JPEG, {size_mb:.1f} MB; {args.rounds} rounds; median per image")
    print(f"naive Pillow resize : {med_peer * 1000:8.1f} ms")
    print(f"fleetops thumbnails : {med_ours * 1000:8.1f} ms")
    print(f"ratio               : {med_peer / med_ours:8.1f}x faster")


if __name__ == "__main__":
    main()
