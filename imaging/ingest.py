"""Hostile input at the door: every uploaded image is checked, decoded and re-encoded.

``sanitize_image`` runs before an image is stored. It applies the same
limits and checks the face pipeline applies at decode time, by calling the one
implementation (``imaging.decode.decode_image``: byte count, format by
magic bytes, dimensions from the header before any pixel is decoded, Pillow's
decompression-bomb guard, EXIF orientation). It then writes a fresh file from
the decoded pixels only, so nothing but pixels survives ingest: no EXIF (GPS
position, device serials, capture time), no ICC or text chunks, no trailing
data of a polyglot file, no second frame.

Formats: JPEG, PNG and WebP are accepted. PNG stays PNG (lossless); JPEG and
WebP become JPEG at quality 95. HEIC is refused with a message that says so:
pillow-heif (the maintained binding) ships libheif with x265/libde265 builds
whose (L)GPL terms we do not take into an Apache-2.0 service by default;
phones and browsers hand over JPEG on upload.
"""

from __future__ import annotations

import io

from PIL import Image

from domain.errors import UnsupportedImageFormat
from imaging.decode import ImageLimits, decode_image, sniff_format

JPEG_QUALITY = 95
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif"}


def sanitize_image(data: bytes, limits: ImageLimits = ImageLimits()) -> tuple[bytes, str]:
    """Checked, upright, metadata-free re-encoding of ``data``: ``(bytes, media_type)``.

    Raises ``ImageUnreadable``, ``ImageTooLarge`` or ``UnsupportedImageFormat``
    (each with its reason code); messages name sizes and formats only.
    """
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        raise UnsupportedImageFormat(
            "HEIC/HEIF/AVIF images are not accepted; allowed: JPEG, PNG, WebP (convert to JPEG)"
        )
    pixels = decode_image(data, limits)
    image = Image.fromarray(pixels)
    out = io.BytesIO()
    if sniff_format(data) == "PNG":
        image.save(out, "PNG")
        return out.getvalue(), "image/png"
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue(), "image/jpeg"
