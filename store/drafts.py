"""What ``create()`` made of a request, so that a retry of the same request gets the same draft.

One row per verification id, claimed before anything else is stored: the
request's digest (see ``request_digest``), then — once the images are stored
(or refused at ingest), the verification row written and the nonce handed out
— the blob references and the ingest refusals. A row without them is a create
that has not finished (or crashed): the same request may finish it. A purge
erases the digest and the images' sha256 (each would confirm that a given
photo or subject was verified) and keeps the row, so the id stays taken.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel

from domain.contracts import BlobRef
from domain.enums import ImageRole
from domain.reasons import ReasonCode

from .audit import utcnow
from .rows import insert_or_existing

_DIGEST_VERSION = b"idflow-request-v1"
PURGED_DIGEST = "purged"  # matches no request: a create with a purged id is refused


class DraftRecord(SQLModel, table=True):
    __tablename__ = "verification_drafts"

    verification_id: str = Field(primary_key=True, max_length=64)
    request_digest: str = Field(max_length=64)
    complete: bool = False
    selfie: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    document: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    refused: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)

    def image(self, role: ImageRole) -> BlobRef | None:
        ref = self.selfie if role == ImageRole.SELFIE else self.document
        return BlobRef(**ref) if ref else None

    def refusals(self) -> dict[ImageRole, ReasonCode]:
        return {ImageRole(role): ReasonCode(reason) for role, reason in self.refused.items()}


def request_digest(selfie: bytes, document: bytes, subject_ref: str) -> str:
    """What makes two create requests "the same": both uploads' bytes and the subject ref.

    sha256 over a version tag and the sha256 of each part, so that no part
    can run into the next.
    """
    digest = hashlib.sha256(_DIGEST_VERSION)
    for part in (selfie, document, subject_ref.encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def claim(engine: Engine, verification_id: str, digest: str) -> DraftRecord:
    """The draft row for ``verification_id``: new, or the one an earlier request claimed."""
    return insert_or_existing(
        engine, DraftRecord(verification_id=verification_id, request_digest=digest)
    )


def get(engine: Engine, verification_id: str) -> DraftRecord | None:
    with Session(engine) as session:
        return session.get(DraftRecord, verification_id)


def complete(
    engine: Engine,
    verification_id: str,
    images: dict[ImageRole, BlobRef | None],
    refused: dict[ImageRole, ReasonCode],
) -> None:
    with Session(engine) as session:
        row = session.get(DraftRecord, verification_id)
        assert row is not None, "complete() follows claim()"
        row.selfie, row.document = (
            _as_json(images[ImageRole.SELFIE]),
            _as_json(images[ImageRole.DOCUMENT]),
        )
        row.refused = {role: reason.value for role, reason in refused.items()}
        row.complete = True
        session.add(row)
        session.commit()


def _as_json(ref: BlobRef | None) -> dict[str, Any] | None:
    return dataclasses.asdict(ref) if ref is not None else None


def forget(engine: Engine, verification_id: str) -> None:
    """Erase what ties the draft to its images and subject (a purge); the row stays."""
    with Session(engine) as session:
        row = session.get(DraftRecord, verification_id)
        if row is None or row.request_digest == PURGED_DIGEST:
            return
        row.request_digest = PURGED_DIGEST
        row.selfie = row.document = None
        session.add(row)
        session.commit()
