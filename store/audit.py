"""The append-only audit log: who did what to which verification, and when.

Entries hold ids, events, decisions and reason codes — never images, claims or
embeddings. The database itself refuses UPDATE and DELETE on the table
(triggers created with it), so the log cannot be rewritten through SQL either.
Each entry has a unique key so that a retried activity records it once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from .append_only import append_only


def utcnow() -> datetime:
    return datetime.now(UTC)


@append_only  # the database itself refuses UPDATE and DELETE
class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=300)  # idempotency key
    verification_id: str = Field(index=True, max_length=64)
    event: str = Field(max_length=64)
    actor: str = Field(max_length=200)  # "client", "workflow" or a reviewer id
    at: datetime = Field(default_factory=utcnow)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def append(
    engine: Engine, key: str, verification_id: str, event_name: str, actor: str, **details: Any
) -> bool:
    """Append one entry; False when an entry with this key is already there."""
    entry = AuditEntry(
        key=key, verification_id=verification_id, event=event_name, actor=actor, details=details
    )
    with Session(engine) as session:
        session.add(entry)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            if session.exec(select(AuditEntry.id).where(AuditEntry.key == key)).first() is None:
                raise
            return False
    return True


def trail(engine: Engine, verification_id: str) -> list[AuditEntry]:
    """Every entry for one verification, oldest first."""
    with Session(engine) as session:
        query = (
            select(AuditEntry)
            .where(AuditEntry.verification_id == verification_id)
            .order_by(AuditEntry.id)
        )
        return list(session.exec(query))
