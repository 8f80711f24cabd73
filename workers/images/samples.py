"""Generated images for load and tests: distinct pictures, re-encoded copies, broken files."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw


def picture(seed: int, width: int = 1024, height: int = 768) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(width // 2), y0 + rng.randrange(height // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
    return image


def jpeg(seed: int, width: int = 1024, height: int = 768, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    picture(seed, width, height).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def reencoded(data: bytes, quality: int = 60) -> bytes:
    """The same picture saved again: different bytes and checksum, same perceptual hash."""
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(data)) as image:
        image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def corrupt(seed: int) -> bytes:
    """A JPEG cut short: the header reads, the picture does not."""
    data = jpeg(seed, 320, 240)
    return data[: len(data) // 3]


def not_an_image(seed: int) -> bytes:
    return random.Random(seed).randbytes(4096)


def bomb(width: int = 10_000, height: int = 8_000) -> bytes:
    """A tiny PNG that claims a huge bitmap."""
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()
