"""IdentityVerification: the durable verification, as the business process reads.

    resolve models → quality check (selfie and document, one CPU task)
    → liveness and face match (one GPU task, from the face crops the quality check cut)
    → review by a person when a score falls in the grey zone
    → credential binding when approved → record the result
    → announce the decision to the registered webhooks (a delivery workflow each)

Deterministic code only: no I/O, no numpy. The activities do the work; the
decision is ``domain.policy``. Every verification ends in a recorded
decision: input an activity can never process raises a non-retryable error
whose type is a reason code and is decided at once; a step that keeps failing
on an unexpected error is retried ``request.processing_attempts`` times and
then left to a person (REVIEW, ``PROCESSING_FAILED``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities import names
    from domain import policy
    from domain.contracts import (
        AuthorizeReviewInput,
        BiometricsInput,
        BiometricsResult,
        BlobRef,
        DecisionEventInput,
        IssueCredentialInput,
        IssuedCredential,
        ModelChoice,
        QualityCheckInput,
        QualityResult,
        RecordInput,
        ResolvedModels,
        ResolveModelsInput,
        ReviewDecision,
        Stage,
        VerificationProgress,
        VerificationRequest,
        VerificationResult,
    )
    from domain.enums import ModelTask
    from domain.reasons import Decision, ReasonCode
    from workflows import search_attributes
    from workflows.webhooks import WebhookDelivery, delivery_workflow_id

WORKFLOW_ID_PREFIX = "idv-"
# Patch: reviews carry a staff assertion checked by the CPU worker before they count.
SIGNED_REVIEWS = "signed-reviews"
# Patch: a decided verification announces its decision to the webhooks.
WEBHOOKS = "webhooks"

# A rejection is final: never retry it, whatever an activity forgot to mark.
_NEVER_RETRY = sorted(reason.value for reason in policy.REJECTION_REASONS)


def _retries(first: timedelta, longest: timedelta, attempts: int = 0) -> RetryPolicy:
    """Exponential backoff from ``first`` up to ``longest``; 0 attempts: no limit."""
    return RetryPolicy(
        initial_interval=first,
        maximum_interval=longest,
        maximum_attempts=attempts,
        non_retryable_error_types=_NEVER_RETRY,
    )


@dataclass(frozen=True)
class _Step:
    """How one kind of processing step runs; its attempts come from the request."""

    start_to_close: timedelta
    first_retry: timedelta
    longest_retry: timedelta
    heartbeat: timedelta | None = None

    def options(self, attempts: int) -> dict[str, Any]:
        options: dict[str, Any] = {
            "start_to_close_timeout": self.start_to_close,
            "retry_policy": _retries(self.first_retry, self.longest_retry, attempts),
        }
        if self.heartbeat is not None:
            options["heartbeat_timeout"] = self.heartbeat
        return options


# Quick database work runs as local activities in the workflow's worker: no
# task-queue round trips (each costs ~30-40 ms on the dev server), same retry rules.
_LOCAL = _Step(timedelta(seconds=10), timedelta(milliseconds=200), timedelta(seconds=10))
# The quality check and credential binding on the CPU pool (the workflow's own queue).
_CPU = _Step(timedelta(seconds=30), timedelta(milliseconds=500), timedelta(seconds=30))
# Inference on the GPU pool: heartbeats reveal a dead worker within seconds,
# and the activity then runs again on another one.
# 20 s leaves a loaded 2-core machine room to start a task before it counts as lost.
_GPU = _Step(
    timedelta(seconds=60), timedelta(seconds=1), timedelta(seconds=30), timedelta(seconds=20)
)
# Records must land: a database outage delays the verification, never loses it.
_RECORD = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": _retries(timedelta(seconds=1), timedelta(minutes=1)),
}


class _Rejected(Exception):
    """An activity refused its input for good; carries the reason code."""

    def __init__(self, reason: ReasonCode) -> None:
        super().__init__(reason.value)
        self.reason = reason


class _ProcessingFailed(Exception):
    """An activity kept failing on an unexpected error until its retries ran out."""

    def __init__(self, stage: Stage) -> None:
        super().__init__(stage.value)
        self.stage = stage


@workflow.defn(name="IdentityVerification")
class IdentityVerification:
    @workflow.init
    def __init__(self, request: VerificationRequest) -> None:
        # Set before any handler runs: queries and updates always see a progress.
        self._progress = VerificationProgress(request.verification_id, Stage.RESOLVING_MODELS)
        self._review: ReviewDecision | None = None
        self._review_opened_at = workflow.now()

    @workflow.run
    async def run(self, request: VerificationRequest) -> VerificationResult:
        outcome = await self._assess(request)

        if outcome.decision is Decision.REVIEW:
            outcome = await self._wait_for_review(request, outcome)

        credential: IssuedCredential | None = None
        if outcome.decision is Decision.APPROVED and (request.holder or request.device):
            credential, outcome = await self._bind_credential(request, outcome)

        result = await self._record_result(request, outcome, credential)
        if workflow.patched(WEBHOOKS):
            await self._announce(result)
        return result

    async def _assess(self, request: VerificationRequest) -> policy.Outcome:
        """Models, then the quality check, then liveness and face match: the automatic outcome.

        Input no retry can fix decides at once (images refused at ingest before
        any step); a step that runs out of retries on an unexpected error leaves
        the decision to a person.
        """
        if request.refused:  # nothing was stored to check
            return policy.ingest_outcome(request.refused.values())
        try:
            resolved = await self._resolve_models(request)
            models = resolved.deciding

            self._enter(Stage.QUALITY_CHECK, self._model_versions_attribute())
            quality = await self._check_quality(
                request, models, resolved.shadow.get(ModelTask.LIVENESS)
            )
            outcome = policy.quality_outcome([quality.selfie, quality.document])
            if outcome is not None:
                return outcome

            self._enter(Stage.BIOMETRICS)
            if quality.face_crops is None:  # usable images have a face; decide, never crash
                raise _Rejected(ReasonCode.QUALITY_NO_FACE)
            scores = await self._check_biometrics(request, quality.face_crops, resolved)
            return policy.biometric_outcome(
                scores.liveness,
                models[ModelTask.LIVENESS],
                scores.face_match,
                models[ModelTask.EMBED],
            )
        except _Rejected as rejected:
            return policy.rejection_outcome(rejected.reason)
        except _ProcessingFailed as failed:
            return policy.processing_failed_outcome(failed.stage)

    # --- What people and the UI see ------------------------------------------

    @workflow.query
    def progress(self) -> VerificationProgress:
        return self._progress

    @workflow.update
    async def review(self, decision: ReviewDecision) -> Decision:
        """A person decides a verification awaiting review; returns the resulting decision.

        It awaits review when a score falls in the grey zone, or when a step ran
        out of retries (PROCESSING_FAILED).
        """
        if workflow.patched(SIGNED_REVIEWS):
            reviewer = await self._authorize(decision)
            self._check_awaiting_review()  # another review may have won meanwhile
        else:  # recorded before reviews were signed: the typed name, never trusted since
            reviewer = decision.reviewer
        self._review = dataclasses.replace(decision, reviewer=reviewer)
        return Decision.APPROVED if decision.approve else Decision.DECLINED

    @review.validator
    def _accept_review(self, decision: ReviewDecision) -> None:
        # Runs before the update is written to history: only the stage is checked
        # here; who signed it is checked (and a refusal audited) in the handler.
        self._check_awaiting_review()

    def _check_awaiting_review(self) -> None:
        if self._progress.stage is not Stage.AWAITING_REVIEW:
            raise ApplicationError(
                f"verification is not awaiting review (stage: {self._progress.stage.value})"
            )
        if self._review is not None:
            raise ApplicationError(f"verification was already reviewed by {self._review.reviewer}")

    async def _authorize(self, decision: ReviewDecision) -> str:
        """The staff id whose signed assertion the CPU worker checked; refusals are audited."""
        try:
            return await workflow.execute_local_activity(
                names.AUTHORIZE_REVIEW,
                AuthorizeReviewInput(
                    self._progress.verification_id,
                    workflow.info().workflow_id,
                    decision,
                    self._review_opened_at.isoformat(),
                ),
                result_type=str,
                summary="Check the reviewer's signed assertion",
                **_LOCAL.options(attempts=3),
            )
        except FailureError as err:  # a local activity's failure arrives unwrapped
            refusal = err.cause if isinstance(err, ActivityError) else err
            raise ApplicationError(
                f"review refused: {refusal}", type="REVIEW_UNAUTHORIZED", non_retryable=True
            ) from None

    # --- Stages ---------------------------------------------------------------

    async def _resolve_models(self, request: VerificationRequest) -> ResolvedModels:
        resolved: ResolvedModels = await self._activity(
            names.RESOLVE_VERIFICATION_MODELS,
            ResolveModelsInput(request.model_pins, request.verification_id),
            result_type=ResolvedModels,
            summary="Resolve model aliases to exact versions",
            local=True,
            **_LOCAL.options(request.processing_attempts),
        )
        progress = self._progress
        progress.model_versions = {task: c.ref for task, c in resolved.deciding.items()}
        progress.canary = list(resolved.canary)
        progress.shadow_versions = {task: c.ref for task, c in resolved.shadow.items()}
        return resolved

    def _model_versions_attribute(self) -> SearchAttributeUpdate:
        progress = self._progress
        return search_attributes.MODEL_VERSIONS.value_set(
            [f"{task}:{ref}" for task, ref in sorted(progress.model_versions.items())]
            + [f"canary:{task}" for task in progress.canary]
            + [f"shadow:{task}:{ref}" for task, ref in progress.shadow_versions.items()]
        )

    async def _check_quality(
        self,
        request: VerificationRequest,
        models: dict[ModelTask, ModelChoice],
        shadow_liveness: ModelChoice | None,
    ) -> QualityResult:
        quality: QualityResult = await self._activity(
            names.CHECK_QUALITY,
            QualityCheckInput(
                request.verification_id, request.selfie, request.document, models, shadow_liveness
            ),
            result_type=QualityResult,
            summary="Quality check: selfie and document",
            **_CPU.options(request.processing_attempts),
        )
        self._note(reasons=[*quality.selfie.reasons, *quality.document.reasons])
        return quality

    async def _check_biometrics(
        self, request: VerificationRequest, face_crops: BlobRef, resolved: ResolvedModels
    ) -> BiometricsResult:
        liveness, embed = resolved.deciding[ModelTask.LIVENESS], resolved.deciding[ModelTask.EMBED]
        scores: BiometricsResult = await self._activity(
            names.CHECK_BIOMETRICS,
            BiometricsInput(
                request.verification_id,
                face_crops,
                liveness,
                embed,
                shadow_liveness=resolved.shadow.get(ModelTask.LIVENESS),
                shadow_embed=resolved.shadow.get(ModelTask.EMBED),
            ),
            result_type=BiometricsResult,
            summary=f"Liveness ({liveness.ref}) and face match ({embed.ref})",
            task_queue=request.gpu_task_queue,
            **_GPU.options(request.processing_attempts),
        )
        self._note(
            scores={"liveness": scores.liveness, "face_match": scores.face_match},
            shadow={"liveness": scores.shadow_liveness, "face_match": scores.shadow_face_match},
        )
        return scores

    async def _wait_for_review(
        self, request: VerificationRequest, pending: policy.Outcome
    ) -> policy.Outcome:
        deadline = timedelta(seconds=request.review_deadline_seconds)
        self._review = None  # each round starts undecided: a binding may ask a second time
        self._review_opened_at = workflow.now()
        self._progress.decision = Decision.REVIEW
        self._progress.reasons = list(pending.reasons)
        self._progress.review_deadline = (workflow.now() + deadline).isoformat()
        self._enter(Stage.AWAITING_REVIEW, *_decision_attributes(pending))
        await self._record(
            request,
            Stage.AWAITING_REVIEW,
            "review_requested",
            decision=Decision.REVIEW,
            reasons=list(pending.reasons),
        )
        try:
            await workflow.wait_condition(
                lambda: self._review is not None,
                timeout=deadline,
                timeout_summary="Review deadline",
            )
        except TimeoutError:
            pass  # nobody decided in time: review_outcome declines with REVIEW_EXPIRED
        outcome = policy.review_outcome(pending, self._review)
        if self._review is not None:
            await self._record(
                request,
                Stage.AWAITING_REVIEW,
                "reviewed",
                reviewer=self._review.reviewer,
                note=self._review.reason,
            )
        return outcome

    async def _bind_credential(
        self, request: VerificationRequest, approved: policy.Outcome
    ) -> tuple[IssuedCredential | None, policy.Outcome]:
        """The mdoc bound to the holder's device key, and the outcome it ends with.

        When binding gives up on an unexpected error a person decides: approving
        has it tried again (the issuer returns what an earlier attempt signed,
        never a second credential); declining, or nobody deciding in time, ends
        the verification without one.
        """
        outcome = approved
        while outcome.decision is Decision.APPROVED:
            self._enter(Stage.BINDING_CREDENTIAL)
            try:
                credential: IssuedCredential = await self._activity(
                    names.ISSUE_CREDENTIAL,
                    IssueCredentialInput(
                        verification_id=request.verification_id,
                        device=request.device,
                        claims=request.claims,
                        portrait=request.selfie,
                        holder=request.holder,
                    ),
                    result_type=IssuedCredential,
                    summary="Issue the mdoc bound to the holder's device key",
                    **_CPU.options(request.processing_attempts),
                )
                return credential, outcome
            except _Rejected as rejected:
                return None, policy.rejection_outcome(rejected.reason)
            except _ProcessingFailed as failed:
                pending = policy.processing_failed_outcome(failed.stage, outcome)
                outcome = await self._wait_for_review(request, pending)
        return None, outcome

    async def _record_result(
        self,
        request: VerificationRequest,
        outcome: policy.Outcome,
        credential: IssuedCredential | None,
    ) -> VerificationResult:
        self._progress.decision = outcome.decision
        self._progress.reasons = list(outcome.reasons)
        result = VerificationResult(
            verification_id=request.verification_id,
            decision=outcome.decision,
            reasons=list(outcome.reasons),
            scores=dict(self._progress.scores),
            model_versions=dict(self._progress.model_versions),
            credential=credential,
            reviewer=self._review.reviewer if self._review else None,
            canary=list(self._progress.canary),
            shadow_scores=dict(self._progress.shadow_scores),
            shadow_versions=dict(self._progress.shadow_versions),
            details={
                reason.value: self._progress.details[reason.value]
                for reason in outcome.reasons
                if reason.value in self._progress.details
            },
        )
        self._progress.stage = Stage.RECORDING  # seen by queries; the attributes change once, below
        await self._record(request, Stage.COMPLETED, "decided", result=result)
        self._enter(Stage.COMPLETED, *_decision_attributes(outcome))
        return result

    async def _announce(self, result: VerificationResult) -> None:
        """Queue the decision as a webhook event and start one delivery workflow per endpoint.

        The deliveries are abandoned children: they retry on their own schedule
        while the verification completes, and a receiver that is down never holds it up.
        """
        delivery_ids: list[str] = await workflow.execute_local_activity(
            names.QUEUE_DECISION_EVENT,
            DecisionEventInput(result.verification_id, result.decision, list(result.reasons)),
            result_type=list[str],
            summary="Queue the decision for the webhooks",
            **_RECORD,
        )
        await asyncio.gather(
            *(
                workflow.start_child_workflow(
                    WebhookDelivery.run,
                    delivery_id,
                    id=delivery_workflow_id(delivery_id),
                    parent_close_policy=ParentClosePolicy.ABANDON,
                )
                for delivery_id in delivery_ids
            )
        )

    async def _record(
        self, request: VerificationRequest, stage: Stage, event: str, **details: Any
    ) -> None:
        await workflow.execute_local_activity(
            names.RECORD,
            RecordInput(
                request.verification_id, workflow.info().workflow_id, stage, event, **details
            ),
            summary=f"Record: {event}",
            **_RECORD,
        )

    # --- Plumbing -------------------------------------------------------------

    async def _activity(self, name: str, arg: Any, local: bool = False, **options: Any) -> Any:
        """Run an activity: a rejection becomes ``_Rejected``, spent retries
        ``_ProcessingFailed``."""
        execute = workflow.execute_local_activity if local else workflow.execute_activity
        try:
            return await execute(name, arg, **options)
        except FailureError as err:
            failure = activity_failure(err)
            if isinstance(failure, CancelledError):
                raise
            reason = rejection_reason(failure)
            if reason is not None:
                # The typed error's message names the element and rule, never a value.
                self._progress.details[reason.value] = failure.message
                raise _Rejected(reason) from None
            raise _ProcessingFailed(self._progress.stage) from None

    def _enter(self, stage: Stage, *updates: SearchAttributeUpdate) -> None:
        """Move to ``stage``; its search attributes change with ``updates`` in one upsert.

        Every upsert is a history event and a visibility write on the server: one per stage.
        """
        self._progress.stage = stage
        workflow.upsert_search_attributes(
            [search_attributes.STATUS.value_set(stage.value), *updates]
        )

    def _note(
        self,
        reasons: list[ReasonCode] | None = None,
        scores: dict[str, float] | None = None,
        shadow: dict[str, float | None] | None = None,
    ) -> None:
        self._progress.reasons.extend(r for r in reasons or [] if r not in self._progress.reasons)
        self._progress.scores.update(scores or {})
        self._progress.shadow_scores.update(
            {name: score for name, score in (shadow or {}).items() if score is not None}
        )


def _decision_attributes(outcome: policy.Outcome) -> tuple[SearchAttributeUpdate, ...]:
    return (
        search_attributes.DECISION.value_set(outcome.decision.value),
        search_attributes.REASONS.value_set([reason.value for reason in outcome.reasons]),
    )


def workflow_id(verification_id: str) -> str:
    return WORKFLOW_ID_PREFIX + verification_id


def activity_failure(err: FailureError) -> BaseException | None:
    """What an activity failed with: a normal activity's failure comes wrapped in
    ActivityError, a local one's bare."""
    return err.cause if isinstance(err, ActivityError) else err


def rejection_reason(failure: BaseException | None) -> ReasonCode | None:
    """The reason code of a final rejection (a non-retryable ApplicationError), else None."""
    if not isinstance(failure, ApplicationError) or not failure.non_retryable:
        return None
    try:
        reason = ReasonCode(failure.type)
    except ValueError:
        return None
    return reason if reason in policy.REJECTION_REASONS else None
