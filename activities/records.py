"""Activity: write a verification's status and outcome to the database."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from temporalio import activity

from domain.contracts import RecordInput
from store import verifications

from . import metrics, names


class RecordActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name=names.RECORD)
    def record_verification(self, entry: RecordInput) -> None:
        info = activity.info()
        # One audit entry per scheduled activity, however often it is retried.
        verifications.record(self.engine, entry, key=f"{info.workflow_run_id}:{info.activity_id}")
        metrics.observe_record(entry)
