"""Which detected face is the subject, and which other faces count as people in the picture.

The detector (fr_detect, score = softmax P(face)) gives real faces 0.998-1.0 on
the sample photos and their mirrored and rotated copies, and 0.99 or more to 77 %
of the LFW thumbnails; things that are not faces reach 0.95-0.987 now and then
(scikit-image's phantom, printed text, a cat), sometimes with a box larger than
the real face. A face is *confident* at ``CONFIDENT_SCORE`` or more, so:

- the subject is the largest confident face (a person in front of a poster is
  the larger face, both scoring ~1.0); when no face is confident, the most
  confident box (a small or poor face still gets judged, and its quality
  measures say what is wrong). Ranking by area alone let a 0.97 background box
  beat the real face (1.0), and every measure was taken on background.
- another face counts (``QUALITY_MULTIPLE_FACES`` for a selfie) only when it is
  confident and at least ``OTHER_FACE_MIN_SIDE`` of the subject's side: a second
  person close enough to be mistaken for the subject. A distant face in a crowd
  or a doubtful box is ignored.
"""

from __future__ import annotations

from .stages import Detection

CONFIDENT_SCORE = 0.99
OTHER_FACE_MIN_SIDE = 1 / 3


def side(detection: Detection) -> float:
    x1, y1, x2, y2 = detection.box
    return max(x2 - x1, y2 - y1)


def select_faces(detections: list[Detection]) -> list[Detection]:
    """The subject first, then the other faces that count, largest first; [] without faces."""
    confident = [d for d in detections if d.score >= CONFIDENT_SCORE]
    if not confident:
        return [max(detections, key=lambda d: d.score)] if detections else []
    subject = max(confident, key=lambda d: (side(d), d.score))
    others = [
        d for d in confident if d is not subject and side(d) >= OTHER_FACE_MIN_SIDE * side(subject)
    ]
    return [subject, *sorted(others, key=side, reverse=True)]
