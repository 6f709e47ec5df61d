"""The Python client for backend services.

    client = await VerificationClient.connect(Settings.from_env())
    draft = await client.create(selfie_bytes, document_bytes, subject_ref="customer-8812")
    # the holder's device signs a proof over draft.nonce (see mdoc.holder)
    await client.start(draft, device=binding, claims=claims)
    result = await client.result(draft.verification_id)

``create`` sanitises the images (bounded decoding, re-encoded, metadata
stripped) off the event loop, stores them in the encrypted blob store (never
in Temporal) and hands out the one-time nonce for the device's proof of
possession; images refused at ingest are not stored and decide the
verification at once; an id is never reused for another request. ``start`` is
idempotent: the workflow id derives from the verification id, so starting the
same verification twice returns the one that exists.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.contracts import (
    BlobRef,
    DeviceBinding,
    HolderData,
    VerificationProgress,
    VerificationRequest,
    VerificationResult,
)
from domain.enums import ImageRole
from domain.errors import BlobPurged, InputRejected
from domain.reasons import Decision, ReasonCode
from imaging.ingest import sanitize_image
from security.staff_assertions import sign_review
from settings import Settings
from store import drafts, verifications
from store.blobs import BlobStore, open_blob_store
from store.credentials import create_nonce, live_nonce
from store.engine import get_engine
from workflows.identity_verification import IdentityVerification, workflow_id

from .connection import connect

# Verification ids become workflow ids, blob folders and search keys: opaque tokens only.
_VERIFICATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class InvalidVerificationId(ValueError):
    pass


class VerificationIdInUse(ValueError):
    """The verification id belongs to another request; nothing of this one was stored."""


@dataclass(frozen=True)
class Draft:
    """A created verification: its images stored, or refused at ingest; not started yet."""

    verification_id: str
    subject_ref: str
    selfie: BlobRef | None  # None when refused at ingest (nothing stored)
    document: BlobRef | None
    nonce: str  # the device signs its proof of possession over this
    # Images refused at ingest, by role: the verification is decided at once
    # with these reason codes when it starts.
    refused: dict[ImageRole, ReasonCode] = field(default_factory=dict)


class VerificationClient:
    def __init__(
        self, temporal: Client, settings: Settings, engine: Engine, blobs: BlobStore
    ) -> None:
        self.temporal = temporal
        self.settings = settings
        self.engine = engine
        self.blobs = blobs

    @classmethod
    async def connect(cls, settings: Settings) -> VerificationClient:
        return cls(
            await connect(settings),
            settings,
            get_engine(settings.database_url),
            open_blob_store(settings),
        )

    async def create(
        self,
        selfie: bytes,
        document: bytes,
        subject_ref: str,
        verification_id: str | None = None,
    ) -> Draft:
        """Sanitise and store both images and the verification's row; returns the draft to start.

        The work (decoding in a decoding process, encryption, database) runs on a
        worker thread: the event loop is never blocked.

        An image refused at ingest (unreadable, too large, unsupported) is not
        stored, and neither is the other one: the draft carries the reason
        codes, and the verification is decided at once when it starts.

        An existing ``verification_id`` is refused with ``VerificationIdInUse``
        before anything is stored, unless this is the same request again (an
        idempotent retry, e.g. after a lost response): the same bytes of both
        images and the same ``subject_ref`` (``store.drafts.request_digest``).
        A retry gets the draft the first request made (same blob references and
        nonce); a retry of a create that crashed half-way finishes it.
        """
        verification_id = verification_id or uuid.uuid4().hex
        if not _VERIFICATION_ID.fullmatch(verification_id):
            raise InvalidVerificationId(
                f"verification id must match {_VERIFICATION_ID.pattern} (an opaque token)"
            )
        return await asyncio.to_thread(self._create, selfie, document, subject_ref, verification_id)

    def _create(
        self, selfie: bytes, document: bytes, subject_ref: str, verification_id: str
    ) -> Draft:
        digest = drafts.request_digest(selfie, document, subject_ref)
        legacy = drafts.get(self.engine, verification_id) is None and (
            verifications.get(self.engine, verification_id) is not None
        )  # a verification created without a draft (before drafts were kept)
        claimed = None if legacy else drafts.claim(self.engine, verification_id, digest)
        if claimed is None or claimed.request_digest != digest:
            raise VerificationIdInUse(
                f"verification id {verification_id} is taken by another request; nothing was stored"
            )
        if claimed.complete:  # the same request again: what the first one made
            nonce = live_nonce(self.engine, verification_id)
            assert nonce is not None, "a complete draft has its nonce"
            return Draft(
                verification_id,
                subject_ref,
                claimed.image(ImageRole.SELFIE),
                claimed.image(ImageRole.DOCUMENT),
                nonce,
                claimed.refusals(),
            )
        images, refused = self._ingest(
            verification_id, {ImageRole.SELFIE: selfie, ImageRole.DOCUMENT: document}
        )
        verifications.create(
            self.engine, verification_id, workflow_id(verification_id), subject_ref
        )
        nonce = create_nonce(self.engine, verification_id)
        drafts.complete(self.engine, verification_id, images, refused)
        return Draft(
            verification_id,
            subject_ref,
            images[ImageRole.SELFIE],
            images[ImageRole.DOCUMENT],
            nonce,
            refused,
        )

    def draft(self, verification_id: str) -> Draft | None:
        """The draft ``create`` made for this id (to start it later, e.g. from another process)."""
        record = drafts.get(self.engine, verification_id)
        nonce = live_nonce(self.engine, verification_id) if record and record.complete else None
        if record is None or nonce is None:
            return None
        row = verifications.get(self.engine, verification_id)
        assert row is not None, "a complete draft has its verification row"
        return Draft(
            verification_id,
            row.subject_ref,
            record.image("selfie"),
            record.image("document"),
            nonce,
            record.refusals(),
        )

    def _ingest(
        self, verification_id: str, uploads: dict[ImageRole, bytes]
    ) -> tuple[dict[ImageRole, BlobRef | None], dict[ImageRole, ReasonCode]]:
        """Sanitise every upload; store them all, or none when any is refused."""
        clean: dict[ImageRole, tuple[bytes, str]] = {}
        refused: dict[ImageRole, ReasonCode] = {}
        for role, data in uploads.items():
            try:
                clean[role] = sanitize_image(data)
            except InputRejected as rejection:
                refused[role] = rejection.reason
        if refused:
            return dict.fromkeys(uploads), refused
        stored = {
            role: self.blobs.put(verification_id, data, media_type)
            for role, (data, media_type) in clean.items()
        }
        return dict(stored), {}

    async def start(
        self,
        draft: Draft,
        *,
        device: DeviceBinding | None = None,
        claims: dict[str, Any] | None = None,
        model_pins: dict[str, str] | None = None,
        review_deadline_seconds: int | None = None,
        processing_attempts: int = VerificationRequest.processing_attempts,
    ) -> WorkflowHandle[IdentityVerification, VerificationResult]:
        """Start the workflow, or return the running or finished one with this id.

        ``processing_attempts``: how often each step is tried against unexpected
        errors before the verification goes to a person (PROCESSING_FAILED).
        """
        # Device binding and claims are personal: stored under the verification's
        # data key (a purge destroys them), the workflow gets their reference.
        holder = None
        if device is not None:
            try:
                holder = self.blobs.put(
                    draft.verification_id,
                    HolderData(device, dict(claims or {})).to_bytes(),
                    HolderData.MEDIA_TYPE,
                )
            except BlobPurged:  # purged before the start: it declines INPUT_PURGED, binds nothing
                pass
        request = VerificationRequest(
            verification_id=draft.verification_id,
            selfie=draft.selfie,
            document=draft.document,
            refused=dict(draft.refused),
            holder=holder,
            model_pins=dict(model_pins or {}),
            review_deadline_seconds=review_deadline_seconds
            or self.settings.review_deadline_seconds,
            gpu_task_queue=self.settings.gpu_task_queue,
            processing_attempts=processing_attempts,
        )
        try:
            return await self.temporal.start_workflow(
                IdentityVerification.run,
                request,
                id=workflow_id(draft.verification_id),
                task_queue=self.settings.cpu_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                static_summary=f"Identity verification {draft.verification_id}",
            )
        except WorkflowAlreadyStartedError:  # finished earlier: the same verification
            return self.handle(draft.verification_id)

    def handle(
        self, verification_id: str
    ) -> WorkflowHandle[IdentityVerification, VerificationResult]:
        return self.temporal.get_workflow_handle_for(
            IdentityVerification.run, workflow_id(verification_id)
        )

    async def result(self, verification_id: str) -> VerificationResult:
        """Wait for the decision (a grey-zone verification waits for its review).

        An issued credential's bytes come from the encrypted store (the history
        holds only their reference); once purged, ``issuer_signed_b64`` is None.
        """
        result = await self.handle(verification_id).result()
        credential = result.credential
        if credential is None or credential.issuer_signed is None:
            return result
        try:
            issuer_signed = self.blobs.get(verification_id, credential.issuer_signed)
        except BlobPurged:
            return result
        result.credential = dataclasses.replace(
            credential, issuer_signed_b64=base64.b64encode(issuer_signed).decode("ascii")
        )
        return result

    async def progress(self, verification_id: str) -> VerificationProgress:
        return await self.handle(verification_id).query(IdentityVerification.progress)

    async def review(
        self, verification_id: str, approve: bool, reason: str, staff_id: str, staff_token: str
    ) -> Decision:
        """Decide a verification that awaits review, as the staff member holding ``staff_token``.

        The decision is signed with the token (which never leaves this process);
        the worker checks it against the staff token store and records
        ``staff_id`` as the reviewer only if it holds the ``review`` role.
        Refused in any other stage, and when the signature does not check.
        """
        decision = sign_review(staff_token, staff_id, workflow_id(verification_id), approve, reason)
        return await self.handle(verification_id).execute_update(
            IdentityVerification.review, decision
        )
