"""API clients of the HTTP API and the answers it gave to idempotent writes.

An API key is shown once, when the client is added; only its sha256 is kept.
The key holds 256 random bits, so a plain hash is as strong as a slow one and
lets a request find its client by one indexed lookup.

An idempotency record holds, per client and ``Idempotency-Key``, the digest of
the request it first came with and, once answered, the status and JSON body
sent back: the same key and request get that answer again, another request
with the same key is refused. Records are kept for ``IDEMPOTENCY_KEEP`` (24 h,
as Stripe does): a key older than that is free again, and each claim deletes
the client's records that have expired, so the table does not grow for ever.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Column
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, delete, select

from .audit import utcnow
from .rows import insert_or_existing

KEY_PREFIX = "idf_"
DEFAULT_RATE_PER_MINUTE = 120
IDEMPOTENCY_KEEP = timedelta(hours=24)


class ApiClientRecord(SQLModel, table=True):
    __tablename__ = "api_clients"

    client_id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=64, unique=True)
    key_sha256: str = Field(max_length=64, unique=True, index=True)
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    rate_per_minute: int = DEFAULT_RATE_PER_MINUTE
    created_at: datetime = Field(default_factory=utcnow)


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "api_idempotency"

    client_id: str = Field(primary_key=True, max_length=32)
    key: str = Field(primary_key=True, max_length=255)
    request_sha256: str = Field(max_length=64)
    status_code: int | None = None  # None: the first request is still being answered
    body: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)


class ClientNameTaken(ValueError):
    pass


def key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def add_client(
    engine: Engine, name: str, scopes: list[str], rate_per_minute: int = DEFAULT_RATE_PER_MINUTE
) -> tuple[ApiClientRecord, str]:
    """A new client and its API key (returned once, never stored)."""
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiClientRecord(
        client_id=uuid.uuid4().hex,
        name=name,
        key_sha256=key_digest(api_key),
        scopes=sorted(set(scopes)),
        rate_per_minute=rate_per_minute,
    )
    with Session(engine) as session:
        if session.exec(select(ApiClientRecord).where(ApiClientRecord.name == name)).first():
            raise ClientNameTaken(f"an API client named {name} exists already")
        session.add(record)
        session.commit()
        session.refresh(record)
    return record, api_key


def find_by_key(engine: Engine, api_key: str) -> ApiClientRecord | None:
    with Session(engine) as session:
        query = select(ApiClientRecord).where(ApiClientRecord.key_sha256 == key_digest(api_key))
        return session.exec(query).first()


def list_clients(engine: Engine) -> list[ApiClientRecord]:
    with Session(engine) as session:
        return list(session.exec(select(ApiClientRecord).order_by(ApiClientRecord.name)))


def claim_idempotency_key(
    engine: Engine, client_id: str, key: str, request_sha256: str, now: datetime | None = None
) -> tuple[IdempotencyRecord, bool]:
    """The record of (client, key), and whether this call made it (else an earlier request did).

    The client's records older than ``IDEMPOTENCY_KEEP`` are deleted first.
    """
    now = now or utcnow()
    with Session(engine) as session:
        session.exec(  # type: ignore[call-overload]
            delete(IdempotencyRecord)
            .where(IdempotencyRecord.client_id == client_id)
            .where(IdempotencyRecord.created_at < now - IDEMPOTENCY_KEEP)  # type: ignore[arg-type]
        )
        session.commit()
    row = IdempotencyRecord(
        client_id=client_id, key=key, request_sha256=request_sha256, created_at=now
    )
    record = insert_or_existing(engine, row)
    return record, record is row


def record_answer(
    engine: Engine, client_id: str, key: str, status_code: int, body: dict[str, Any]
) -> None:
    with Session(engine) as session:
        row = session.get(IdempotencyRecord, (client_id, key))
        if row is not None:
            row.status_code, row.body = status_code, body
            session.add(row)
            session.commit()


def release_idempotency_key(engine: Engine, client_id: str, key: str) -> None:
    """Forget an unanswered key (the request failed on our side): a retry may use it again."""
    with Session(engine) as session:
        row = session.get(IdempotencyRecord, (client_id, key))
        if row is not None and row.status_code is None:
            session.delete(row)
            session.commit()
