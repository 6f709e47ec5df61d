"""Activities of a backtest (CPU pool): pick the verifications, find their images, keep the report.

``load_backtest_inputs`` reads the verification's own workflow history (through
the worker's Temporal client and payload codec) for the blob references and
pins it ran with; the claims in that input stay here. A history Temporal no
longer keeps is a non-retryable ``HISTORY_UNAVAILABLE``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.converter import WorkflowSerializationContext
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from domain.contracts import (
    BacktestCase,
    BacktestInputs,
    BacktestReport,
    BacktestSelection,
    VerificationRequest,
)
from store import backtests, data_keys, verifications

from . import names

HISTORY_UNAVAILABLE = "HISTORY_UNAVAILABLE"


class BacktestActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name=names.SELECT_BACKTEST_CASES)
    def select_backtest_cases(self, selection: BacktestSelection) -> list[BacktestCase]:
        rows = verifications.decided_after(
            self.engine,
            datetime.fromisoformat(selection.decided_after),
            selection.reasons,
            selection.decision,
            selection.limit,
        )
        return [
            BacktestCase(
                verification_id=row.verification_id,
                workflow_id=row.workflow_id,
                decision=row.decision or "",
                reasons=list(row.reasons),
                scores=dict(row.scores),
                purged=_purged(self.engine, row.verification_id),
                model_versions=dict(row.model_versions),
            )
            for row in rows
        ]

    @activity.defn(name=names.LOAD_BACKTEST_INPUTS)
    async def load_backtest_inputs(self, case: BacktestCase) -> BacktestInputs:
        client = activity.client()
        try:
            history = await client.get_workflow_handle(case.workflow_id).fetch_history()
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                raise ApplicationError(
                    f"no history of {case.workflow_id} any more",
                    type=HISTORY_UNAVAILABLE,
                    non_retryable=True,
                ) from None
            raise
        started = history.events[0].workflow_execution_started_event_attributes
        # The codec accepts a payload only in the context of the workflow it was made for.
        converter = client.data_converter.with_context(
            WorkflowSerializationContext(client.namespace, case.workflow_id)
        )
        (request,) = await converter.decode(started.input.payloads, [VerificationRequest])
        return BacktestInputs(request.selfie, request.document, dict(request.model_pins))

    @activity.defn(name=names.RECORD_BACKTEST)
    def record_backtest(self, report: BacktestReport) -> None:
        backtests.save(self.engine, report)


def _purged(engine: Engine, verification_id: str) -> bool:
    key = data_keys.get(engine, verification_id)
    return key is not None and key.purged
