"""Quality rules on real photos and on degraded copies of them, each also mirrored and tilted."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from domain.contracts import FaceObservation
from domain.enums import ImageRole, ModelTask
from domain.quality_rules import assess_quality
from domain.reasons import ReasonCode as R
from models.face import observe_faces
from models.face.geometry import ARCFACE_TEMPLATE
from models.face.inputs import source_px_per_input_px
from models.lifecycle.samples import BIDEN, OBAMA
from models.lifecycle.sources import SIGNATURES


def degrade(change: Callable[[Image.Image], Image.Image]):
    def run(image: np.ndarray) -> np.ndarray:
        return np.asarray(change(Image.fromarray(image)).convert("RGB"))

    return run


def rotate(degrees: float):
    return degrade(lambda p: p.rotate(degrees, Image.Resampling.BILINEAR, expand=True))


# How the same capture may also arrive: a selfie camera mirrors, a hand tilts the phone.
VARIANTS = {
    "as taken": degrade(lambda p: p),
    "mirrored": degrade(ImageOps.mirror),
    "tilted 8": rotate(8),
    "mirrored, tilted -8": degrade(lambda p: ImageOps.mirror(p).rotate(-8, expand=True)),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", [*OBAMA, BIDEN, "astronaut.png"])
def test_real_photos_pass(observe, face_models, name, variant):
    image, _, _ = observe(name)
    liveness = face_models.need(ModelTask.LIVENESS).signature
    faces, measures = observe_faces(VARIANTS[variant](image), face_models, liveness)
    assert measures.liveness_source_px is not None
    assert len(faces) == 1
    assert (
        assess_quality(ImageRole.SELFIE, measures)
        == []
        == assess_quality(ImageRole.DOCUMENT, measures)
    ), measures


def shrink(factor: float):
    return degrade(
        lambda p: p.resize(
            (int(p.width * factor), int(p.height * factor)), Image.Resampling.BILINEAR
        )
    )


DEGRADED = {
    "blurred": (degrade(lambda p: p.filter(ImageFilter.GaussianBlur(4))), R.QUALITY_BLURRY),
    "dark": (degrade(lambda p: ImageEnhance.Brightness(p).enhance(0.3)), R.QUALITY_TOO_DARK),
    "overexposed": (
        degrade(lambda p: ImageEnhance.Brightness(p).enhance(1.8)),
        R.QUALITY_OVEREXPOSED,
    ),
    "flat": (degrade(lambda p: ImageEnhance.Contrast(p).enhance(0.3)), R.QUALITY_LOW_CONTRAST),
    "tiny": (shrink(0.15), R.QUALITY_FACE_TOO_SMALL),
    "tilted": (rotate(35), R.QUALITY_POSE),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", DEGRADED)
def test_degraded_copy_is_sent_back_with_its_reason(observe, face_models, kind, variant):
    change, reason = DEGRADED[kind]
    image, _, _ = observe("obama.jpg")
    faces, measures = observe_faces(VARIANTS[variant](change(image)), face_models)
    assert len(faces) == 1
    assert reason in assess_quality(ImageRole.SELFIE, measures), measures


@pytest.mark.parametrize("variant", VARIANTS)
def test_liveness_crops_on_too_few_pixels_are_a_capture_problem(observe, face_models, variant):
    """The same capture is fine for MiniFASNet (80 px crops) and too small for faceplugin's
    128 px crops: the limit comes from the deciding version's signature, not from code per
    model. A selfie is sent back; a document (never judged for liveness) is not."""
    image, (face, *_), _ = observe("obama.jpg")
    x1, y1, x2, y2 = face.box
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, 0.625 * (y2 - y1)
    tight = Image.fromarray(image).crop(
        (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    )
    small = np.asarray(tight.resize((100, 100), Image.Resampling.LANCZOS))  # face ~80 px
    capture = VARIANTS[variant](small)
    for name, too_small in (
        ("faceplugin-fr-liveness", True),
        ("minifasnet-v2", False),
        ("minifasnet-v1se", False),
    ):
        faces, measures = observe_faces(capture, face_models, SIGNATURES[name])
        assert len(faces) == 1 and measures.face_size_px >= 64, measures
        assert (measures.liveness_source_px < 1) is too_small, (name, measures)
        selfie = assess_quality(ImageRole.SELFIE, measures)
        assert (R.QUALITY_FACE_TOO_SMALL_FOR_LIVENESS in selfie) is too_small, (name, selfie)
        assert R.QUALITY_FACE_TOO_SMALL_FOR_LIVENESS not in assess_quality(
            ImageRole.DOCUMENT, measures
        )


def test_liveness_source_pixels_follow_the_signature():
    """A face box of 100 px: x2.7 about it is 270 image px for an 80 px input (3.375 px each)
    while the frame leaves room; in a frame of 150 px the crop shrinks to fit (shift) and
    rests on 149 px (1.86 px each); an input aligned to the ArcFace template takes its scale
    from the similarity transform (points at twice the template's size: 2 px each)."""
    points = (ARCFACE_TEMPLATE * 2 + 100).tolist()
    v2 = SIGNATURES["minifasnet-v2"]
    roomy = FaceObservation([200.0, 200.0, 300.0, 300.0], points, 1.0)
    assert source_px_per_input_px(v2, 1000, 1000, roomy) == pytest.approx(270 / 80)
    framed = FaceObservation([25.0, 25.0, 125.0, 125.0], points, 1.0)
    assert source_px_per_input_px(v2, 150, 150, framed) == pytest.approx(149 / 80)
    aligned = SIGNATURES["faceplugin-fr-feature"]
    assert source_px_per_input_px(aligned, 1000, 1000, roomy) == pytest.approx(2.0)


def test_two_faces_fail_a_selfie_but_not_a_document(observe, face_models):
    obama, _, _ = observe("obama.jpg")
    biden, _, _ = observe(BIDEN)
    h = min(obama.shape[0], biden.shape[0])
    pair = np.hstack([obama[:h], biden[:h]])
    faces, measures = observe_faces(pair, face_models)
    assert len(faces) == 2
    assert assess_quality(ImageRole.SELFIE, measures) == [R.QUALITY_MULTIPLE_FACES]
    assert assess_quality(ImageRole.DOCUMENT, measures) == []


def test_no_face_reports_it_and_the_exposure(observe, face_models):
    image, _, _ = observe("camera.png")
    dark_grass = np.asarray(ImageEnhance.Brightness(Image.fromarray(image[300:])).enhance(0.2))
    faces, measures = observe_faces(np.ascontiguousarray(dark_grass), face_models)
    reasons = assess_quality(ImageRole.DOCUMENT, measures)
    assert faces == [] and reasons[0] is R.QUALITY_NO_FACE
    assert R.QUALITY_TOO_DARK in reasons


def test_unknown_role_is_refused(observe):
    _, _, measures = observe("obama.jpg")
    with pytest.raises(ValueError):
        assess_quality("passport", measures)
