"""The liveness labelled sets and the per-kind rates `idflow models evaluate` reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from domain.contracts import ModelChoice
from models.lifecycle.evaluate import liveness_metrics, suggested_thresholds
from models.lifecycle.labelled_sets import read_presentations, split_groups
from models.lifecycle.liveness_sets import write_liveness_sets

LIVENESS = ModelChoice("liveness", "m", "1", "0" * 64, accept=0.8, reject=0.5)


def test_rates_are_reported_per_kind_at_the_versions_thresholds() -> None:
    bona_fide = np.array([0.9, 0.95, 0.7, 0.4])
    attacks = np.array([0.85, 0.1, 0.2, 0.6])
    metrics = liveness_metrics(
        bona_fide,
        attacks,
        ["print/flat", "print/tilted", "screen/glare", "screen/flat"],
        LIVENESS,
        ["photo", "photo", "photo-phone", "photo-phone"],
    )
    assert metrics["by_kind"] == {
        "attacks_approved": {"print": 0.5, "screen": 0.0},
        "bona_fide_declined": {"photo": 0.0, "photo-phone": 0.5},
        "bona_fide_not_approved": {"photo": 0.0, "photo-phone": 1.0},
    }
    assert metrics["at_accept"]["apcer"] == 0.25 and metrics["at_reject"]["bpcer"] == 0.25


def test_suggested_thresholds_come_from_the_set() -> None:
    attacks = np.linspace(0.0, 0.8, 20)  # one in 20 may pass: above the second highest
    bona_fide = np.linspace(0.3, 1.0, 20)
    suggested = suggested_thresholds(bona_fide, attacks)
    assert suggested["accept"] == pytest.approx(0.7579, abs=1e-4)
    assert (attacks >= suggested["accept"]).mean() <= 0.05
    assert (bona_fide < suggested["reject"]).mean() <= 0.05
    assert suggested["reject"] <= suggested["accept"]


@pytest.mark.slow
def test_the_sets_name_every_image_after_its_source_photo(photo_dir: Path, tmp_path: Path) -> None:
    main, stress = write_liveness_sets(tmp_path, photo_dir)
    kinds = {
        folder.name: {(p.live, p.kind) for p in read_presentations(folder)}
        for folder in (main, stress)
    }
    assert {(False, "print/tilted"), (False, "screen/glare")} <= kinds["liveness"]
    assert {(True, "photo-phone"), (True, "photo-low-res")} <= kinds["liveness"]
    assert kinds["stress"] == {(True, "low-res")} | {
        (False, f"close-up/{k}") for k in ("print", "screen", "moire", "recapture-4x")
    }
    # evaluate splits by that name: every photo's bona fide and attacks fall in one part.
    groups = {p.group for p in read_presentations(main)}
    assert groups == {
        "obama",
        "obama2",
        "obama3",
        "obama_partial_face",
        "obama_partial_face2",
        "biden",
        "astronaut",
    }
    tune, holdout = split_groups(groups)
    assert len(holdout) == 3 and not tune & holdout
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.jpg")}
    write_liveness_sets(tmp_path, photo_dir)  # a second call writes nothing
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.jpg")} == before
