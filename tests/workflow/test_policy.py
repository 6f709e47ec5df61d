"""The decision policy as plain functions, without Temporal."""

from __future__ import annotations

import pytest

from domain import policy
from domain.contracts import (
    ModelChoice,
    QualityMeasures,
    QualityReport,
    ReviewDecision,
    Stage,
)
from domain.reasons import Decision, ReasonCode

LIVENESS = ModelChoice("liveness", "live", "1", "0" * 64, accept=0.8, reject=0.3)
EMBED = ModelChoice("embed", "feat", "1", "0" * 64, accept=0.5, reject=0.35)
MEASURES = QualityMeasures(640, 480, 1, 100.0, 120.0, 50.0, 0.0, 0.0)


def report(*reasons: ReasonCode) -> QualityReport:
    return QualityReport("selfie", MEASURES, None, list(reasons))


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0.8, policy.Band.PASS),
        (0.99, policy.Band.PASS),
        (0.5, policy.Band.UNCERTAIN),
        (0.3, policy.Band.UNCERTAIN),
        (0.2999, policy.Band.FAIL),
    ],
)
def test_band_edges(score: float, expected: policy.Band) -> None:
    assert policy.band(score, LIVENESS) is expected


def test_missing_or_inverted_thresholds_are_refused() -> None:
    with pytest.raises(policy.ThresholdsMissing, match="live@1"):
        policy.require_thresholds(ModelChoice("liveness", "live", "1", "0" * 64))
    with pytest.raises(policy.ThresholdsMissing, match="above accept"):
        policy.require_thresholds(ModelChoice("embed", "f", "1", "0" * 64, accept=0.3, reject=0.5))


def test_quality_reasons_of_both_images_ask_for_a_recapture() -> None:
    outcome = policy.quality_outcome(
        [
            report(ReasonCode.QUALITY_BLURRY),
            report(ReasonCode.QUALITY_NO_FACE, ReasonCode.QUALITY_BLURRY),
        ]
    )
    assert outcome == policy.Outcome(
        Decision.RETRY, (ReasonCode.QUALITY_BLURRY, ReasonCode.QUALITY_NO_FACE)
    )
    assert policy.quality_outcome([report(), report()]) is None


@pytest.mark.parametrize(
    ("liveness", "similarity", "decision", "reasons"),
    [
        (0.9, 0.7, Decision.APPROVED, ()),
        (0.9, 0.1, Decision.DECLINED, (ReasonCode.FACE_MISMATCH,)),
        (0.1, 0.7, Decision.DECLINED, (ReasonCode.LIVENESS_FAILED,)),
        (0.1, 0.1, Decision.DECLINED, (ReasonCode.LIVENESS_FAILED, ReasonCode.FACE_MISMATCH)),
        # A failure wins over an uncertainty: nothing to review.
        (0.5, 0.1, Decision.DECLINED, (ReasonCode.FACE_MISMATCH,)),
        (0.9, 0.4, Decision.REVIEW, (ReasonCode.FACE_MATCH_UNCERTAIN,)),
        (
            0.5,
            0.4,
            Decision.REVIEW,
            (ReasonCode.LIVENESS_UNCERTAIN, ReasonCode.FACE_MATCH_UNCERTAIN),
        ),
    ],
)
def test_biometric_outcome(
    liveness: float, similarity: float, decision: Decision, reasons: tuple[ReasonCode, ...]
) -> None:
    assert policy.biometric_outcome(liveness, LIVENESS, similarity, EMBED) == policy.Outcome(
        decision, reasons
    )


def test_unreadable_input_asks_for_a_recapture_but_tampering_declines() -> None:
    assert policy.rejection_outcome(ReasonCode.INPUT_UNREADABLE).decision is Decision.RETRY
    assert policy.rejection_outcome(ReasonCode.INPUT_TOO_LARGE).decision is Decision.RETRY
    assert policy.rejection_outcome(ReasonCode.INPUT_INTEGRITY).decision is Decision.DECLINED
    assert policy.rejection_outcome(ReasonCode.DEVICE_PROOF_INVALID) == policy.Outcome(
        Decision.DECLINED, (ReasonCode.DEVICE_PROOF_INVALID,)
    )
    with pytest.raises(ValueError, match="FACE_MISMATCH"):
        policy.rejection_outcome(ReasonCode.FACE_MISMATCH)


