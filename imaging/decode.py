"""Image bytes -> RGB pixels, refusing anything unsafe before decoding it.

Order of checks, cheapest first, so that hostile input fails fast:
1. byte count; 2. the format from the file's magic bytes (JPEG, PNG, WebP only;
Pillow is only ever offered those three decoders); 3. width, height and pixel
count from the header, before any pixel is decoded (a 20000x20000 PNG bomb is
refused here, from a few hundred bytes of header); 4. the full decode, whose
failures (truncated, corrupt data) become ``ImageUnreadable``. Then the EXIF
orientation is applied, so that every stage sees the picture upright.
Error messages carry sizes and formats only, never image content.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from domain.errors import ImageTooLarge, ImageUnreadable, UnsupportedImageFormat

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")

# Magic bytes of the allowed formats, and of common ones we name when refusing them.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 50_000_000  # a 48 MP phone photo fits; 20000x20000 does not
    max_side: int = 12_000


def sniff_format(data: bytes) -> str | None:
    """The container format named by the first bytes, or None if unknown."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Decode JPEG/PNG/WebP bytes to an upright RGB ``uint8`` array of shape (H, W, 3).

    Raises ``ImageUnreadable`` (empty, truncated, corrupt), ``ImageTooLarge``
    (bytes, sides or pixels over ``limits``, decompression bombs) or
    ``UnsupportedImageFormat`` (anything but JPEG, PNG, WebP).
    """
    if not data:
        raise ImageUnreadable("image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"image is {len(data)} bytes, limit {limits.max_bytes}")
    kind = sniff_format(data)
    if kind not in ALLOWED_FORMATS:
        what = f"{kind} images are" if kind else "the data is not an image in a known format;"
        raise UnsupportedImageFormat(f"{what} not accepted; allowed: JPEG, PNG, WebP")
    try:
        image = Image.open(io.BytesIO(data), formats=[kind])  # reads the header only
        _check_size(image.size, kind, limits)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        rgb = image if image.mode == "RGB" else image.convert("RGB")
    except Image.DecompressionBombError as bomb:  # Pillow's guard, run while reading the header
        raise ImageTooLarge(f"{kind} image refused as a decompression bomb: {bomb}") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.UnidentifiedImageError) as error:
        raise ImageUnreadable(
            f"{kind} image cannot be decoded ({type(error).__name__}: corrupt or truncated data)"
        ) from None
    return np.asarray(rgb)


def _check_size(size: tuple[int, int], kind: str, limits: ImageLimits) -> None:
    width, height = size
    if width * height > limits.max_pixels or max(width, height) > limits.max_side:
        raise ImageTooLarge(
            f"{kind} image is {width}x{height} ({width * height / 1e6:.1f} MP); limits are "
            f"{limits.max_pixels / 1e6:.0f} MP and {limits.max_side} px per side"
        )
