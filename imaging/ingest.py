"""Hostile input at the door: every uploaded image is checked, decoded and re-encoded.

``sanitize_image`` runs before an image is stored. It decodes with the one
bounded decoder (``imaging.decode.decode_image``: byte count, format by magic
bytes, the container walked before any pixel is decoded, pixel budgets, a
decoding process under a CPU and memory budget; 16-bit scaled, transparency
composited over white, EXIF orientation applied). It then writes a fresh file
from the decoded pixels only, so nothing but pixels survives ingest: no EXIF
(GPS position, device serials, capture time), no ICC or text chunks, no
trailing data of a polyglot file, no second frame, no hidden alpha content.

Formats: JPEG, PNG and WebP are accepted. PNG stays PNG (lossless); JPEG and
WebP become JPEG at quality 95. HEIC/HEIF/AVIF are refused with a message
that says so: pillow-heif (the maintained binding) ships libheif with
x265/libde265 builds whose (L)GPL terms we do not take into an Apache-2.0
service by default; phones and browsers hand over JPEG on upload.
"""

from __future__ import annotations

import io

from PIL import Image

from imaging.decode import decode_image, sniff_format
from imaging.limits import DEFAULT_LIMITS, ImageLimits

JPEG_QUALITY = 95


def sanitize_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> tuple[bytes, str]:
    """Checked, upright, metadata-free re-encoding of ``data``: ``(bytes, media_type)``.

    Raises ``ImageUnreadable``, ``ImageTooLarge`` or ``UnsupportedImageFormat``
    (each with its reason code); messages name sizes and formats only.
    """
    pixels = decode_image(data, limits)
    image = Image.fromarray(pixels)
    out = io.BytesIO()
    if sniff_format(data) == "PNG":
        image.save(out, "PNG")
        return out.getvalue(), "image/png"
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue(), "image/jpeg"
