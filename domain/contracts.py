"""Data that crosses process boundaries: workflow input/output, activity results.

Plain dataclasses of plain values (stdlib only) so that the workflow sandbox,
the Temporal data converter, the activities and the client all share them.
Nothing here holds image bytes, embeddings, claims or the subject reference:
what is personal stays in the encrypted store (``HolderData``, blobs), where a
purge reaches it, and crosses Temporal as a ``BlobRef``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from .enums import ImageRole, ModelTask
from .reasons import Decision, ReasonCode
from .signatures import ModelSignature


@dataclass(frozen=True)
class BlobRef:
    """A stored image: its id in the blob store and the sha256 of its bytes."""

    blob_id: str
    sha256: str
    media_type: str = "application/octet-stream"


@dataclass(frozen=True)
class DeviceBinding:
    """The holder's device key (P-256 JWK) and its proof-of-possession JWT."""

    public_jwk: dict[str, str]
    proof_jwt: str


@dataclass(frozen=True)
class ModelChoice:
    """An exact model version chosen for a task, with its decision thresholds.

    ``accept`` and ``reject`` bound the grey zone: scores at or above
    ``accept`` pass, below ``reject`` fail, anything between goes to review.
    """

    task: ModelTask
    name: str
    version: str
    sha256: str
    accept: float | None = None
    reject: float | None = None
    alias: str | None = None
    # What the model takes and gives (verification/signatures.py), stored with the version.
    signature: ModelSignature | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class FaceObservation:
    """Where the face is in the decoded (EXIF-oriented) image, in pixels."""

    box: list[float]  # x1, y1, x2, y2 (square, clipped to the image)
    landmarks5: list[list[float]]  # left eye, right eye, nose, mouth left, mouth right
    detection_score: float


@dataclass(frozen=True)
class QualityMeasures:
    """Model-free and model-based quality measures of one image."""

    width: int
    height: int
    face_count: int
    sharpness: float  # variance of the Laplacian on the face (or whole image)
    brightness: float  # mean luma 0..255
    contrast: float  # std of luma 0..255
    clipped_dark: float  # fraction of pixels <= 5
    clipped_bright: float  # fraction of pixels >= 250
    face_size_px: float | None = None  # side of the square face box
    inter_eye_px: float | None = None
    roll_deg: float | None = None
    yaw_deg: float | None = None
    pitch_deg: float | None = None
    eyes_closed: float | None = None  # P(closed) of the more open eye (both must be closed)
    # Image pixels behind one pixel of the liveness model's input, the fewest over its crops
    # (models/face/inputs.py ``source_px_per_input_px``); measured on the selfie only.
    liveness_source_px: float | None = None


@dataclass(frozen=True)
class QualityReport:
    role: ImageRole
    measures: QualityMeasures
    face: FaceObservation | None
    reasons: list[ReasonCode] = field(default_factory=list)


@dataclass(frozen=True)
class HolderData:
    """Who the credential is for: the device key with its proof, and the mDL claims.

    Personal, so it never travels through Temporal: the client stores it in the
    encrypted blob store under the verification's data key (a purge destroys
    it with the images) and the workflow carries its ``BlobRef``.
    """

    device: DeviceBinding
    claims: dict[str, Any]

    MEDIA_TYPE: ClassVar[str] = "application/vnd.idflow.holder+json"

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> HolderData:
        document = json.loads(data)
        return cls(DeviceBinding(**document["device"]), dict(document["claims"]))


@dataclass(frozen=True)
class VerificationRequest:
    """What the workflow starts with: references and settings, nothing personal.

    The person's subject reference stays in the verifications table; images
    and ``holder`` (device binding and claims, present when a credential is
    wanted) are in the encrypted store, so a purge leaves nothing personal in
    the history. ``device`` and ``claims`` inline are only in requests recorded
    before holder data moved to the store (replayed, or still running).
    """

    verification_id: str  # the caller's id; the workflow id derives from it
    selfie: BlobRef | None  # None when refused at ingest (nothing stored)
    document: BlobRef | None
    holder: BlobRef | None = None
    device: DeviceBinding | None = None  # older requests only
    claims: dict[str, Any] | None = None  # older requests only
    model_pins: dict[str, str] = field(default_factory=dict)  # task -> alias or name@version
    review_deadline_seconds: int = 72 * 3600
    gpu_task_queue: str = "idflow-gpu"  # where liveness and face match run (settings)
    # Attempts each step gets against unexpected errors before a person decides
    # (PROCESSING_FAILED); input no retry can fix is decided on the first attempt.
    processing_attempts: int = 10
    # Images refused at ingest, by role: the verification is decided at once.
    refused: dict[ImageRole, ReasonCode] = field(default_factory=dict)


