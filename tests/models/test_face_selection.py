"""Choosing the subject face and the faces that count, on detections as the detector gives them."""

from __future__ import annotations

from models.face.selection import CONFIDENT_SCORE, select_faces
from models.face.stages import Detection


def face(x: float, side: float, score: float) -> Detection:
    return Detection((x, 0.0, x + side, side), score)


def test_a_confident_face_beats_a_larger_doubtful_box():
    real, background = face(0, 100, 1.0), face(200, 300, 0.97)
    assert select_faces([background, real]) == [real]


def test_among_confident_faces_the_largest_is_the_subject():
    poster, person = face(0, 60, 1.0), face(100, 200, 0.995)
    assert select_faces([poster, person])[0] is person


def test_a_second_face_counts_only_when_confident_and_close_enough():
    subject = face(0, 300, 1.0)
    near, distant = face(400, 150, 0.999), face(600, 90, 1.0)
    doubtful = face(800, 300, CONFIDENT_SCORE - 0.01)
    assert select_faces([distant, doubtful, near, subject]) == [subject, near]


def test_without_a_confident_face_the_best_box_is_judged():
    poor, worse = face(0, 40, 0.8), face(100, 200, 0.7)
    assert select_faces([worse, poor]) == [poor]
    assert select_faces([]) == []
