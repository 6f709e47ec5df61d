"""Quality rules on real photos and on degraded copies of them, each also mirrored and tilted."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from domain.enums import ImageRole
from domain.quality_rules import assess_quality
from domain.reasons import ReasonCode as R
from models.face import observe_faces
from models.lifecycle.samples import BIDEN, OBAMA


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
    faces, measures = observe_faces(VARIANTS[variant](image), face_models)
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
