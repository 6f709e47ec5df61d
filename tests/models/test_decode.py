"""Decoding refuses bad input with the right typed error, before any costly work."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from domain.errors import ImageTooLarge, ImageUnreadable, UnsupportedImageFormat
from domain.reasons import ReasonCode
from imaging.limits import DEFAULT_LIMITS
from models.face import ImageLimits, decode_image


def png_bomb(side: int = 20000) -> bytes:
    """A real, complete PNG of side x side black pixels (1-bit grey): 50 MB of pixels, ~50 KB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def refused(data: bytes, error: type[Exception], limits: ImageLimits = DEFAULT_LIMITS):
    with pytest.raises(error) as raised:
        decode_image(data, limits)
    return raised.value


def test_png_bomb_is_refused_from_its_header(photo):
    bomb = png_bomb()
    assert len(bomb) < 200_000
    error = refused(bomb, ImageTooLarge)
    assert "400000000 pixels" in str(error)
    assert error.reason is ReasonCode.INPUT_TOO_LARGE


def test_zero_bytes_are_unreadable():
    error = refused(b"", ImageUnreadable)
    assert error.reason is ReasonCode.INPUT_UNREADABLE


def test_truncated_jpeg_is_unreadable(photo):
    data = photo("obama.jpg")
    refused(data[: len(data) // 3], ImageUnreadable)


def test_jpeg_with_garbage_after_its_magic_is_unreadable(photo):
    data = photo("obama.jpg")
    corrupt = data[:3] + bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8))
    refused(corrupt, ImageUnreadable)


def test_text_file_named_jpg_is_an_unsupported_format(tmp_path):
    fake = tmp_path / "selfie.jpg"
    fake.write_text("this is not a photo\n" * 50)
    error = refused(fake.read_bytes(), UnsupportedImageFormat)
    assert error.reason is ReasonCode.INPUT_UNSUPPORTED_FORMAT


def test_real_image_in_a_refused_format_names_it():
    gif = encode(Image.new("RGB", (64, 64), "white"), "GIF")
    assert "GIF" in str(refused(gif, UnsupportedImageFormat))


def test_byte_and_pixel_limits(photo):
    data = photo("obama.jpg")  # 910x1137
    refused(data, ImageTooLarge, ImageLimits(max_bytes=len(data) - 1))
    # Sizes come from the header: the refusal names them, nothing was decoded.
    assert "910x1137" in str(refused(data, ImageTooLarge, ImageLimits(max_jpeg_pixels=1_000_000)))
    assert "910x1137" in str(refused(data, ImageTooLarge, ImageLimits(max_side=1000)))
    png = photo("astronaut.png")  # 512x512
    refused(png, ImageTooLarge, ImageLimits(max_pixels=512 * 512 - 1))
    assert decode_image(data, ImageLimits(max_bytes=len(data), max_pixels=910 * 1137)).shape == (
        1137,
        910,
        3,
    )


def test_a_jpeg_over_the_pixel_budget_is_decoded_at_a_reduced_scale(photo):
    data = photo("obama.jpg")  # 910x1137: 1.03 MP
    assert decode_image(data, ImageLimits(max_pixels=300_000)).shape == (569, 455, 3)  # 1/2
    assert decode_image(data, ImageLimits(max_pixels=200_000)).shape == (285, 228, 3)  # 1/4


def test_allowed_formats_decode_to_the_same_rgb(photo):
    png = photo("astronaut.png")
    reference = decode_image(png)
    assert reference.dtype == np.uint8 and reference.shape == (512, 512, 3)
    lossless_webp = encode(Image.fromarray(reference), "WEBP", lossless=True)
    assert np.array_equal(decode_image(lossless_webp), reference)
    grey_png = encode(Image.fromarray(reference).convert("L"), "PNG")
    assert decode_image(grey_png).shape == (512, 512, 3)


def test_exif_orientation_is_applied(photo):
    upright = decode_image(photo("astronaut.png"))
    # Stored turned 90 degrees counter-clockwise, with the EXIF tag that says to turn it back (6).
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encode(stored, "JPEG", quality=95, exif=exif))
    assert decoded.shape == upright.shape
    assert np.abs(decoded.astype(int) - upright.astype(int)).mean() < 6
