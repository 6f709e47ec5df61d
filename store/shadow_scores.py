"""Shadow scores: what a shadow version scored on a verification, beside the deciding score.

One row per verification and score (``liveness``, ``face_match``), written
with the verification's result; ``idflow models compare`` reads them over a
time window. Only scores and exact versions: nothing about the person.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from domain.contracts import VerificationResult
from domain.enums import ModelTask

from .audit import utcnow

# Which model task produced each score name of a result.
SCORE_TASKS = {"liveness": ModelTask.LIVENESS, "face_match": ModelTask.EMBED}


class ShadowScore(SQLModel, table=True):
    __tablename__ = "shadow_scores"

    verification_id: str = Field(primary_key=True, max_length=64)
    score_name: str = Field(primary_key=True, max_length=32)  # liveness, face_match
    task: str = Field(max_length=32)
    deciding_version: str = Field(max_length=100)  # name@version
    deciding_score: float
    shadow_version: str = Field(max_length=100)
    shadow_score: float
    recorded_at: datetime = Field(
        default_factory=utcnow, index=True, sa_type=DateTime(timezone=True)
    )


def record(session: Session, result: VerificationResult) -> None:
    """Add (or set again, for a retried record) the result's shadow scores to ``session``."""
    for name, shadow in result.shadow_scores.items():
        task = SCORE_TASKS[name]
        if name not in result.scores or task not in result.shadow_versions:
            continue
        row = session.get(ShadowScore, (result.verification_id, name)) or ShadowScore(
            verification_id=result.verification_id,
            score_name=name,
            task=task,
            deciding_version="",
            deciding_score=0.0,
            shadow_version="",
            shadow_score=0.0,
        )
        row.deciding_version = result.model_versions.get(task, "")
        row.deciding_score = result.scores[name]
        row.shadow_version = result.shadow_versions[task]
        row.shadow_score = shadow
        session.add(row)


def since(engine: Engine, start: datetime) -> list[ShadowScore]:
    """Every shadow score recorded at or after ``start``, oldest first."""
    query = (
        select(ShadowScore)
        .where(ShadowScore.recorded_at >= start)
        .order_by(ShadowScore.recorded_at, ShadowScore.verification_id, ShadowScore.score_name)
    )
    with Session(engine) as session:
        return list(session.exec(query).all())
