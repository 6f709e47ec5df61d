"""Image bytes -> upright 8-bit RGB pixels, refusing anything unsafe before decoding it.

``decode_image`` is the one decode of untrusted bytes (ingest, the quality
check, the biometric stages, the credential portrait): it runs
``decode_pixels`` in a separate decoding process under a CPU-time and memory
budget (``imaging.bounded``), so no file, however crafted, costs more than
``DecodeBudget`` or crashes the caller.

``decode_pixels`` checks, cheapest first: 1. byte count; 2. the format from
the file's magic bytes (JPEG, PNG, WebP only; Pillow is only ever offered
those three decoders); 3. the container walked before decoding
(``imaging.headers``: sizes, scans, markers, chunks, animation, pixel budgets
per bit depth and band count); 4. the decode itself, a large JPEG at a reduced
scale, whose failures become ``ImageUnreadable``. Then:

- 16-bit samples are scaled to 8 bits (not clipped: a 16-bit grey PNG keeps
  its picture instead of turning white);
- transparency is composited over white: what is judged is what a viewer
  sees, and content hidden under alpha 0 is gone (a face under a fully
  transparent layer becomes a white image, then QUALITY_NO_FACE);
- the EXIF orientation is applied, so every stage sees the picture upright.

Error messages carry sizes and formats only, never image content.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from domain.errors import ImageTooLarge, ImageUnreadable, UnsupportedImageFormat

from . import bounded
from .headers import ImageHeader, check_dimensions, read_header
from .limits import DEFAULT_BUDGET, DEFAULT_LIMITS, DecodeBudget, ImageLimits

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
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
)

# EXIF orientation -> the transpose that makes the picture upright.
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_COMPOSITE_ROWS = 512  # rows composited at a time: temporaries stay small


def sniff_format(data: bytes) -> str | None:
    """The container format named by the first bytes, or None if unknown."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        return "HEIF/AVIF"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def decode_image(
    data: bytes, limits: ImageLimits = DEFAULT_LIMITS, budget: DecodeBudget = DEFAULT_BUDGET
) -> np.ndarray:
    """Decode JPEG/PNG/WebP bytes to an upright RGB ``uint8`` array of shape (H, W, 3).

    Runs in a decoding process under ``budget``. Raises ``ImageUnreadable``
    (empty, truncated, corrupt), ``ImageTooLarge`` (bytes, sides, pixels,
    scans or metadata over ``limits``, decompression bombs, the budget spent)
    or ``UnsupportedImageFormat`` (anything but still JPEG, PNG, WebP).
    """
    check_container(data, limits)  # cheap refusals need no process
    return bounded.decode(data, limits, budget).pixels


def check_container(data: bytes, limits: ImageLimits) -> str:
    """Byte count and format by magic bytes; returns the format."""
    if not data:
        raise ImageUnreadable("image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"image is {len(data)} bytes, limit {limits.max_bytes}")
    kind = sniff_format(data)
    if kind not in ALLOWED_FORMATS:
        what = f"{kind} images are" if kind else "the data is not an image in a known format;"
        raise UnsupportedImageFormat(f"{what} not accepted; allowed: JPEG, PNG, WebP")
    return kind


def decode_pixels(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """``decode_image`` without the decoding process: call it only inside one."""
    kind = check_container(data, limits)
    header = read_header(kind, data, limits)
    try:
        image = Image.open(io.BytesIO(data), formats=[kind])  # reads the header only
        if image.size != (header.width, header.height):
            raise ImageUnreadable(f"{kind} image has inconsistent size fields")
        if kind == "JPEG":
            _reduce_jpeg(image, header, limits)
        image.load()
        orientation = _orientation(image)
        rgb = _to_rgb8(image)
        del image
        if orientation in _ORIENTATION:
            rgb = np.ascontiguousarray(
                np.asarray(Image.fromarray(rgb).transpose(_ORIENTATION[orientation]))
            )
    except Image.DecompressionBombError as bomb:  # Pillow's own guard
        raise ImageTooLarge(f"{kind} image refused as a decompression bomb: {bomb}") from None
    except MemoryError:
        raise ImageTooLarge(f"{kind} image needs more memory than its budget") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.UnidentifiedImageError) as error:
        raise ImageUnreadable(
            f"{kind} image cannot be decoded ({type(error).__name__}: corrupt or truncated data)"
        ) from None
    return rgb


def _reduce_jpeg(image: Image.Image, header: ImageHeader, limits: ImageLimits) -> None:
    """Have the JPEG decoder itself scale by 1/2, 1/4 or 1/8 to fit the pixel budgets."""
    for scale in (1, 2, 4, 8):
        width, height = -(-header.width // scale), -(-header.height // scale)
        if width * height <= limits.max_pixels and header.decoded_bytes(scale) <= (
            limits.max_decoded_bytes
        ):
            break
    else:
        check_dimensions(header, limits)  # over max_jpeg_pixels: refused with the sizes
        raise ImageTooLarge(f"JPEG image of {header.width}x{header.height} is too large")
    if scale > 1:
        image.draft(None, (header.width // scale, header.height // scale))


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # broken EXIF is metadata we drop anyway: no orientation
        return 1
    return value if isinstance(value, int) else 1


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """8-bit RGB: 16-bit samples scaled, palettes expanded, transparency over white."""
    if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit grey PNG
        grey16 = np.asarray(image)
        rgb = np.repeat((grey16 >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
        transparent = image.info.get("transparency")
        if isinstance(transparent, int):  # a tRNS grey level: transparent, so white
            rgb[grey16 == transparent] = 255
        return rgb
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or ("transparency" in image.info)
    if not has_alpha:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return np.asarray(rgb)
    rgba = np.asarray(image if image.mode == "RGBA" else image.convert("RGBA"))
    out = np.empty((*rgba.shape[:2], 3), np.uint8)
    for top in range(0, rgba.shape[0], _COMPOSITE_ROWS):
        block = rgba[top : top + _COMPOSITE_ROWS].astype(np.uint16)
        alpha = block[:, :, 3:4]
        # colour x alpha + white x (1 - alpha), rounded
        out[top : top + _COMPOSITE_ROWS] = (
            block[:, :, :3] * alpha + 255 * (255 - alpha) + 127
        ) // 255
    return out
