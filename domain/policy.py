"""The decision policy: from quality reasons and scores to a decision.

Plain, deterministic functions (stdlib only) that the workflow calls and the
tests exercise without Temporal. Thresholds come from the model registry via
``ModelChoice``: a score at or above ``accept`` passes, below ``reject`` fails,
and anything in between is the grey zone that a person reviews.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from .contracts import ModelChoice, QualityReport, ReviewDecision, Stage
from .reasons import INPUT_REASONS, QUALITY_REASONS, Decision, ReasonCode

# Input the user can fix by capturing again; every other rejection is final.
RECAPTURABLE = QUALITY_REASONS | {
    ReasonCode.INPUT_UNREADABLE,
    ReasonCode.INPUT_TOO_LARGE,
    ReasonCode.INPUT_UNSUPPORTED_FORMAT,
}

# Rejections an activity may raise (non-retryable, ``type`` = the reason code).
REJECTION_REASONS = INPUT_REASONS | {
    ReasonCode.DEVICE_PROOF_INVALID,
    ReasonCode.CLAIMS_INVALID,
    ReasonCode.MODEL_UNAVAILABLE,
}


# Stages whose steps can give up (their retries run out) before anything is decided.
UNDECIDED_STAGES = frozenset({Stage.RESOLVING_MODELS, Stage.QUALITY_CHECK, Stage.BIOMETRICS})


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    reasons: tuple[ReasonCode, ...] = ()


class Band(StrEnum):
    PASS = "pass"
    UNCERTAIN = "uncertain"
    FAIL = "fail"


class ThresholdsMissing(ValueError):
    """A deciding model version has no accept/reject thresholds in the registry."""


def require_thresholds(model: ModelChoice) -> None:
    if model.accept is None or model.reject is None:
        raise ThresholdsMissing(f"model {model.ref} ({model.task}) has no accept/reject thresholds")
    if model.reject > model.accept:
        raise ThresholdsMissing(
            f"model {model.ref} ({model.task}): reject threshold {model.reject} "
            f"is above accept threshold {model.accept}"
        )


def band(score: float, model: ModelChoice) -> Band:
    require_thresholds(model)
    assert model.accept is not None and model.reject is not None
    if score >= model.accept:
        return Band.PASS
    if score < model.reject:
        return Band.FAIL
    return Band.UNCERTAIN


def quality_outcome(reports: Iterable[QualityReport]) -> Outcome | None:
    """RETRY with every quality reason of every image, or None when all are usable."""
    reasons = _unique(reason for report in reports for reason in report.reasons)
    return Outcome(Decision.RETRY, reasons) if reasons else None


def biometric_outcome(
    liveness: float, liveness_model: ModelChoice, similarity: float, embed_model: ModelChoice
) -> Outcome:
    """Any failing check declines; otherwise any uncertain check goes to review."""
    checks = (
        (band(liveness, liveness_model), ReasonCode.LIVENESS_FAILED, ReasonCode.LIVENESS_UNCERTAIN),
        (band(similarity, embed_model), ReasonCode.FACE_MISMATCH, ReasonCode.FACE_MATCH_UNCERTAIN),
    )
    failed = tuple(fail for result, fail, _ in checks if result is Band.FAIL)
    if failed:
        return Outcome(Decision.DECLINED, failed)
    uncertain = tuple(unsure for result, _, unsure in checks if result is Band.UNCERTAIN)
    if uncertain:
        return Outcome(Decision.REVIEW, uncertain)
    return Outcome(Decision.APPROVED)


def rejection_outcome(reason: ReasonCode) -> Outcome:
    """Input that no retry can fix: recapture when the user can, else decline."""
    if reason not in REJECTION_REASONS | QUALITY_REASONS:
        raise ValueError(f"{reason.value} is not a rejection reason")
    return Outcome(Decision.RETRY if reason in RECAPTURABLE else Decision.DECLINED, (reason,))


def ingest_outcome(refused: Iterable[ReasonCode]) -> Outcome:
    """Images refused at ingest (nothing was stored to check): decided at once, each reason once."""
    outcomes = [rejection_outcome(reason) for reason in refused]
    if not outcomes:
        raise ValueError("no image was refused")
    final = any(outcome.decision is Decision.DECLINED for outcome in outcomes)
    reasons = _unique(outcome.reasons[0] for outcome in outcomes)
    return Outcome(Decision.DECLINED if final else Decision.RETRY, reasons)


def processing_failed_outcome(stage: Stage, approved: Outcome | None = None) -> Outcome:
    """A step kept failing on an unexpected error until its retries ran out: a person decides.

    Before a decision (models, quality check, liveness, face match): REVIEW with
    PROCESSING_FAILED; there is no score to go on. During credential binding the
    approval stands: REVIEW with its reasons plus PROCESSING_FAILED, and a
    reviewer who approves has the binding tried again.
    """
    if stage in UNDECIDED_STAGES:
        return Outcome(Decision.REVIEW, (ReasonCode.PROCESSING_FAILED,))
    if stage is Stage.BINDING_CREDENTIAL:
        if approved is None or approved.decision is not Decision.APPROVED:
            raise ValueError("credential binding only follows an approval")
        return Outcome(Decision.REVIEW, (*approved.reasons, ReasonCode.PROCESSING_FAILED))
    raise ValueError(f"no step of stage {stage.value} gives up: its retries never run out")


def review_outcome(grey_zone: Outcome, review: ReviewDecision | None) -> Outcome:
    """The reviewer's decision, or REVIEW_EXPIRED when nobody decided in time.

    The grey-zone reasons are kept so that the record shows why it was reviewed.
    """
    if review is None:
        return Outcome(Decision.DECLINED, (*grey_zone.reasons, ReasonCode.REVIEW_EXPIRED))
    if review.approve:
        return Outcome(Decision.APPROVED, (*grey_zone.reasons, ReasonCode.REVIEW_APPROVED))
    return Outcome(Decision.DECLINED, (*grey_zone.reasons, ReasonCode.REVIEW_DECLINED))


def _unique(reasons: Iterable[ReasonCode]) -> tuple[ReasonCode, ...]:
    return tuple(dict.fromkeys(reasons))
