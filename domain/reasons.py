"""The one vocabulary of outcomes: decisions and the reason codes behind them.

Reason codes are plaintext in search attributes and the database, so each one
names a kind of outcome, never anything about the person.

Every verification ends in one of the decisions below, whatever fails:

- input no retry can fix (corrupt or purged images, a bad device proof, an
  unknown model pin) is decided on the first attempt with its reason code;
- a step that keeps failing on an unexpected error (a worker fault, a broken
  model file, a database outage) is retried, and once its attempts are spent
  (``VerificationRequest.processing_attempts``) the verification goes to a
  person: REVIEW with ``PROCESSING_FAILED``, visible in the database row, the
  audit log and the ``IdflowReasons`` search attribute while it waits
  (``domain.policy.processing_failed_outcome`` has the mapping).
"""

from __future__ import annotations

from enum import StrEnum


class Decision(StrEnum):
    APPROVED = "approved"
    DECLINED = "declined"
    RETRY = "retry"  # the user should recapture: a quality problem
    REVIEW = "review"  # a person decides (grey zone)


class ReasonCode(StrEnum):
    # Image quality: the user should recapture (decision RETRY).
    QUALITY_NO_FACE = "QUALITY_NO_FACE"
    QUALITY_MULTIPLE_FACES = "QUALITY_MULTIPLE_FACES"
    QUALITY_FACE_TOO_SMALL = "QUALITY_FACE_TOO_SMALL"
    QUALITY_BLURRY = "QUALITY_BLURRY"
    QUALITY_TOO_DARK = "QUALITY_TOO_DARK"
    QUALITY_OVEREXPOSED = "QUALITY_OVEREXPOSED"
    QUALITY_LOW_CONTRAST = "QUALITY_LOW_CONTRAST"
    QUALITY_EYES_CLOSED = "QUALITY_EYES_CLOSED"
    QUALITY_POSE = "QUALITY_POSE"
    # The liveness model would see the face enlarged from fewer pixels than its input has
    # (domain/quality_rules.py): it cannot judge, so the user captures again, nearer or sharper.
    QUALITY_FACE_TOO_SMALL_FOR_LIVENESS = "QUALITY_FACE_TOO_SMALL_FOR_LIVENESS"
    # Input that cannot be processed at all (decided on the first attempt).
    INPUT_UNREADABLE = "INPUT_UNREADABLE"
    INPUT_TOO_LARGE = "INPUT_TOO_LARGE"
    INPUT_UNSUPPORTED_FORMAT = "INPUT_UNSUPPORTED_FORMAT"
    INPUT_INTEGRITY = "INPUT_INTEGRITY"  # blob does not match its sha256 reference
    INPUT_PURGED = "INPUT_PURGED"  # blob was crypto-shredded by retention
    # Biometric checks.
    LIVENESS_FAILED = "LIVENESS_FAILED"
    LIVENESS_UNCERTAIN = "LIVENESS_UNCERTAIN"  # grey zone: goes to review
    FACE_MISMATCH = "FACE_MISMATCH"
    FACE_MATCH_UNCERTAIN = "FACE_MATCH_UNCERTAIN"  # grey zone: goes to review
    # Credential binding.
    DEVICE_PROOF_INVALID = "DEVICE_PROOF_INVALID"
    CLAIMS_INVALID = "CLAIMS_INVALID"
    # A step kept failing on an unexpected error until its retries ran out: a
    # person decides (REVIEW). In the quality check, liveness or face match there
    # is no score to go on; during credential binding the approval stands and
    # approving again binds again (the issuer never signs twice for one verification).
    PROCESSING_FAILED = "PROCESSING_FAILED"
    # Review.
    REVIEW_APPROVED = "REVIEW_APPROVED"
    REVIEW_DECLINED = "REVIEW_DECLINED"
    REVIEW_EXPIRED = "REVIEW_EXPIRED"
    # Models.
    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"


QUALITY_REASONS = frozenset(r for r in ReasonCode if r.value.startswith("QUALITY_"))
INPUT_REASONS = frozenset(r for r in ReasonCode if r.value.startswith("INPUT_"))
