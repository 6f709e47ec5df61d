"""The evaluation history: every evaluation of every model version, kept.

An evaluation names its labelled set and stores the set's digest (content
hashes and labels, so the same set anywhere has the same digest), the metrics,
the targets it was judged against and its plot. Rows are never rewritten (the
database refuses UPDATE and DELETE); a second evaluation adds a row. A
promotion (``registry.set_alias``) looks here for evidence.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from store.append_only import append_only
from store.audit import utcnow
from store.engine import ensure_tables

from .targets import TargetResult, TaskTargets, check


@append_only
class EvaluationRecord(SQLModel, table=True):
    __tablename__ = "model_evaluations"

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="model_versions.id", index=True)
    task: str = Field(max_length=32)
    ref: str = Field(max_length=100)  # name@version, for reading without a join
    dataset: str = Field(max_length=200)  # the labelled set's name
    dataset_digest: str = Field(max_length=64)  # sha256 over its items' content and labels
    dataset_items: int
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    targets: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    passed: bool  # met every target in force when it was recorded
    plot: str = Field(default="", max_length=200)  # file name beside the card
    evaluated_by: str = Field(max_length=200)
    evaluated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))

    def summary(self) -> str:
        return (
            f"#{self.id} on {self.dataset} (sha256 {self.dataset_digest[:12]}, "
            f"{self.dataset_items} items)"
        )


def add(engine: Engine, record: EvaluationRecord) -> EvaluationRecord:
    with _session(engine, expire_on_commit=False) as session:
        session.add(record)
        session.commit()
        return record


def history(engine: Engine, version_id: int) -> list[EvaluationRecord]:
    """Every evaluation of one version, oldest first."""
    query = (
        select(EvaluationRecord)
        .where(EvaluationRecord.version_id == version_id)
        .order_by(EvaluationRecord.id)
    )
    with _session(engine) as session:
        return list(session.exec(query).all())


def _session(engine: Engine, **options) -> Session:
    # Versions are registered before they are evaluated: model_versions exists.
    ensure_tables(engine, EvaluationRecord)
    return Session(engine, **options)


def evidence(
    session: Session, version_id: int, targets: TaskTargets
) -> tuple[EvaluationRecord | None, list[TargetResult]]:
    """The newest evaluation of the version that meets ``targets`` now, or (None, why not).

    Recorded metrics are checked again against the targets in force, so targets
    raised since an evaluation apply to it. Without a passing one, the reasons
    are those of the newest evaluation (empty when there is none).
    """
    query = (
        select(EvaluationRecord)
        .where(EvaluationRecord.version_id == version_id)
        .order_by(EvaluationRecord.id.desc())  # type: ignore[union-attr]
    )
    newest: list[TargetResult] | None = None
    for record in session.exec(query).all():
        results = check(record.metrics, targets)
        if all(result.passed for result in results):
            return record, results
        if newest is None:
            newest = results
    return None, newest or []
