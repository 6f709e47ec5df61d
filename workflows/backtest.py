"""Backtest: what candidate model versions would have decided on retained verifications.

    select the verifications (decided in a window, with given reasons / decision)
    → re-score each retained one as a child workflow, a bounded number at once:
        find its images and pins in its history → resolve the candidate versions
        → quality check → liveness and face match → the automatic decision
    → the report of decision changes (purged and unavailable ones counted) → keep it

The children call the verification's own activities on the same pools, so a
candidate meets exactly the pipeline production runs. Nothing is decided or
recorded for the verifications themselves.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities import names
    from domain import policy
    from domain.backtest import build_report
    from domain.contracts import (
        BacktestCase,
        BacktestInputs,
        BacktestReport,
        BacktestRequest,
        BacktestSelection,
        BiometricsInput,
        BiometricsResult,
        QualityCheckInput,
        QualityResult,
        Rescore,
        RescoreRequest,
        RescoreStatus,
        ResolvedModels,
        ResolveModelsInput,
    )
    from domain.enums import ModelTask
    from domain.reasons import ReasonCode
    from workflows.identity_verification import activity_failure, rejection_reason

MAX_CASES = 2000  # one backtest's history stays far below Temporal's event limit


def _options(attempts: int) -> dict[str, Any]:
    return {
        "start_to_close_timeout": timedelta(seconds=60),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=1),
            maximum_interval=timedelta(seconds=10),
            maximum_attempts=attempts,
            non_retryable_error_types=sorted(r.value for r in policy.REJECTION_REASONS),
        ),
    }


@workflow.defn(name="Backtest")
class Backtest:
    def __init__(self) -> None:
        self._selected = 0
        self._done = 0

    @workflow.query
    def progress(self) -> tuple[int, int]:
        """(verifications re-scored or skipped so far, verifications selected)."""
        return self._done, self._selected

    @workflow.run
    async def run(self, request: BacktestRequest) -> BacktestReport:
        since = workflow.now() - timedelta(seconds=request.since_seconds)
        selection = BacktestSelection(
            since.isoformat(),
            list(request.reasons),
            request.decision,
            min(request.limit, MAX_CASES),
        )
        cases: list[BacktestCase] = await workflow.execute_local_activity(
            names.SELECT_BACKTEST_CASES,
            selection,
            result_type=list[BacktestCase],
            summary="Select the verifications to re-score",
            **_options(request.processing_attempts),
        )
        self._selected = len(cases)
        slots = asyncio.Semaphore(max(1, request.concurrency))

        async def rescore(case: BacktestCase) -> Rescore:
            try:
                if case.purged:  # its images are crypto-shredded: nothing to re-score
                    return Rescore(case.verification_id, RescoreStatus.PURGED)
                async with slots:
                    return await workflow.execute_child_workflow(
                        BacktestVerification.run,
                        RescoreRequest(
                            case,
                            request.candidate,
                            request.gpu_task_queue,
                            request.processing_attempts,
                        ),
                        id=f"{workflow.info().workflow_id}-{case.verification_id}",
                        static_summary=f"Re-score {case.verification_id}",
                    )
            finally:
                self._done += 1

        rescores = await asyncio.gather(*(rescore(case) for case in cases))
        report = build_report(
            request.backtest_id, request.candidate, selection, cases, list(rescores)
        )
        await workflow.execute_local_activity(
            names.RECORD_BACKTEST,
            report,
            summary="Keep the report",
            **_options(request.processing_attempts),
        )
        return report


class _Stop(Exception):
    def __init__(self, rescore: Rescore) -> None:
        super().__init__(rescore.status.value)
        self.rescore = rescore


@workflow.defn(name="BacktestVerification")
class BacktestVerification:
    """One retained verification, re-scored with the candidate versions."""

    @workflow.init
    def __init__(self, request: RescoreRequest) -> None:
        self._request = request

    @workflow.run
    async def run(self, request: RescoreRequest) -> Rescore:
        case = request.case
        try:
            inputs: BacktestInputs = await self._step(
                names.LOAD_BACKTEST_INPUTS, case, BacktestInputs
            )
            if inputs.selfie is None or inputs.document is None:  # refused at ingest
                return Rescore(case.verification_id, RescoreStatus.UNAVAILABLE)
            # Every task pinned to what decided the verification, but the candidate's:
            # no canary share or shadow applies to a re-score.
            pins = inputs.model_pins | case.model_versions | request.candidate
            resolved: ResolvedModels = await self._step(
                names.RESOLVE_VERIFICATION_MODELS,
                ResolveModelsInput(pins, case.verification_id),
                ResolvedModels,
                local=True,
            )
            models = resolved.deciding
            quality: QualityResult = await self._step(
                names.CHECK_QUALITY,
                QualityCheckInput(case.verification_id, inputs.selfie, inputs.document, models),
                QualityResult,
            )
            outcome = policy.quality_outcome([quality.selfie, quality.document])
            scores: dict[str, float] = {}
            if outcome is None and quality.face_crops is None:
                # Usable images have a face; decide, never fail the workflow task.
                outcome = policy.rejection_outcome(ReasonCode.QUALITY_NO_FACE)
            if outcome is None and quality.face_crops is not None:
                result: BiometricsResult = await self._step(
                    names.CHECK_BIOMETRICS,
                    BiometricsInput(
                        case.verification_id,
                        quality.face_crops,
                        models[ModelTask.LIVENESS],
                        models[ModelTask.EMBED],
                    ),
                    BiometricsResult,
                    gpu=True,
                )
                scores = {"liveness": result.liveness, "face_match": result.face_match}
                outcome = policy.biometric_outcome(
                    result.liveness,
                    models[ModelTask.LIVENESS],
                    result.face_match,
                    models[ModelTask.EMBED],
                )
        except _Stop as stop:
            return stop.rescore
        return Rescore(
            case.verification_id,
            RescoreStatus.RESCORED,
            outcome.decision.value,
            [reason.value for reason in outcome.reasons],
            scores,
            {task: choice.ref for task, choice in models.items()},
        )

    async def _step(
        self, name: str, arg: Any, result_type: type, local: bool = False, gpu: bool = False
    ) -> Any:
        """Run one activity; a purge, a rejection or spent retries end the re-score."""
        request = self._request
        options = _options(request.processing_attempts)
        if gpu:
            options["task_queue"] = request.gpu_task_queue
        execute = workflow.execute_local_activity if local else workflow.execute_activity
        try:
            return await execute(name, arg, result_type=result_type, **options)
        except FailureError as error:
            reason = rejection_reason(activity_failure(error))
            vid = request.case.verification_id
            if reason is ReasonCode.INPUT_PURGED:
                raise _Stop(Rescore(vid, RescoreStatus.PURGED)) from None
            if reason is not None:  # input the candidate refuses for good: that is its decision
                decided = policy.rejection_outcome(reason)
                raise _Stop(
                    Rescore(
                        vid,
                        RescoreStatus.RESCORED,
                        decided.decision.value,
                        [r.value for r in decided.reasons],
                    )
                ) from None
            status = (
                RescoreStatus.UNAVAILABLE
                if name == names.LOAD_BACKTEST_INPUTS
                else RescoreStatus.FAILED
            )
            raise _Stop(Rescore(vid, status)) from None
