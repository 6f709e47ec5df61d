"""Issue the mdoc of an approved verification, exactly once.

    check the proof of possession and its freshness → consume the verification's nonce
    → already issued? return the stored credential
    → else: portrait from the verified selfie, claims checked, MSO signed,
      IssuerSigned stored in the blob store, non-personal facts recorded
    → audit entry ``credential_issued`` (once, by key)

Exactly once, whatever crashes: the record is unique per verification and
written last. A worker that dies before it leaves no record, so the retry
signs again (its identical proof passes the consumed nonce); a worker that
dies after it leaves the record, so the retry returns the stored bytes; two
attempts racing both sign, but only the first record counts and both return
its bytes. An attempt that lost or died before recording leaves an
unreferenced IssuerSigned in the verification's (encrypted) blob folder; it
is never handed out and goes with the verification's blobs.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from domain.contracts import HolderData, IssueCredentialInput, IssuedCredential
from store import audit, credentials
from store.blobs import BlobStore
from store.credentials import IssuedCredentialRecord

from . import claims, proof
from .keystore import KeyStore
from .mso import sign_mdoc

DEFAULT_VALIDITY = timedelta(days=365)
ISSUER_SIGNED_MEDIA_TYPE = "application/cbor"


class CredentialIssuer:
    def __init__(
        self,
        engine: Engine,
        blobs: BlobStore,
        keys: KeyStore,
        issuer_id: str,
        validity: timedelta = DEFAULT_VALIDITY,
    ) -> None:
        self.engine = engine
        self.blobs = blobs
        self.keys = keys
        self.issuer_id = issuer_id
        self.validity = validity

    def issue(self, request: IssueCredentialInput, now: datetime | None = None) -> IssuedCredential:
        """The verification's credential: signed now, or the one signed before."""
        now = (now or datetime.now(UTC)).replace(microsecond=0)
        holder = self._holder_data(request)
        checked = proof.check_proof(holder.device if holder else None, self.issuer_id, now)
        proof.check_freshness(
            checked,
            credentials.nonce_issued_at(self.engine, request.verification_id, checked.nonce),
        )
        credentials.consume_nonce(
            self.engine, request.verification_id, checked.nonce, checked.digest
        )

        record = credentials.find_issued(self.engine, request.verification_id)
        if record is None:
            assert holder is not None  # check_proof refused a request without one
            record = self._sign_and_record(request, holder.claims, checked, now)
        # Idempotent by key: also lands when an earlier attempt died right after recording.
        audit.append(
            self.engine,
            f"{request.verification_id}:credential_issued",
            request.verification_id,
            "credential_issued",
            "issuer",
            doc_type=record.doc_type,
            mso_digest=record.mso_digest,
            device_key_thumbprint=record.device_key_thumbprint,
            signer_serial=record.signer_serial,
        )
        issuer_signed = self.blobs.get(request.verification_id, record.blob)
        return record.as_issued(base64.b64encode(issuer_signed).decode("ascii"))

    def _holder_data(self, request: IssueCredentialInput) -> HolderData | None:
        """The device binding and claims: from the store, or inline in older requests."""
        if request.holder is not None:
            return HolderData.from_bytes(self.blobs.get(request.verification_id, request.holder))
        if request.device is None:
            return None
        return HolderData(request.device, request.claims or {})

    def _sign_and_record(
        self,
        request: IssueCredentialInput,
        holder_claims: dict[str, Any],
        checked: proof.Proof,
        now: datetime,
    ) -> IssuedCredentialRecord:
        signer = self.keys.current_signer()
        portrait = claims.portrait_jpeg(self.blobs.get(request.verification_id, request.portrait))
        mdl = claims.mdl_claims(holder_claims, portrait, signer.country, now.date())
        document_expires = datetime.combine(mdl.expiry_date + timedelta(days=1), time(), UTC)
        valid_until = min(
            now + self.validity, signer.certificate.not_valid_after_utc, document_expires
        )
        signed = sign_mdoc(mdl.elements, checked.device_key, signer, now, valid_until)
        blob = self.blobs.put(
            request.verification_id, signed.issuer_signed, ISSUER_SIGNED_MEDIA_TYPE
        )
        return credentials.record_issued(
            self.engine,
            IssuedCredentialRecord(
                verification_id=request.verification_id,
                doc_type=signed.doc_type,
                mso_digest=signed.mso_digest,
                device_key_thumbprint=signed.device_key_thumbprint,
                signed_at=signed.signed,
                valid_from=signed.valid_from,
                valid_until=signed.valid_until,
                signer_serial=signed.signer_serial,
                blob_id=blob.blob_id,
                blob_sha256=blob.sha256,
            ),
        )
