"""Fixtures: the test run's encryption keys, configured the way production does it.

``test_keys`` (session, autouse) puts a fresh payload key ring and blob master
key ring into ``IDFLOW_PAYLOAD_KEYS`` / ``IDFLOW_BLOB_KEYS`` for the whole run,
so that every client, worker subprocess and codec server of the run shares
them. Tests that need other keys override the variables with ``monkeypatch``.

``malformed_image_corpus`` (session): hostile and broken images, each with the
reason code it must end in (``malformed_images``); ``hostile_image_corpus``
(session): the larger corpus of ``tests.support.hostile_images``.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image

from domain.reasons import ReasonCode
from security.keys import new_key

from .hostile_images import HostileImage, hostile_images

TEST_KEY_VARIABLES = {
    "IDFLOW_PAYLOAD_KEYS": f"test-payload-1:{new_key()}",
    "IDFLOW_BLOB_KEYS": f"test-blob-1:{new_key()}",
}


@pytest.fixture(scope="session", autouse=True)
def test_keys() -> Iterator[dict[str, str]]:
    saved = {name: os.environ.get(name) for name in TEST_KEY_VARIABLES}
    os.environ.update(TEST_KEY_VARIABLES)
    try:
        yield dict(TEST_KEY_VARIABLES)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- A corpus of hostile and malformed images ---------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, idat: bytes, colour_type: int = 0) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _png_bomb(width: int, height: int) -> bytes:
    """A real grey PNG of zeros: a few hundred KB that would inflate to width*height bytes."""
    packer = zlib.compressobj(9)
    row = bytes(width + 1)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return _png(width, height, idat)


def _jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF0..SOF3) claiming another size."""
    at = 2
    while jpeg[at] == 0xFF:
        marker, length = jpeg[at + 1], struct.unpack(">H", jpeg[at + 2 : at + 4])[0]
        if 0xC0 <= marker <= 0xC3:
            return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]
        at += 2 + length
    raise ValueError("no frame header before the first non-marker byte")


def _encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def malformed_images(photo: Callable[[str], bytes]) -> dict[str, tuple[bytes, ReasonCode]]:
    """name -> (bytes, the reason code the input must end in). Built from real photos."""
    jpeg = photo("obama.jpg")
    png = photo("astronaut.png")
    small = Image.open(io.BytesIO(png)).convert("RGB").resize((64, 64))
    webp = _encoded(small, "WEBP", quality=80)
    noise = random.Random(5).randbytes(4096)
    broken_crc = bytearray(png)
    broken_crc[png.find(b"IDAT") + 200] ^= 0xFF
    unreadable, too_large, unsupported = (
        ReasonCode.INPUT_UNREADABLE,
        ReasonCode.INPUT_TOO_LARGE,
        ReasonCode.INPUT_UNSUPPORTED_FORMAT,
    )
    return {
        "zero-size": (b"", unreadable),
        "random-bytes": (noise, unsupported),
        "random-bytes-after-jpeg-magic": (b"\xff\xd8\xff\xe0" + noise, unreadable),
        "truncated-jpeg": (jpeg[: len(jpeg) // 3], unreadable),
        "jpeg-header-only": (jpeg[:200], unreadable),
        "truncated-png": (png[: len(png) // 2], unreadable),
        "png-with-corrupt-idat": (bytes(broken_crc), unreadable),
        "truncated-webp": (webp[: len(webp) // 2], unreadable),
        "wrong-magic-png": (b"\x88" + png[1:], unsupported),
        "png-magic-jpeg-body": (b"\x89PNG\r\n\x1a\n" + jpeg[2:], unreadable),
        "huge-dimensions-png-header": (_png(100_000, 100_000, zlib.compress(bytes(64))), too_large),
        "huge-dimensions-jpeg-header": (_jpeg_with_size(jpeg, 60_000, 60_000), too_large),
        "png-decompression-bomb": (_png_bomb(8_000, 8_000), too_large),
        "over-byte-limit": (jpeg[:4] + bytes(26 * 1024 * 1024), too_large),
        "gif": (_encoded(small, "GIF"), unsupported),
        "gif-javascript-polyglot": (b"GIF89a/*\x00\x00*/=1;alert(document.domain)//", unsupported),
        "bmp": (_encoded(small, "BMP"), unsupported),
        "tiff": (_encoded(small, "TIFF"), unsupported),
        "pdf": (b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", unsupported),
        "svg": (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            unsupported,
        ),
        "heic-container": (
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + noise[:512],
            unsupported,
        ),
    }


@pytest.fixture(scope="session")
def hostile_image_corpus(photo: Callable[[str], bytes]) -> list[HostileImage]:
    """The hostile-image corpus (``tests.support.hostile_images``): 60+ files, each expected
    to end in its reason code or to decode cleanly within the decoding budget."""
    return hostile_images(photo)


@pytest.fixture(scope="session")
def malformed_image_corpus(photo: Callable[[str], bytes]) -> dict[str, tuple[bytes, ReasonCode]]:
    return malformed_images(photo)
