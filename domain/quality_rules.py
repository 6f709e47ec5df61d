"""Is a photo good enough to decide on? Quality measures -> reason codes (stdlib only).

The measures come from models/face (``observe_faces``); these rules turn them
into the reasons the user sees when asked to capture again. Defaults were
calibrated on real photos (face_recognition's five Obama photos and Biden,
scikit-image's astronaut) and on degraded copies of them (blur, darkening,
over-brightening, contrast loss, downscaling), see tests/models/test_quality.py:

| measure (face, 128x128 grey view) | real photos    | degraded copy that must fail    |
|-----------------------------------|----------------|---------------------------------|
| sharpness (Laplacian variance)    | 227 .. 469     | Gaussian blur r=4: 18           |
| brightness (mean luma)            | 99 .. 147      | x0.3: 43; x1.8: 223             |
| clipped bright fraction           | 0 .. 0.03      | x1.8: 0.41                      |
| contrast (luma std)               | 37 .. 62       | contrast x0.3: 11.6             |
| face size px / inter-eye px       | 112 / 43 min   | scaled x0.15: 47 / 16           |
| eyes closed P                     | 0 .. 0.32      |                                 |
| |yaw|, |pitch|, |roll| degrees    | 17, 20, 13 max | rotated 30 degrees: roll 31     |

The face embedding still matches at a 47 px face (cosine 0.70 to another
photo), so the size limit guards the other stages more than the match.
"""

from __future__ import annotations

from dataclasses import dataclass

from .contracts import QualityMeasures
from .reasons import ReasonCode

SELFIE = "selfie"
DOCUMENT = "document"
ROLES = (SELFIE, DOCUMENT)


@dataclass(frozen=True)
class QualityLimits:
    min_face_px: float = 64.0
    min_inter_eye_px: float = 20.0
    min_sharpness: float = 60.0
    min_brightness: float = 55.0
    max_brightness: float = 215.0
    max_clipped_dark: float = 0.25
    max_clipped_bright: float = 0.25
    min_contrast: float = 15.0
    max_eyes_closed: float = 0.7
    max_abs_yaw: float = 30.0
    max_abs_pitch: float = 30.0
    max_abs_roll: float = 25.0


def assess_quality(
    role: str, measures: QualityMeasures, limits: QualityLimits = QualityLimits()
) -> list[ReasonCode]:
    """Every quality problem of one photo, in a fixed order; empty when it is usable.

    A selfie must show exactly one face; a document may show more (a ghost
    portrait) and is judged by its subject face (models/face/selection.py), which
    ``measures`` describe.
    Without a face, the exposure of the whole image is still reported, so
    that "no face, too dark" tells the user what to fix.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    faces_count = measures.face_count
    reasons: list[ReasonCode] = []
    if faces_count == 0:
        reasons.append(ReasonCode.QUALITY_NO_FACE)
    elif faces_count > 1 and role == SELFIE:
        reasons.append(ReasonCode.QUALITY_MULTIPLE_FACES)
    if faces_count > 0:
        if (measures.face_size_px or 0.0) < limits.min_face_px or (
            measures.inter_eye_px or 0.0
        ) < limits.min_inter_eye_px:
            reasons.append(ReasonCode.QUALITY_FACE_TOO_SMALL)
        if measures.sharpness < limits.min_sharpness:
            reasons.append(ReasonCode.QUALITY_BLURRY)
    if (
        measures.brightness < limits.min_brightness
        or measures.clipped_dark > limits.max_clipped_dark
    ):
        reasons.append(ReasonCode.QUALITY_TOO_DARK)
    if (
        measures.brightness > limits.max_brightness
        or measures.clipped_bright > limits.max_clipped_bright
    ):
        reasons.append(ReasonCode.QUALITY_OVEREXPOSED)
    if measures.contrast < limits.min_contrast:
        reasons.append(ReasonCode.QUALITY_LOW_CONTRAST)
    if faces_count > 0:
        if (measures.eyes_closed or 0.0) > limits.max_eyes_closed:
            reasons.append(ReasonCode.QUALITY_EYES_CLOSED)
        if (
            abs(measures.yaw_deg or 0.0) > limits.max_abs_yaw
            or abs(measures.pitch_deg or 0.0) > limits.max_abs_pitch
            or abs(measures.roll_deg or 0.0) > limits.max_abs_roll
        ):
            reasons.append(ReasonCode.QUALITY_POSE)
    return reasons
