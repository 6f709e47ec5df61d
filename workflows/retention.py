"""Retention workflows: purge personal data when its time is up, or when asked.

    RetentionSweep     (run by the retention schedule): find the verifications
                       whose retention period ended → purge each
    PurgeVerification  (``idflow purge ID``): purge one verification now

A purge destroys the verification's data key and blobs and leaves its record,
audit trail and history (``store.retention``). Both run on the CPU pool,
which holds the blob store.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities import names
    from domain.contracts import PurgeRequest, PurgeResult

SWEEP_BATCH = 100
RETENTION_ACTOR = "retention"

# A purge must happen: retry (with backoff) until the database and blob store answer.
_PURGE = {
    "start_to_close_timeout": timedelta(minutes=1),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5)
    ),
}


async def _purge(request: PurgeRequest) -> PurgeResult:
    return await workflow.execute_activity(
        names.PURGE_VERIFICATION,
        request,
        result_type=PurgeResult,
        summary=f"Purge personal data of {request.verification_id}",
        **_PURGE,
    )


@workflow.defn(name="PurgeVerification")
class PurgeVerification:
    @workflow.run
    async def run(self, request: PurgeRequest) -> PurgeResult:
        return await _purge(request)


@workflow.defn(name="RetentionSweep")
class RetentionSweep:
    @workflow.run
    async def run(self, batch: int = SWEEP_BATCH) -> int:
        """Purge one batch of expired verifications; continue as new while batches are full."""
        expired: list[str] = await workflow.execute_activity(
            names.FIND_EXPIRED,
            batch,
            result_type=list[str],
            summary="Find verifications whose retention period ended",
            **_PURGE,
        )
        await asyncio.gather(
            *(
                _purge(PurgeRequest(vid, RETENTION_ACTOR, "retention period ended"))
                for vid in expired
            )
        )
        if len(expired) == batch:
            workflow.continue_as_new(batch)
        return len(expired)
