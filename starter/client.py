"""The Python client for backend services.

    client = await VerificationClient.connect(Settings.from_env())
    draft = client.create(selfie_bytes, document_bytes, subject_ref="customer-8812")
    # the holder's device signs a proof over draft.nonce (see mdoc.holder)
    await client.start(draft, device=binding, claims=claims)
    result = await client.result(draft.verification_id)

``create`` sanitises the images (re-encoded, metadata stripped), stores them
in the encrypted blob store (never in Temporal) and hands out the one-time
nonce for the device's proof of possession. ``start`` is
idempotent: the workflow id derives from the verification id, so starting the
same verification twice returns the one that exists.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.contracts import (
    BlobRef,
    DeviceBinding,
    ReviewDecision,
    VerificationProgress,
    VerificationRequest,
    VerificationResult,
)
from domain.errors import InputRejected
from domain.reasons import Decision
from imaging.decode import ImageLimits
from imaging.ingest import sanitize_image
from settings import Settings
from store import verifications
from store.blobs import BlobStore, open_blob_store
from store.credentials import create_nonce
from store.engine import get_engine
from workflows.identity_verification import IdentityVerification, workflow_id

from .connection import connect

# Verification ids become workflow ids, blob folders and search keys: opaque tokens only.
_VERIFICATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class InvalidVerificationId(ValueError):
    pass


@dataclass(frozen=True)
class Draft:
    """A created verification whose images are stored; not started yet."""

    verification_id: str
    subject_ref: str
    selfie: BlobRef
    document: BlobRef
    nonce: str  # the device signs its proof of possession over this


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

    def create(
        self,
        selfie: bytes,
        document: bytes,
        subject_ref: str,
        verification_id: str | None = None,
    ) -> Draft:
        """Store both images and the verification's row; returns the draft to start."""
        verification_id = verification_id or uuid.uuid4().hex
        if not _VERIFICATION_ID.fullmatch(verification_id):
            raise InvalidVerificationId(
                f"verification id must match {_VERIFICATION_ID.pattern} (an opaque token)"
            )
        selfie_ref = self._store_image(verification_id, selfie)
        document_ref = self._store_image(verification_id, document)
        verifications.create(
            self.engine, verification_id, workflow_id(verification_id), subject_ref
        )
        return Draft(
            verification_id,
            subject_ref,
            selfie_ref,
            document_ref,
            nonce=create_nonce(self.engine, verification_id),
        )

    def _store_image(self, verification_id: str, data: bytes) -> BlobRef:
        try:
            clean, media_type = sanitize_image(data)
        except InputRejected:
            # Stored as given: the quality check meets the same typed error and the
            # verification ends with a decision and its reason code, on the record.
            # Past the byte limit one more byte keeps it too large without storing it all.
            kept = data[: ImageLimits().max_bytes + 1]
            return self.blobs.put(verification_id, kept, "application/octet-stream")
        return self.blobs.put(verification_id, clean, media_type)

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
        request = VerificationRequest(
            verification_id=draft.verification_id,
            subject_ref=draft.subject_ref,
            selfie=draft.selfie,
            document=draft.document,
            device=device,
            claims=claims,
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
        """Wait for the decision (a grey-zone verification waits for its review)."""
        return await self.handle(verification_id).result()

    async def progress(self, verification_id: str) -> VerificationProgress:
        return await self.handle(verification_id).query(IdentityVerification.progress)

    async def review(
        self, verification_id: str, reviewer: str, approve: bool, reason: str
    ) -> Decision:
        """Decide a verification that awaits review; refused in any other stage."""
        return await self.handle(verification_id).execute_update(
            IdentityVerification.review, ReviewDecision(reviewer, approve, reason)
        )
