"""The verifications table: one row per verification, its status and outcome.

Only non-personal facts: ids, the caller's opaque subject reference, stage,
decision, reason codes, scores, exact model versions, the reviewer's id and
timestamps. Every change also appends an entry to the audit log
(``store.audit``) in the same call.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, func
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from domain.contracts import RecordInput

from . import audit, shadow_scores
from .audit import utcnow
from .rows import insert_or_existing

CREATED = "created"  # status before the workflow has run a stage


class VerificationRecord(SQLModel, table=True):
    __tablename__ = "verifications"

    verification_id: str = Field(primary_key=True, max_length=64)
    workflow_id: str = Field(max_length=80)
    subject_ref: str = Field(index=True, max_length=200)
    status: str = Field(default=CREATED, index=True, max_length=32)
    decision: str | None = Field(default=None, index=True, max_length=16)
    reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    scores: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    model_versions: dict[str, str] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    reviewer: str | None = Field(default=None, max_length=200)
    credential_issued: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None


def create(engine: Engine, verification_id: str, workflow_id: str, subject_ref: str) -> bool:
    """Insert the row for a new verification; False when it already exists."""
    row = VerificationRecord(
        verification_id=verification_id, workflow_id=workflow_id, subject_ref=subject_ref
    )
    if insert_or_existing(engine, row) is not row:
        return False
    audit.append(engine, f"{verification_id}:created", verification_id, "created", "client")
    return True


def record(engine: Engine, entry: RecordInput, key: str) -> None:
    """Apply a workflow record to the row and append it to the audit log.

    ``key`` makes the audit entry idempotent (the activity's id within its run),
    and the row update is idempotent by construction: it sets values.
    """
    now = utcnow()
    details: dict[str, Any] = {"stage": entry.stage.value}
    with Session(engine) as session:
        row = session.get(VerificationRecord, entry.verification_id) or VerificationRecord(
            verification_id=entry.verification_id,
            workflow_id=entry.workflow_id,
            subject_ref="",  # started without the client: the workflow knows no subject
        )
        row.status = entry.stage.value
        row.updated_at = now
        if entry.reviewer is not None:
            row.reviewer = entry.reviewer
        result = entry.result
        decision, reasons = (
            (result.decision, result.reasons) if result else (entry.decision, entry.reasons)
        )
        if decision is not None:  # the result's, or REVIEW while a person decides
            row.decision = decision.value
            row.reasons = [reason.value for reason in reasons]
            details |= {"decision": row.decision, "reasons": row.reasons}
        if result is not None:
            row.scores = dict(result.scores)
            row.model_versions = dict(result.model_versions)
            row.credential_issued = result.credential is not None
            row.decided_at = now
            shadow_scores.record(session, result)
        session.add(row)
        session.commit()
    if entry.note is not None:
        details["note"] = entry.note
    actor = entry.reviewer or "workflow"
    audit.append(engine, key, entry.verification_id, entry.event, actor, **details)


def forget_subject(engine: Engine, verification_id: str) -> None:
    """Erase the subject reference (a purge): the record no longer points at a person."""
    with Session(engine) as session:
        row = session.get(VerificationRecord, verification_id)
        if row is not None and row.subject_ref:
            row.subject_ref = ""
            session.add(row)
            session.commit()


def count_by_status(engine: Engine) -> dict[str, int]:
    """How many verifications are in each status (``awaiting_review`` is the review backlog)."""
    with Session(engine) as session:
        query = select(VerificationRecord.status, func.count()).group_by(VerificationRecord.status)
        return dict(session.exec(query).all())


def get(engine: Engine, verification_id: str) -> VerificationRecord | None:
    with Session(engine) as session:
        return session.get(VerificationRecord, verification_id)


def decided_after(
    engine: Engine, after: datetime, reasons: list[str], decision: str | None, limit: int
) -> list[VerificationRecord]:
    """Verifications decided at or after ``after`` (UTC), oldest first, that ended in
    ``decision`` (any when None) with any of ``reasons`` (any when empty); at most ``limit``."""
    query = (
        select(VerificationRecord)
        .where(VerificationRecord.decided_at >= after.astimezone(UTC))  # type: ignore[operator]
        .order_by(VerificationRecord.decided_at)  # type: ignore[arg-type]
    )
    if decision is not None:
        query = query.where(VerificationRecord.decision == decision)
    wanted = set(reasons)
    found = []
    with Session(engine) as session:
        for row in session.exec(query):  # reasons are a JSON list: filtered here
            if not wanted or wanted & set(row.reasons):
                found.append(row)
                if len(found) == limit:
                    break
    return found
