"""Verification inputs made from the registry sample photos (models.lifecycle.samples).

One selfie/document pair per outcome the demo, the tests and the benchmark
show. Photos are used as they come from the registry; the two derived inputs
are a crop without a face (the lower part of ``camera.png``: tripod and
grass) and a truncated JPEG (the first third of ``obama.jpg``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from models.lifecycle.samples import BIDEN, fetch_samples


@dataclass(frozen=True)
class SamplePair:
    name: str
    selfie: bytes
    document: bytes
    expected: str  # what the default models and thresholds decide, as "decision REASON..."


# mDL claims of the ISO/IEC 18013-5 example holder (a fictional person); the demo,
# the tests and the benchmarks all issue these (treat as read-only: copy to change).
DEMO_CLAIMS = {
    "family_name": "Mustermann",
    "given_name": "Erika",
    "birth_date": "1964-08-12",
    "issue_date": "2024-03-01",
    "expiry_date": "2034-02-28",
    "issuing_country": "UT",
    "issuing_authority": "Utopia Department of Motor Vehicles",
    "document_number": "UT-9912-4471",
}


def no_face(photo_dir: Path) -> bytes:
    """A real photo with no face in it: the bottom 40% of the cameraman picture."""
    with Image.open(photo_dir / "camera.png") as image:
        crop = image.convert("RGB").crop((0, 300, 512, 512))
    out = io.BytesIO()
    crop.save(out, "PNG")
    return out.getvalue()


def truncated(photo_dir: Path) -> bytes:
    """A JPEG cut off after its first third: corrupt, not decodable."""
    data = (photo_dir / "obama.jpg").read_bytes()
    return data[: len(data) // 3]


def sample_pairs(photo_dir: Path | None = None) -> dict[str, SamplePair]:
    folder = photo_dir or fetch_samples()

    def read(name: str) -> bytes:
        return (folder / name).read_bytes()

    pairs = (
        SamplePair("same person", read("obama.jpg"), read("obama2.jpg"), "approved"),
        SamplePair("different people", read(BIDEN), read("obama.jpg"), "declined FACE_MISMATCH"),
        SamplePair("no face", no_face(folder), read("obama.jpg"), "retry QUALITY_NO_FACE"),
        SamplePair("corrupt file", truncated(folder), read("obama.jpg"), "retry INPUT_UNREADABLE"),
    )
    return {pair.name: pair for pair in pairs}
