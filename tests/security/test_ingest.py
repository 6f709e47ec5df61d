"""Hostile input at ingest: typed errors with reason codes, metadata stripped, re-encoded."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from PIL import Image

from domain.errors import InputRejected
from domain.reasons import ReasonCode
from imaging.decode import decode_image
from imaging.ingest import sanitize_image

PERSONAL_MARKER = b"IDFLOW-PERSONAL-MARKER"


def test_every_malformed_image_ends_in_a_typed_error_with_its_reason_code(
    malformed_image_corpus: dict[str, tuple[bytes, ReasonCode]],
) -> None:
    outcomes = {}
    for name, (data, _) in malformed_image_corpus.items():
        with pytest.raises(InputRejected) as rejected:
            sanitize_image(data)
        message = str(rejected.value)
        assert message and "\\x" not in message and len(message) < 300, name  # no bytes quoted
        outcomes[name] = rejected.value.reason
    assert outcomes == {name: reason for name, (_, reason) in malformed_image_corpus.items()}


def test_decode_time_checks_agree_with_ingest(
    malformed_image_corpus: dict[str, tuple[bytes, ReasonCode]],
) -> None:
    """The face pipeline's decoder is the same gate: what ingest refuses, it refuses alike."""
    for name, (data, reason) in malformed_image_corpus.items():
        if name == "heic-container":
            continue  # ingest names HEIC; the decoder sees an unknown format (same reason code)
        with pytest.raises(InputRejected) as rejected:
            decode_image(data)
        assert rejected.value.reason == reason, name


def _exif_jpeg(photo: Callable[[str], bytes]) -> bytes:
    image = Image.open(io.BytesIO(photo("obama.jpg")))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    exif[0x010F] = "IDFLOW-PERSONAL-MARKER camera maker"
    exif.get_ifd(0x8825)[2] = (52.0, 31.0, 12.0)  # GPS latitude
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), comment=PERSONAL_MARKER)
    return out.getvalue()


def test_exif_is_applied_then_stripped(photo: Callable[[str], bytes]) -> None:
    original = _exif_jpeg(photo)
    width, height = Image.open(io.BytesIO(original)).size
    assert PERSONAL_MARKER in original

    clean, media_type = sanitize_image(original)

    assert media_type == "image/jpeg"
    image = Image.open(io.BytesIO(clean))
    assert image.size == (height, width)  # upright: the orientation was applied
    assert not image.getexif() and "exif" not in image.info and "comment" not in image.info
    assert PERSONAL_MARKER not in clean and b"Exif" not in clean


@pytest.mark.parametrize(
    "trailer",
    [
        b"<html><script>alert(document.cookie)</script></html>",
        b"PK\x03\x04" + b"\x00" * 26 + b"payload.exe",  # a ZIP appended: a PNG/ZIP polyglot
    ],
)
def test_polyglot_trailers_do_not_survive(photo: Callable[[str], bytes], trailer: bytes) -> None:
    for name, media_type in (("obama.jpg", "image/jpeg"), ("astronaut.png", "image/png")):
        clean, kind = sanitize_image(photo(name) + trailer)
        assert kind == media_type
        assert trailer[:16] not in clean
        assert Image.open(io.BytesIO(clean)).size == Image.open(io.BytesIO(photo(name))).size


def test_png_stays_lossless_and_webp_becomes_jpeg(photo: Callable[[str], bytes]) -> None:
    png = photo("astronaut.png")
    clean, media_type = sanitize_image(png)
    assert media_type == "image/png"
    assert (decode_image(clean) == decode_image(png)).all()

    webp = io.BytesIO()
    Image.open(io.BytesIO(png)).save(webp, "WEBP", quality=90)
    clean, media_type = sanitize_image(webp.getvalue())
    assert media_type == "image/jpeg" and clean[:3] == b"\xff\xd8\xff"
