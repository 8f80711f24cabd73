"""Image work without Celery: validation, thumbnails, checksum, dimensions, perceptual hash.

Thumbnails decode the JPEG once at a reduced scale (DCT scaling through ``draft``) and make each
smaller size from the previous one; bench/thumbnails.py measures this against a naive resize.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import imagehash
from PIL import Image, ImageOps, UnidentifiedImageError

from workers.errors import PermanentError

THUMBNAIL_SIZES = (150, 300, 600)
JPEG_QUALITY = 85


class InvalidImage(PermanentError):
    """The upload is not an image we can process; the message says why."""


def validate(path: Path, max_bytes: int, max_pixels: int) -> tuple[int, int]:
    """Cheap checks from the header only; returns (width, height)."""
    size = path.stat().st_size
    if size > max_bytes:
        raise InvalidImage(f"oversized: {size} bytes is over the limit of {max_bytes} bytes")
    if size == 0:
        raise InvalidImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise InvalidImage(
                        f"decompression bomb: {width}x{height} = {width * height} pixels is over"
                        f" the limit of {max_pixels}"
                    )
                image.verify()
            # verify() does not read the pixel data; a cut-short JPEG only fails on decode.
            # Decoding at 1/8 scale reads every byte for a fraction of the full cost.
            with Image.open(path) as image:
                image.draft("RGB", (64, 64))
                image.load()
    except InvalidImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage("not an image: no known image format in the file") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"corrupt image: {exc}") from exc
    return width, height


def _decode_for(path: Path, largest: int, mode: str = "RGB") -> Image.Image:
    try:
        with Image.open(path) as image:
            # Lets libjpeg decode at 1/2, 1/4 or 1/8 scale: most of the speed-up.
            image.draft(mode, (largest, largest))
            image = ImageOps.exif_transpose(image)
            return image.convert(mode)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"corrupt image: {exc}") from exc


def thumbnails(path: Path, sizes: tuple[int, ...] = THUMBNAIL_SIZES) -> dict[int, bytes]:
    """JPEG thumbnails that fit in size x size boxes, keyed by size."""
    current = _decode_for(path, max(sizes))
    result: dict[int, bytes] = {}
    for size in sorted(sizes, reverse=True):
        current = current.copy()
        current.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
        buffer = io.BytesIO()
        current.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=False)
        result[size] = buffer.getvalue()
    return result


def sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def dimensions(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        transposed = image.getexif().get(0x0112) in (5, 6, 7, 8)
        width, height = image.size
    return (height, width) if transposed else (width, height)


def perceptual_hash(path: Path) -> str:
    return str(imagehash.phash(_decode_for(path, 256, mode="L")))


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()
