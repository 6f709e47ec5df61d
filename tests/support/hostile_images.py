"""A corpus of hostile, broken and awkward images, generated from real photos.

Each entry names the reason code its image must end in, or ``None`` for an
image that must decode cleanly (within the decoding budget) to upright RGB.
Families: scan bombs and other decoding-cost attacks, decompression bombs
(huge dimensions, 16-bit RGBA), marker and chunk floods, truncated and
corrupt files, wrong formats and polyglots, animation, and legitimate but
unusual images (CMYK, palette, 16-bit, alpha, EXIF orientation oddities).

Write it to a folder (one file per entry plus ``manifest.json``):

    python -m tests.support.hostile_images OUTDIR [PHOTO_DIR]
"""

from __future__ import annotations

import functools
import io
import json
import random
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from domain.reasons import ReasonCode

UNREADABLE = ReasonCode.INPUT_UNREADABLE
TOO_LARGE = ReasonCode.INPUT_TOO_LARGE
UNSUPPORTED = ReasonCode.INPUT_UNSUPPORTED_FORMAT


@dataclass(frozen=True)
class HostileImage:
    name: str
    data: bytes
    expected: ReasonCode | None  # None: decodes cleanly
    family: str


# --- Building blocks -----------------------------------------------------------------


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_file(
    width: int, height: int, idat: bytes, colour_type: int = 0, bits: int = 8, extra: bytes = b""
) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bits, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + extra
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png_of_zeros(width: int, height: int, colour_type: int = 0, bits: int = 8) -> bytes:
    """A real, complete PNG of zeros: a few hundred KB that inflates to the full raster."""
    bands = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = bytes(1 + (width * bands * bits + 7) // 8)
    rows_per_block = max(1, (1 << 20) // len(row))
    packer = zlib.compressobj(1)
    blocks = (row * min(rows_per_block, height - top) for top in range(0, height, rows_per_block))
    idat = b"".join(packer.compress(block) for block in blocks) + packer.flush()
    return png_file(width, height, idat, colour_type, bits)


def jpeg_segments(jpeg: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of every segment; a scan's end includes its entropy data."""
    at, out = 2, []
    while at < len(jpeg):
        marker = jpeg[at + 1]
        if marker == 0xD9:
            out.append((marker, at, at + 2))
            break
        end = at + 2 + struct.unpack(">H", jpeg[at + 2 : at + 4])[0]
        if marker == 0xDA:
            while True:
                end = jpeg.index(b"\xff", end)
                if jpeg[end + 1] == 0 or 0xD0 <= jpeg[end + 1] <= 0xD7:
                    end += 2
                    continue
                break
        out.append((marker, at, end))
        at = end
    return out


@functools.cache
def _flat_progressive(side: int) -> bytes:
    return encoded(Image.new("RGB", (side, side), "white"), "JPEG", quality=30, progressive=True)


def scan_bomb(side: int, repeats: int) -> bytes:
    """A flat progressive JPEG whose last (tiny) refinement scan is repeated ``repeats`` times."""
    jpeg = _flat_progressive(side)
    _, start, end = [s for s in jpeg_segments(jpeg) if s[0] == 0xDA][-1]
    return jpeg[:end] + jpeg[start:end] * repeats + jpeg[end:]


def with_frame(jpeg: bytes, marker: int | None = None, **fields: int) -> bytes:
    """The JPEG with its frame header's marker, precision or size changed."""
    for kind, start, _ in jpeg_segments(jpeg):
        if 0xC0 <= kind <= 0xC2:
            head = bytearray(jpeg)
            if marker is not None:
                head[start + 1] = marker
            if "precision" in fields:
                head[start + 4] = fields["precision"]
            if "height" in fields:
                head[start + 5 : start + 7] = struct.pack(">H", fields["height"])
            if "width" in fields:
                head[start + 7 : start + 9] = struct.pack(">H", fields["width"])
            if "sampling" in fields:
                head[start + 11] = fields["sampling"]
            return bytes(head)
    raise ValueError("no frame header")


def after_soi(jpeg: bytes, segments: bytes) -> bytes:
    return jpeg[:2] + segments + jpeg[2:]


def exif_jpeg(image: Image.Image, orientation: Any, extra_entries: int = 0) -> bytes:
    """A JPEG whose EXIF IFD0 holds ``orientation`` (any type) and optional filler entries."""
    entries = []
    if isinstance(orientation, int):
        entries.append(struct.pack("<HHII", 0x0112, 3, 1, orientation))
    else:  # an ASCII orientation, pointing past the IFD
        entries.append(struct.pack("<HHII", 0x0112, 2, 4, 0))
    entries += [struct.pack("<HHII", 0x9000 + n % 4096, 3, 1, n) for n in range(extra_entries)]
    count = len(entries)
    ifd = struct.pack("<H", count) + b"".join(entries) + struct.pack("<I", 8)  # next IFD: itself
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd + b"9\x00\x00\x00"
    return encoded(image, "JPEG", quality=90, exif=b"Exif\x00\x00" + tiff)


def apng(frames: list[Image.Image]) -> bytes:
    return encoded(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100)


# --- The corpus ---------------------------------------------------------------------


def hostile_images(photo: Callable[[str], bytes]) -> list[HostileImage]:
    """Every entry, built from the sample photos (obama.jpg, astronaut.png)."""
    jpeg = photo("obama.jpg")
    png = photo("astronaut.png")
    face = Image.open(io.BytesIO(jpeg)).convert("RGB")
    small = Image.open(io.BytesIO(png)).convert("RGB").resize((64, 64))
    webp = encoded(small, "WEBP", quality=80)
    progressive = encoded(face, "JPEG", quality=90, progressive=True)
    noise = random.Random(5).randbytes(4096)
    broken_crc = bytearray(png)
    broken_crc[png.find(b"IDAT") + 200] ^= 0xFF
    grey16 = (np.linspace(0, 65535, 256 * 256).reshape(256, 256)).astype(np.uint16)
    rgba = face.convert("RGBA")
    hidden = rgba.copy()
    hidden.putalpha(0)
    vp8x_canvas = b"VP8X" + struct.pack("<I", 10) + bytes([0, 0, 0, 0])
    huge_webp = (
        b"RIFF"
        + struct.pack("<I", 4 + 18)
        + b"WEBP"
        + vp8x_canvas
        + (15999).to_bytes(3, "little")
        + (15999).to_bytes(3, "little")
    )
    animated_webp = encoded(small, "WEBP", save_all=True, append_images=[small.rotate(90)])
    entries: list[tuple[str, str, bytes, ReasonCode | None]] = [
        # Decoding cost: scans, markers, chunks
        ("cost", "jpeg-scan-bomb-1000", scan_bomb(6000, 1000), TOO_LARGE),
        ("cost", "jpeg-scan-bomb-40000", scan_bomb(2000, 40000), TOO_LARGE),
        ("cost", "jpeg-scan-bomb-100-below-scan-limit", scan_bomb(6000, 88), TOO_LARGE),
        ("cost", "jpeg-scan-bomb-truncated", scan_bomb(6000, 1000)[:-5000], TOO_LARGE),
        ("cost", "jpeg-80-scans-small-image", scan_bomb(600, 70), None),
        (
            "cost",
            "jpeg-empty-app1-flood",
            after_soi(jpeg, b"\xff\xe1\x00\x02" * 200_000),
            TOO_LARGE,
        ),
        (
            "cost",
            "jpeg-empty-com-flood",
            after_soi(jpeg, b"\xff\xfe\x00\x02" * 6_000_000),
            TOO_LARGE,
        ),
        ("cost", "jpeg-300-comments", after_soi(jpeg, b"\xff\xfe\x00\x06note" * 300), TOO_LARGE),
        ("cost", "jpeg-dqt-flood", after_soi(jpeg, _first_dqt(jpeg) * 1100), TOO_LARGE),
        (
            "cost",
            "jpeg-17mib-metadata",
            after_soi(jpeg, (b"\xff\xe2\xff\xff" + bytes(65533)) * 260),
            TOO_LARGE,
        ),
        (
            "cost",
            "png-text-chunk-flood",
            png_file(
                8, 8, zlib.compress(bytes(9 * 8)), extra=png_chunk(b"tEXt", b"k\x00v") * 20_000
            ),
            TOO_LARGE,
        ),
        (
            "cost",
            "png-17mib-private-chunk",
            png_file(8, 8, zlib.compress(bytes(9 * 8)), extra=png_chunk(b"prVt", bytes(17 << 20))),
            TOO_LARGE,
        ),
        # Decompression bombs and sizes
        (
            "bomb",
            "png-header-100000x100000",
            png_file(100_000, 100_000, zlib.compress(bytes(64))),
            TOO_LARGE,
        ),
        (
            "bomb",
            "jpeg-header-60000x60000",
            with_frame(jpeg, width=60_000, height=60_000),
            TOO_LARGE,
        ),
        ("bomb", "png-grey-8000x8000", png_of_zeros(8000, 8000), TOO_LARGE),
        ("bomb", "png-grey-7000x7000", png_of_zeros(7000, 7000), TOO_LARGE),
        ("bomb", "png-16bit-rgba-4000x4000", png_of_zeros(4000, 4000, 6, 16), TOO_LARGE),
        ("bomb", "png-16bit-rgb-6000x3000", png_of_zeros(6000, 3000, 2, 16), TOO_LARGE),
        ("bomb", "png-1x12001", png_of_zeros(12_001, 1), TOO_LARGE),
        ("bomb", "webp-canvas-16000x16000", huge_webp, TOO_LARGE),
        (
            "bomb",
            "jpeg-progressive-48mp-444",
            with_frame(progressive, width=8000, height=6000, sampling=0x11),
            TOO_LARGE,
        ),
        ("bomb", "over-byte-limit", jpeg[:4] + bytes(26 * 1024 * 1024), TOO_LARGE),
        ("bomb", "jpeg-flat-8000x6000-reduced", _flat_jpeg(8000, 6000), None),
        ("bomb", "png-16bit-rgba-1500x1500", png_of_zeros(1500, 1500, 6, 16), None),
        # Truncated and corrupt
        ("corrupt", "zero-size", b"", UNREADABLE),
        ("corrupt", "random-bytes-after-jpeg-magic", b"\xff\xd8\xff\xe0" + noise, UNREADABLE),
        ("corrupt", "truncated-jpeg", jpeg[: len(jpeg) // 3], UNREADABLE),
        ("corrupt", "truncated-progressive-jpeg", progressive[: len(progressive) // 2], UNREADABLE),
        ("corrupt", "jpeg-header-only", jpeg[:200], UNREADABLE),
        ("corrupt", "jpeg-soi-only", b"\xff\xd8\xff\xd9", UNREADABLE),
        ("corrupt", "jpeg-soi-twice", b"\xff\xd8" + jpeg, UNREADABLE),
        ("corrupt", "jpeg-two-frame-headers", _two_frames(jpeg), UNREADABLE),
        ("corrupt", "jpeg-zero-height", with_frame(jpeg, height=0), UNREADABLE),
        ("corrupt", "jpeg-zero-sampling-factor", with_frame(jpeg, sampling=0x00), UNREADABLE),
        (
            "corrupt",
            "jpeg-segment-past-end",
            jpeg[:2] + b"\xff\xe1\xff\xf0" + b"x" * 100,
            UNREADABLE,
        ),
        ("corrupt", "jpeg-scan-before-frame", _scan_before_frame(jpeg), UNREADABLE),
        ("corrupt", "truncated-png", png[: len(png) // 2], UNREADABLE),
        ("corrupt", "png-corrupt-idat-crc", bytes(broken_crc), UNREADABLE),
        ("corrupt", "png-ihdr-only", png[:33], UNREADABLE),
        ("corrupt", "png-idat-first", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IDAT", b"x"), UNREADABLE),
        ("corrupt", "png-rgb-4-bit", png_file(8, 8, zlib.compress(bytes(9 * 8)), 2, 4), UNREADABLE),
        ("corrupt", "png-magic-jpeg-body", b"\x89PNG\r\n\x1a\n" + jpeg[2:], UNREADABLE),
        ("corrupt", "truncated-webp", webp[: len(webp) // 2], UNREADABLE),
        ("corrupt", "webp-garbage-body", webp[:30] + noise[:300], UNREADABLE),
        # Wrong formats and polyglots
        ("format", "random-bytes", noise, UNSUPPORTED),
        ("format", "wrong-magic-png", b"\x88" + png[1:], UNSUPPORTED),
        ("format", "gif", encoded(small, "GIF"), UNSUPPORTED),
        (
            "format",
            "gif-javascript-polyglot",
            b"GIF89a/*\x00\x00*/=1;alert(document.domain)//",
            UNSUPPORTED,
        ),
        ("format", "bmp", encoded(small, "BMP"), UNSUPPORTED),
        ("format", "tiff", encoded(small, "TIFF"), UNSUPPORTED),
        ("format", "ico", encoded(small, "ICO"), UNSUPPORTED),
        ("format", "psd-magic", b"8BPS\x00\x01" + bytes(64), UNSUPPORTED),
        ("format", "jpeg2000", encoded(small, "JPEG2000"), UNSUPPORTED),
        ("format", "pdf", b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", UNSUPPORTED),
        (
            "format",
            "svg",
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            UNSUPPORTED,
        ),
        (
            "format",
            "svg-xml-prolog",
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
            UNSUPPORTED,
        ),
        ("format", "html", b"<!doctype html><img src=x onerror=alert(1)>", UNSUPPORTED),
        ("format", "zip", b"PK\x03\x04" + bytes(26) + b"selfie.jpg" + jpeg[:64], UNSUPPORTED),
        ("format", "elf", b"\x7fELF\x02\x01\x01" + bytes(57), UNSUPPORTED),
        (
            "format",
            "heic-container",
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + noise[:512],
            UNSUPPORTED,
        ),
        ("format", "avif", encoded(small, "AVIF"), UNSUPPORTED),
        ("format", "apng-animated", apng([small, small.rotate(90)]), UNSUPPORTED),
        ("format", "webp-animated", animated_webp, UNSUPPORTED),
        ("format", "jpeg-arithmetic-coded", with_frame(jpeg, marker=0xC9), UNSUPPORTED),
        ("format", "jpeg-lossless-sof3", with_frame(jpeg, marker=0xC3), UNSUPPORTED),
        ("format", "jpeg-12-bit", with_frame(jpeg, precision=12), UNSUPPORTED),
        (
            "format",
            "jpeg-with-zip-appended",
            jpeg + b"PK\x03\x04" + bytes(26) + b"payload.exe",
            None,
        ),
        ("format", "png-with-html-appended", png + b"<html><script>alert(1)</script></html>", None),
        # Unusual but legitimate
        ("legit", "progressive-jpeg", progressive, None),
        ("legit", "cmyk-jpeg", encoded(face.convert("CMYK"), "JPEG", quality=90), None),
        ("legit", "grey-jpeg", encoded(face.convert("L"), "JPEG", quality=90), None),
        (
            "legit",
            "jpeg-restart-markers",
            encoded(face, "JPEG", quality=90, restart_marker_blocks=4),
            None,
        ),
        ("legit", "palette-png", encoded(small.convert("P"), "PNG"), None),
        (
            "legit",
            "palette-png-transparent",
            encoded(small.convert("P"), "PNG", transparency=0),
            None,
        ),
        ("legit", "png-1-bit", encoded(small.convert("1"), "PNG"), None),
        ("legit", "png-16-bit-grey", encoded(Image.fromarray(grey16), "PNG"), None),
        ("legit", "png-grey-alpha", encoded(small.convert("LA"), "PNG"), None),
        ("legit", "png-rgba-face-under-alpha-0", encoded(hidden, "PNG", compress_level=1), None),
        ("legit", "png-rgba-opaque", encoded(rgba, "PNG", compress_level=1), None),
        ("legit", "webp-lossless", encoded(small, "WEBP", lossless=True), None),
        ("legit", "webp-with-alpha", encoded(small.convert("RGBA"), "WEBP", quality=80), None),
        ("exif", "exif-orientation-6", exif_jpeg(face, 6), None),
        ("exif", "exif-orientation-99", exif_jpeg(face, 99), None),
        ("exif", "exif-orientation-ascii", exif_jpeg(face, "six"), None),
        ("exif", "exif-5000-entries-ifd-loop", exif_jpeg(face, 8, extra_entries=5000), None),
    ]
    return [HostileImage(name, data, expected, family) for family, name, data, expected in entries]


def _first_dqt(jpeg: bytes) -> bytes:
    _, start, end = next(s for s in jpeg_segments(jpeg) if s[0] == 0xDB)
    return jpeg[start:end]


def _two_frames(jpeg: bytes) -> bytes:
    _, start, end = next(s for s in jpeg_segments(jpeg) if 0xC0 <= s[0] <= 0xC2)
    return jpeg[:end] + jpeg[start:end] + jpeg[end:]


def _scan_before_frame(jpeg: bytes) -> bytes:
    _, start, end = next(s for s in jpeg_segments(jpeg) if s[0] == 0xDA)
    return jpeg[:2] + jpeg[start:end] + jpeg[2:]


def _flat_jpeg(width: int, height: int) -> bytes:
    return encoded(Image.new("RGB", (width, height), (120, 110, 100)), "JPEG", quality=80)


def write_corpus(out: Path, photo: Callable[[str], bytes]) -> dict[str, Any]:
    """One file per entry and ``manifest.json`` (name -> family, expected reason, sha256)."""
    import hashlib

    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for item in hostile_images(photo):
        (out / item.name).write_bytes(item.data)
        manifest[item.name] = {
            "family": item.family,
            "expected": item.expected.value if item.expected else "decoded",
            "bytes": len(item.data),
            "sha256": hashlib.sha256(item.data).hexdigest(),
        }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


if __name__ == "__main__":
    from models.lifecycle.samples import fetch_samples

    photos = Path(sys.argv[2]) if len(sys.argv) > 2 else fetch_samples()
    written = write_corpus(Path(sys.argv[1]), lambda name: (photos / name).read_bytes())
    print(f"{len(written)} images written to {sys.argv[1]}")
