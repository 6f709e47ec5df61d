"""Proof-of-possession nonces and issued-credential records.

Nonces: one live nonce per verification, handed out when the verification is
created (``create_nonce``) and consumed by the proof that uses it. A consumed
nonce remembers the digest of that proof, so that an identical retry of the
same issuance (a worker that died mid-way) passes again while any other proof
with it is refused.

Issued credentials: one row per verification (the primary key), holding only
non-personal facts. The IssuerSigned bytes themselves live in the encrypted
blob store; the row points at them.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel

from domain.contracts import BlobRef, IssuedCredential
from domain.errors import DeviceProofInvalid

from .audit import utcnow
from .rows import insert_or_existing


def _timestamp(nullable: bool = False, **field: Any) -> Any:
    # timestamptz on PostgreSQL: the session's time zone cannot shift a freshness check.
    return Field(sa_column=Column(DateTime(timezone=True), nullable=nullable), **field)


class CredentialNonce(SQLModel, table=True):
    __tablename__ = "credential_nonces"

    verification_id: str = Field(primary_key=True, max_length=64)
    nonce: str = Field(max_length=64)
    issued_at: datetime = _timestamp(default_factory=utcnow)
    proof_digest: str | None = Field(default=None, max_length=64)  # set when consumed
    consumed_at: datetime | None = _timestamp(nullable=True, default=None)


class IssuedCredentialRecord(SQLModel, table=True):
    __tablename__ = "issued_credentials"

    verification_id: str = Field(primary_key=True, max_length=64)  # issued exactly once
    doc_type: str = Field(max_length=100)
    mso_digest: str = Field(max_length=64)  # sha256 of the signed MobileSecurityObjectBytes
    device_key_thumbprint: str = Field(index=True, max_length=64)  # RFC 7638
    signed_at: datetime = _timestamp()
    valid_from: datetime = _timestamp()
    valid_until: datetime = _timestamp()
    signer_serial: str = Field(index=True, max_length=64)
    blob_id: str = Field(max_length=64)  # the IssuerSigned bytes in the blob store
    blob_sha256: str = Field(max_length=64)
    recorded_at: datetime = _timestamp(default_factory=utcnow)

    @property
    def blob(self) -> BlobRef:
        return BlobRef(self.blob_id, self.blob_sha256, "application/cbor")

    def as_issued(self, issuer_signed_b64: str) -> IssuedCredential:
        return IssuedCredential(
            issuer_signed=self.blob,
            issuer_signed_b64=issuer_signed_b64,
            doc_type=self.doc_type,
            mso_digest=self.mso_digest,
            device_key_thumbprint=self.device_key_thumbprint,
            valid_until=_utc(self.valid_until).isoformat(),
            signer_serial=self.signer_serial,
        )


# --- Nonces -------------------------------------------------------------------


def create_nonce(engine: Engine, verification_id: str) -> str:
    """A fresh one-time nonce for the device's proof; replaces an unused earlier one.

    Refused once the verification's nonce has been consumed: its proof is final.
    """
    nonce = secrets.token_urlsafe(32)
    with Session(engine) as session:
        row = session.get(CredentialNonce, verification_id)
        if row is not None and row.proof_digest is not None:
            raise ValueError(f"the nonce of verification {verification_id} was already used")
        if row is None:
            row = CredentialNonce(verification_id=verification_id, nonce=nonce)
        else:
            row.nonce, row.issued_at = nonce, utcnow()
        session.add(row)
        try:
            session.commit()
        except IntegrityError:  # created concurrently: the other caller's nonce stands
            session.rollback()
            return create_nonce(engine, verification_id)
    return nonce


def nonce_issued_at(engine: Engine, verification_id: str, nonce: str) -> datetime:
    """When the verification's live nonce was handed out, consumed or not (to judge freshness).

    Raises ``DeviceProofInvalid`` for a nonce this verification was not given.
    """
    with Session(engine) as session:
        row = session.get(CredentialNonce, verification_id)
    if row is None or not hmac.compare_digest(row.nonce, nonce):
        raise DeviceProofInvalid("proof nonce was not issued for this verification")
    return _utc(row.issued_at)


def consume_nonce(engine: Engine, verification_id: str, nonce: str, proof_digest: str) -> datetime:
    """Bind the verification's nonce to the proof that carries it; returns when it was issued.

    An identical retry (same verification, nonce and proof) passes again.
    Raises ``DeviceProofInvalid`` for a nonce this verification was not given,
    or one already consumed by a different proof.
    """
    with Session(engine) as session:
        session.execute(
            update(CredentialNonce)
            .where(CredentialNonce.verification_id == verification_id)
            .where(CredentialNonce.nonce == nonce)
            .where(CredentialNonce.proof_digest.is_(None))  # type: ignore[union-attr]
            .values(proof_digest=proof_digest, consumed_at=utcnow())
        )
        session.commit()
        row = session.get(CredentialNonce, verification_id)
    if row is None or not hmac.compare_digest(row.nonce, nonce):
        raise DeviceProofInvalid("proof nonce was not issued for this verification")
    if row.proof_digest != proof_digest:  # whoever claimed it first bound their proof
        raise DeviceProofInvalid("proof nonce was already used by another proof")
    return _utc(row.issued_at)


def live_nonce(engine: Engine, verification_id: str) -> str | None:
    """The nonce handed out for the verification (consumed or not), or None."""
    with Session(engine) as session:
        row = session.get(CredentialNonce, verification_id)
    return row.nonce if row is not None else None


# --- Issued credentials ---------------------------------------------------------


def find_issued(engine: Engine, verification_id: str) -> IssuedCredentialRecord | None:
    with Session(engine) as session:
        return session.get(IssuedCredentialRecord, verification_id)


def record_issued(engine: Engine, record: IssuedCredentialRecord) -> IssuedCredentialRecord:
    """Insert the record; when one exists for the verification, that one wins and is returned."""
    return insert_or_existing(engine, record)


def _utc(moment: datetime) -> datetime:
    # SQLite returns naive datetimes; everything here is stored in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
