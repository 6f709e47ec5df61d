"""The face-match sets built from registry photos, and the quality target measured on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.lifecycle.evaluate import evaluate
from models.lifecycle.labelled_sets import CAPTURE_VARIANTS, LFW_PARTS, read_pairs, write_face_sets


@pytest.fixture(scope="module")
def face_sets(photo_dir: Path, tmp_path_factory):
    return write_face_sets(tmp_path_factory.mktemp("sets"), photo_dir)


def test_parts_share_no_image_and_no_person_but_obama(face_sets):
    people = {
        part: {d.name for d in face_set.folder.iterdir() if d.is_dir()}
        for part, face_set in face_sets.items()
    }
    assert people["tune"] & people["holdout"] == {"barack-obama"}  # different photos of him
    images = {
        part: {p.name for p in (face_set.folder / "barack-obama").iterdir()}
        for part, face_set in face_sets.items()
    }
    assert not images["tune"] & images["holdout"]
    assert len(images["holdout"]) == 2 * len(CAPTURE_VARIANTS)
    assert sum(p.startswith("lfw-") for p in people["holdout"]) == len(LFW_PARTS["holdout"])


def test_photo_pairs_leave_out_the_thumbnails(face_sets):
    pairs = read_pairs(face_sets["holdout"].photos)
    paths = {p for pair in pairs for p in (pair.a, pair.b)}
    assert len(paths) == 3 * len(CAPTURE_VARIANTS)  # Obama x2 and Biden, in every variant
    assert all(p.exists() and "lfw-" not in p.as_posix() for p in paths)
    genuine = sum(pair.same for pair in pairs)
    assert genuine == 66 + 15 and len(pairs) - genuine == 12 * 6  # C(12,2) + C(6,2); 12 x 6


def test_genuine_photo_pairs_are_rarely_sent_back(face_sets, model_registry_engine, model_cache):
    """Issue 9's goal: genuine pairs of ordinary photos told to retry <= 3 %. Mirrored and
    tilted captures used to read as turned heads (QUALITY_POSE on 11 of 81 held-out pairs)."""
    evaluation = evaluate(
        model_registry_engine,
        model_cache,
        "embed",
        face_sets["holdout"].photos,
        record=False,
        progress=lambda _: None,
        split=False,  # the holdout part of the face sets already
    )
    retry = evaluation.metrics["genuine_quality_retry"]
    assert retry["pairs"] == 81
    assert retry["rate"] <= 0.03, retry
    assert "QUALITY_POSE" not in retry["reasons"]
    assert evaluation.metrics["at_accept"]["fnmr"] == 0.0