def test_review_outcome_keeps_why_it_was_reviewed() -> None:
    grey = policy.Outcome(Decision.REVIEW, (ReasonCode.FACE_MATCH_UNCERTAIN,))
    approve = ReviewDecision(True, "matches the passport", reviewer="staff-7")
    decline = ReviewDecision(False, "different person", reviewer="staff-7")
    assert policy.review_outcome(grey, approve) == policy.Outcome(
        Decision.APPROVED, (ReasonCode.FACE_MATCH_UNCERTAIN, ReasonCode.REVIEW_APPROVED)
    )
    assert policy.review_outcome(grey, decline).decision is Decision.DECLINED
    assert policy.review_outcome(grey, None) == policy.Outcome(
        Decision.DECLINED, (ReasonCode.FACE_MATCH_UNCERTAIN, ReasonCode.REVIEW_EXPIRED)
    )


@pytest.mark.parametrize("stage", [Stage.RESOLVING_MODELS, Stage.QUALITY_CHECK, Stage.BIOMETRICS])
def test_a_step_that_gives_up_before_a_decision_goes_to_a_person(stage: Stage) -> None:
    assert policy.processing_failed_outcome(stage) == policy.Outcome(
        Decision.REVIEW, (ReasonCode.PROCESSING_FAILED,)
    )


def test_a_binding_that_gives_up_keeps_the_approval_for_the_reviewer() -> None:
    approved = policy.Outcome(
        Decision.APPROVED, (ReasonCode.FACE_MATCH_UNCERTAIN, ReasonCode.REVIEW_APPROVED)
    )
    pending = policy.processing_failed_outcome(Stage.BINDING_CREDENTIAL, approved)
    assert pending == policy.Outcome(
        Decision.REVIEW, (*approved.reasons, ReasonCode.PROCESSING_FAILED)
    )
    # The reviewer's approval binds again; a decline or the deadline ends without a credential.
    again = policy.review_outcome(
        pending, ReviewDecision(True, "issuer keys restored", reviewer="staff-7")
    )
    assert again.decision is Decision.APPROVED and again.reasons[-2:] == (
        ReasonCode.PROCESSING_FAILED,
        ReasonCode.REVIEW_APPROVED,
    )
    assert policy.review_outcome(pending, None).decision is Decision.DECLINED

    with pytest.raises(ValueError, match="only follows an approval"):
        policy.processing_failed_outcome(Stage.BINDING_CREDENTIAL)
    with pytest.raises(ValueError, match="only follows an approval"):
        policy.processing_failed_outcome(
            Stage.BINDING_CREDENTIAL, policy.Outcome(Decision.DECLINED)
        )


@pytest.mark.parametrize("stage", [Stage.AWAITING_REVIEW, Stage.RECORDING, Stage.COMPLETED])
def test_stages_whose_steps_never_give_up_have_no_processing_failure(stage: Stage) -> None:
    with pytest.raises(ValueError, match="never run out"):
        policy.processing_failed_outcome(stage)


def test_images_refused_at_ingest_are_decided_at_once_each_reason_once() -> None:
    refused = [ReasonCode.INPUT_TOO_LARGE, ReasonCode.INPUT_UNREADABLE, ReasonCode.INPUT_TOO_LARGE]
    outcome = policy.ingest_outcome(refused)
    assert outcome == policy.Outcome(
        Decision.RETRY, (ReasonCode.INPUT_TOO_LARGE, ReasonCode.INPUT_UNREADABLE)
    )
    with pytest.raises(ValueError):
        policy.ingest_outcome([])
