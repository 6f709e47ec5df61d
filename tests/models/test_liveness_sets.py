"""The liveness labelled sets and the per-kind rates `idflow models evaluate` reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from domain.contracts import ModelChoice
from models.lifecycle.evaluate import liveness_metrics, suggested_thresholds
from models.lifecycle.labelled_sets import read_presentations
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
def test_the_sets_split_by_source_photo(photo_dir: Path, tmp_path: Path) -> None:
    tuning, held_out, stress = write_liveness_sets(tmp_path, photo_dir)
    kinds = {
        folder.name: {(p.live, p.kind) for p in read_presentations(folder)}
        for folder in (tuning, held_out, stress)
    }
    assert (False, "print/tilted") in kinds["tuning"] and (False, "screen/glare") in kinds[
        "held-out"
    ]
    assert (True, "photo-phone") in kinds["held-out"]
    assert kinds["stress"] == {(True, "low-res")} | {
        (False, f"close-up/{k}") for k in ("print", "screen", "moire", "recapture-4x")
    }
    names = {
        folder.name: {p.image.stem for p in read_presentations(folder) if p.kind != "low-res"}
        for folder in (tuning, held_out)
    }
    assert names["tuning"] == {"obama", "obama3", "obama_partial_face"}
    assert not names["tuning"] & names["held-out"]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.jpg")}
    write_liveness_sets(tmp_path, photo_dir)  # a second call writes nothing
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.jpg")} == before