@dataclass(frozen=True)
class ReviewDecision:
    """Payload of the review update: a decision signed by the staff member who makes it.

    ``staff_id``, ``signed_at`` and ``signature`` are the staff assertion the
    CPU worker checks against the staff token store before the workflow takes
    the decision (``security.staff_assertions``). ``reviewer`` is then set by
    the workflow to the checked staff id; what a caller puts there is ignored
    (histories recorded before reviews were signed carry a typed name in it).
    """

    approve: bool
    reason: str
    staff_id: str = ""
    signed_at: str = ""  # ISO 8601 with time zone
    signature: str = ""  # hex HMAC-SHA256 under the staff member's assertion key
    reviewer: str = ""


@dataclass(frozen=True)
class AuthorizeReviewInput:
    """Check a review's staff assertion (local activity ``authorize_review``)."""

    verification_id: str
    workflow_id: str
    decision: ReviewDecision
    round_opened_at: str  # ISO 8601: when this round of review began


@dataclass(frozen=True)
class IssuedCredential:
    """What the caller hands to the wallet, plus non-personal facts about it.

    In Temporal it carries only ``issuer_signed``, the reference to the
    IssuerSigned bytes in the encrypted store (they hold the claims and the
    portrait, so a purge must reach them); the client fills in
    ``issuer_signed_b64`` for its caller from the store.
    """

    doc_type: str
    mso_digest: str
    device_key_thumbprint: str
    valid_until: str
    signer_serial: str
    issuer_signed: BlobRef | None = None
    issuer_signed_b64: str | None = None


@dataclass
class VerificationResult:
    verification_id: str
    decision: Decision
    reasons: list[ReasonCode]
    scores: dict[str, float] = field(default_factory=dict)
    model_versions: dict[str, str] = field(default_factory=dict)
    credential: IssuedCredential | None = None
    reviewer: str | None = None
    # Tasks whose deciding version came from the canary alias (its share of traffic).
    canary: list[str] = field(default_factory=list)
    # What the shadow versions scored (same names as ``scores``); they decided nothing.
    shadow_scores: dict[str, float] = field(default_factory=dict)
    shadow_versions: dict[str, str] = field(default_factory=dict)  # task -> name@version
    # Reason code -> what was refused, in non-personal words (e.g. the claim and its rule).
    details: dict[str, str] = field(default_factory=dict)


# --- The workflow's stages and activity contracts -----------------------------


class Stage(StrEnum):
    """Where a verification stands; also its ``IdflowStatus`` search attribute."""

    RESOLVING_MODELS = "resolving_models"
    QUALITY_CHECK = "quality_check"
    BIOMETRICS = "biometrics"  # liveness and face match
    AWAITING_REVIEW = "awaiting_review"
    BINDING_CREDENTIAL = "binding_credential"
    RECORDING = "recording"
    COMPLETED = "completed"


@dataclass(frozen=True)
class ResolveModelsInput:
    model_pins: dict[str, str]  # task -> alias or name@version; empty: production
    verification_id: str = ""  # picks the canary share deterministically


@dataclass(frozen=True)
class ResolvedModels:
    """The versions of one verification: those that decide, and shadows that only score.

    ``canary`` names the tasks whose deciding version is the canary alias's
    (the verification fell in its share); ``shadow`` holds, per task, a version
    that scores beside the deciding one and decides nothing.
    """

    deciding: dict[ModelTask, ModelChoice]
    shadow: dict[ModelTask, ModelChoice] = field(default_factory=dict)
    canary: list[ModelTask] = field(default_factory=list)


@dataclass(frozen=True)
class QualityCheckInput:
    """Both images of a verification, checked in one activity (each decoded once)."""

    verification_id: str
    selfie: BlobRef
    document: BlobRef
    models: dict[ModelTask, ModelChoice]  # the tasks the face observation needs
    # A shadow liveness version: when its signature asks for other crops than the deciding
    # version's, they are cut here too, so that the GPU task can score it.
    shadow_liveness: ModelChoice | None = None


@dataclass(frozen=True)
class QualityResult:
    selfie: QualityReport
    document: QualityReport
    # The biometric models' face crops, in the encrypted blob store; only when both
    # images show a face (the GPU pool then needs neither photo).
    face_crops: BlobRef | None = None


@dataclass(frozen=True)
class BiometricsInput:
    verification_id: str
    face_crops: BlobRef  # from the quality check: no face is detected or decoded twice
    liveness: ModelChoice
    embed: ModelChoice
    # Shadow versions score the same crops in the same activity; they decide nothing.
    shadow_liveness: ModelChoice | None = None
    shadow_embed: ModelChoice | None = None


@dataclass(frozen=True)
class BiometricsResult:
    liveness: float  # probability that the selfie shows a live person
    face_match: float  # cosine similarity of the two embeddings; they stay in the activity
    shadow_liveness: float | None = None  # None: no shadow version, or it failed
    shadow_face_match: float | None = None


@dataclass(frozen=True)
class RecordInput:
    """One row update plus one audit entry for a verification."""

    verification_id: str
    workflow_id: str
    stage: Stage
    event: str  # audit event name, e.g. "review_requested", "decided"
    result: VerificationResult | None = None
    reviewer: str | None = None
    note: str | None = None  # reviewer's reason: kept in the audit log only
    # A decision before the result (REVIEW, while a person decides) and its reasons.
    decision: Decision | None = None
    reasons: list[ReasonCode] = field(default_factory=list)


