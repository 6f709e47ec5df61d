"""Evaluation: the error-rate arithmetic, and whole runs on small real labelled sets."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import run as idflow
from domain.contracts import ModelChoice
from domain.reasons import ReasonCode as R
from models.lifecycle.cards import card_path
from models.lifecycle.evaluate import (
    Judged,
    decision_metrics,
    embed_metrics,
    evaluate,
    liveness_metrics,
    rates,
    threshold_at,
)
from models.lifecycle.evaluations import history
from models.lifecycle.labelled_sets import (
    ATTACKS,
    LabelledSetError,
    read_pairs,
    read_presentations,
    split_groups,
)
from models.lifecycle.registry import get_version
from tests.support.models import link


def choice(accept: float, reject: float) -> ModelChoice:
    return ModelChoice("embed", "m", "1", "0" * 64, accept=accept, reject=reject)


def test_threshold_at_a_target_rate():
    negatives = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    strict = threshold_at(negatives, 0.0)
    assert strict > 0.95 and rates(np.array([]), negatives, strict)[0] == 0.0
    one_in_ten = threshold_at(negatives, 0.1)
    assert 0.9 < one_in_ten < 0.95 and rates(np.array([]), negatives, one_in_ten)[0] == 0.1
    assert threshold_at(negatives, 0.05) == strict  # finer than 1/10 cannot be reached


def test_embed_metrics_report_fnmr_at_each_fmr():
    genuine = np.array([0.2, 0.5, 0.6, 0.7, 0.8])
    impostor = np.linspace(-0.1, 0.3, 100)  # the top impostor scores 0.3
    metrics = embed_metrics(genuine, impostor, choice(accept=0.45, reject=0.25))
    assert metrics["fnmr_at_fmr"]["0"]["fnmr"] == 0.2  # only 0.2 falls below ~0.3
    assert metrics["fnmr_at_fmr"]["0.01"]["fmr"] == 0.01
    assert metrics["at_accept"] == {"threshold": 0.45, "fmr": 0.0, "fnmr": 0.2}
    assert metrics["at_reject"]["fmr"] == pytest.approx(0.13, abs=0.01)
    assert metrics["smallest_measurable_fmr"] == 0.01


def test_liveness_metrics_report_apcer_bpcer():
    bona_fide = np.array([0.95, 0.99, 0.6, 0.3])
    attacks = np.array([0.1, 0.2, 0.95, 0.97])
    metrics = liveness_metrics(
        bona_fide, attacks, ["print", "print", "screen", "screen"], choice(accept=0.9, reject=0.5)
    )
    assert metrics["at_accept"] == {"threshold": 0.9, "apcer": 0.5, "bpcer": 0.5}
    assert metrics["at_reject"] == {"threshold": 0.5, "apcer": 0.5, "bpcer": 0.25}
    assert metrics["apcer_at_accept_by_attack"] == {"print": 0.0, "screen": 1.0}
    assert metrics["bpcer_at_apcer_5pct"]["apcer"] == 0.0
    assert metrics["bpcer_at_apcer_5pct"]["bpcer"] == 0.75  # only 0.99 beats the best attack


@pytest.fixture
def identities(photo_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "identities"
    for person, names in {
        "obama": ("obama.jpg", "obama2.jpg", "obama3.jpg"),
        "biden": ("biden.jpg",),
        "collins": ("astronaut.png",),
    }.items():
        for name in names:
            link(photo_dir / name, root / person / name)
    return root


def test_read_pairs_from_folders_and_csv(identities, tmp_path):
    pairs = read_pairs(identities)
    assert len(pairs) == 10 and sum(p.same for p in pairs) == 3
    listing = tmp_path / "pairs.csv"
    with listing.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "same"])
        writer.writerows(
            [[p.a.relative_to(tmp_path), p.b.relative_to(tmp_path), int(p.same)] for p in pairs]
        )
    assert read_pairs(listing) == pairs
    with pytest.raises(LabelledSetError):
        read_presentations(identities)  # no live/ and attack/


def test_evaluate_embed_records_metrics_plot_and_card(
    model_registry_engine, scratch_cache, identities
):
    evaluation = evaluate(
        model_registry_engine,
        scratch_cache,
        "embed",
        identities,
        progress=lambda _: None,
        split=False,
    )
    metrics = evaluation.metrics
    assert (metrics["genuine_pairs"], metrics["impostor_pairs"]) == (3, 7)
    assert metrics["at_accept"]["fnmr"] == 0.0 and metrics["at_reject"]["fmr"] == 0.0
    assert min(evaluation.positives) > max(evaluation.negatives)
    (stored,) = history(
        model_registry_engine, get_version(model_registry_engine, evaluation.model.ref).id
    )
    assert stored.metrics["genuine_scores"] == metrics["genuine_scores"]
    assert stored.dataset == "identities" and len(stored.dataset_digest) == 64
    assert not stored.passed  # 7 impostor pairs cannot show FMR 0.1 %
    with Image.open(evaluation.plot) as plot:
        assert plot.size == (960, 400)
        assert len(plot.getcolors(1 << 16) or []) > 3  # drawn, not blank
    card = card_path(scratch_cache, evaluation.model.ref).read_text()
    assert "genuine_pairs: 3" in card and f"[plot]({evaluation.plot.name})" in card
    assert "not measurable on 7 impostor_pairs" in card


def test_evaluate_liveness_on_strong_simulated_attacks(
    model_registry_engine, scratch_cache, small_liveness_set
):
    evaluation = evaluate(
        model_registry_engine,
        scratch_cache,
        "liveness",
        small_liveness_set,
        progress=lambda _: None,
        split=False,
    )
    metrics = evaluation.metrics
    assert (metrics["bona_fide"], metrics["attacks"]) == (2, 2)
    assert metrics["at_accept"]["bpcer"] == 0.0
    assert metrics["at_reject"]["apcer"] == 0.0  # both attacks fall below the reject threshold
    assert set(metrics["apcer_at_accept_by_attack"]) == {"print-held-up"}


def test_cli_evaluate(
    model_registry_engine, scratch_cache, identities, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("IDFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("IDFLOW_MODEL_CACHE", str(scratch_cache))
    monkeypatch.setenv("IDFLOW_DATABASE_URL", str(model_registry_engine.url))
    assert (
        idflow(["models", "evaluate", "embed", str(identities), "--no-record", "--no-split"]) == 0
    )
    out = capsys.readouterr().out
    assert "genuine_pairs: 3" in out and "does NOT meet the embed targets" in out
    assert not history(
        model_registry_engine, get_version(model_registry_engine, "faceplugin-fr-feature@0.0.1").id
    )
    assert idflow(["models", "evaluate", "liveness", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_split_is_by_group_deterministic_and_half_held_out():
    groups = [f"photo-{i}" for i in range(9)]
    tune, holdout = split_groups(groups)
    assert (tune, holdout) == split_groups(reversed(groups * 2))  # order and repeats: same
    assert len(holdout) == 4 and not tune & holdout and tune | holdout == set(groups)


def judged(score: float, live: bool, kind: str, *quality: R) -> Judged:
    return Judged(score, live, kind, quality)


def test_decisions_put_the_quality_check_before_the_liveness_bands():
    """A capture sent back is not declined and not approved; an attack sent back is left out
    of the attack rate (judged when it returns), so a set of blurred attacks cannot pass."""
    model = ModelChoice("liveness", "m", "1", "0" * 64, accept=0.9, reject=0.5)
    metrics = decision_metrics(
        [
            judged(0.01, True, "low-res", R.QUALITY_FACE_TOO_SMALL_FOR_LIVENESS),
            judged(0.95, True, "photo"),
            judged(0.70, True, "photo"),
            judged(0.20, True, "photo"),
            judged(0.99, False, "print/flat", R.QUALITY_BLURRY),
            judged(0.95, False, "print/flat"),
            judged(0.10, False, "screen/glare"),
        ],
        model,
    )
    assert metrics["decisions"] == {
        "bona_fide": {
            "low-res": {"retry": 1},
            "photo": {"approved": 1, "declined": 1, "review": 1},
        },
        "attacks": {"print": {"approved": 1, "retry": 1}, "screen": {"declined": 1}},
    }
    assert metrics["decided"] == {
        "bona_fide": 4,
        "attacks_judged": 2,
        "attacks_retried": 1,
        "attacks_approved": 0.5,
        "bona_fide_declined": 0.25,
        "bona_fide_not_approved": 0.75,
    }
    assert metrics["retry_reasons"] == {
        "QUALITY_FACE_TOO_SMALL_FOR_LIVENESS": 1,
        "QUALITY_BLURRY": 1,
    }


def test_evaluate_splits_by_source_photo_and_reports_both_parts(
    model_registry_engine, scratch_cache, photo_dir, tmp_path
):
    root = tmp_path / "by-photo"
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        link(photo_dir / name, root / "live" / "photo" / name)
        with Image.open(photo_dir / name) as photo:
            attack = root / "attack" / "print-held-up" / f"{Path(name).stem}.png"
            attack.parent.mkdir(parents=True, exist_ok=True)
            ATTACKS["print-held-up"](photo.convert("RGB")).save(attack)
    evaluation = evaluate(
        model_registry_engine,
        scratch_cache,
        "liveness",
        root,
        record=False,
        progress=lambda _: None,
    )
    metrics = evaluation.metrics
    _, holdout = split_groups(["obama", "obama2", "obama3", "biden"])
    assert metrics["split"] | {"rule": None} == {
        "rule": None,
        "tune_groups": 2,
        "holdout_groups": 2,
        "tune_items": 4,
        "holdout_items": 4,
    }
    # The top level (the gate's evidence) is the holdout; the tune part is reported beside it.
    assert (metrics["bona_fide"], metrics["attacks"]) == (2, 2)
    assert (metrics["tune"]["bona_fide"], metrics["tune"]["attacks"]) == (2, 2)
    assert sum(metrics["decisions"]["bona_fide"]["photo"].values()) == 2
    assert {p.group for p in read_presentations(root)} >= holdout
    assert len(evaluation.positives) == len(evaluation.negatives) == 2  # the holdout's scores
    assert "accept" in metrics["holdout_at_tune_thresholds"]
    summary = evaluation.summary()
    assert "targets on tune" in summary and "targets on holdout" in summary
    assert len(evaluation.tune_targets) == len(evaluation.targets) == 3


def test_a_part_without_one_class_is_one_clear_error(
    model_registry_engine, scratch_cache, small_liveness_set
):
    """The two live photos and the two attacked ones are four source photos: one part gets
    only bona fide. Said in one line, with the way out."""
    with pytest.raises(LabelledSetError, match="no-split"):
        evaluate(
            model_registry_engine,
            scratch_cache,
            "liveness",
            small_liveness_set,
            record=False,
            progress=lambda _: None,
        )