@dataclass(frozen=True)
class DecisionEventInput:
    """A decided verification to announce to the webhooks: ids and vocabulary only."""

    verification_id: str
    decision: Decision
    reasons: list[ReasonCode] = field(default_factory=list)


@dataclass(frozen=True)
class WebhookFailure:
    """A webhook delivery the sender gave up on, and why (a status code or error class)."""

    delivery_id: str
    failure: str


@dataclass
class VerificationProgress:
    """What the ``progress`` query returns: the stage and what is known so far."""

    verification_id: str
    stage: Stage
    decision: Decision | None = None
    reasons: list[ReasonCode] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    model_versions: dict[str, str] = field(default_factory=dict)
    review_deadline: str | None = None  # ISO 8601, while awaiting review
    canary: list[str] = field(default_factory=list)  # tasks decided by the canary version
    shadow_scores: dict[str, float] = field(default_factory=dict)  # decided nothing
    shadow_versions: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)  # reason code -> non-personal detail


# --- Credential binding -------------------------------------------------------


@dataclass(frozen=True)
class IssueCredentialInput:
    """Issue the mdoc for an approved verification (activity ``issue_credential``).

    ``portrait`` is the verified selfie: the credential's portrait is taken
    from it. ``holder`` is the stored ``HolderData``; ``device`` and ``claims``
    inline come only from requests recorded before it moved to the store.
    """

    verification_id: str
    device: DeviceBinding | None
    claims: dict[str, Any] | None
    portrait: BlobRef
    holder: BlobRef | None = None


# --- Retention ----------------------------------------------------------------


@dataclass(frozen=True)
class PurgeRequest:
    """Destroy a verification's personal data (workflow ``PurgeVerification``).

    ``actor`` is ``"retention"`` for the schedule or the staff id who asked;
    ``reason`` is a short non-personal note kept in the audit log.
    """

    verification_id: str
    actor: str
    reason: str


@dataclass(frozen=True)
class PurgeResult:
    verification_id: str
    blobs_deleted: int
    already_purged: bool  # an earlier purge had destroyed the data key


# --- Backtests (model lifecycle) ---------------------------------------------


@dataclass(frozen=True)
class BacktestRequest:
    """Re-score retained verifications with candidate versions (workflow ``Backtest``)."""

    backtest_id: str
    candidate: dict[str, str]  # task -> name@version, replacing what decided each verification
    reasons: list[str] = field(default_factory=list)  # any of these reason codes; empty: any
    decision: str | None = None  # only verifications that ended so
    since_seconds: int = 7 * 24 * 3600  # decided within this window before the start
    limit: int = 500
    concurrency: int = 4  # child workflows at once
    gpu_task_queue: str = "idflow-gpu"
    processing_attempts: int = 3


@dataclass(frozen=True)
class BacktestSelection:
    decided_after: str  # ISO 8601
    reasons: list[str]
    decision: str | None
    limit: int


@dataclass(frozen=True)
class BacktestCase:
    """A recorded verification to re-score: what was decided (no personal data)."""

    verification_id: str
    workflow_id: str
    decision: str
    reasons: list[str]
    scores: dict[str, float]
    purged: bool  # its images were crypto-shredded: it cannot be re-scored
    model_versions: dict[str, str] = field(default_factory=dict)  # task -> what decided


@dataclass(frozen=True)
class BacktestInputs:
    """Where a verification's images are, and the pins it ran with (from its history)."""

    selfie: BlobRef | None
    document: BlobRef | None
    model_pins: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RescoreRequest:
    case: BacktestCase
    candidate: dict[str, str]
    gpu_task_queue: str
    processing_attempts: int


class RescoreStatus(StrEnum):
    RESCORED = "rescored"
    PURGED = "purged"  # images crypto-shredded: skipped
    UNAVAILABLE = "unavailable"  # no history or no stored images to re-score
    FAILED = "failed"  # a step kept failing


@dataclass(frozen=True)
class Rescore:
    verification_id: str
    status: RescoreStatus
    decision: str | None = None  # the candidate's automatic decision
    reasons: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    model_versions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DecisionChange:
    verification_id: str
    before: str  # recorded decision (reasons)
    after: str  # the candidate's automatic decision (reasons)
    scores_before: dict[str, float]
    scores_after: dict[str, float]


@dataclass
class BacktestReport:
    backtest_id: str
    candidate: dict[str, str]
    selection: BacktestSelection
    selected: int = 0
    rescored: int = 0
    purged: int = 0  # skipped: images crypto-shredded
    unavailable: int = 0
    failed: int = 0
    unchanged: int = 0
    changes: dict[str, int] = field(default_factory=dict)  # "review -> approved": count
    changed: list[DecisionChange] = field(default_factory=list)
