"""``/v1/verifications``: create from two uploads, start, read status and result, purge.

    POST /v1/verifications              multipart: selfie, document, subject_ref
    POST /v1/verifications/{id}/start   JSON: device binding and claims (both optional)
    GET  /v1/verifications/{id}         status, and the result once decided
    POST /v1/verifications/{id}/purge   destroy its images and credential now

Writes take an ``Idempotency-Key`` (``api.idempotency``). Claims are checked
when the verification starts, with the issuer's own rules (``mdoc.claims``):
a bad claim is a 422 naming the element and rule, before any biometrics run.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Header, Path, Request, UploadFile
from pydantic import BaseModel, Field
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.contracts import DeviceBinding, IssuedCredential, PurgeRequest
from domain.errors import ClaimsInvalid
from domain.reasons import Decision, ReasonCode
from mdoc.claims import check_claims
from mdoc.keystore import issuing_country, keys_dir
from starter.client import InvalidVerificationId, VerificationClient, VerificationIdInUse
from store import verifications
from workflows.retention import PurgeVerification

from .clients import ApiClient, Scope, require
from .idempotency import HEADER, answer_once, fingerprint
from .problems import ProblemCode, ProblemError, responses

router = APIRouter(prefix="/v1/verifications", tags=["verifications"])

VerificationId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="the verification's id")
]
IdempotencyKey = Annotated[
    str | None,
    Header(alias=HEADER, description="the same key and request give the same answer"),
]

Writer = Annotated[ApiClient, Depends(require(Scope.VERIFICATIONS_WRITE))]
Reader = Annotated[ApiClient, Depends(require(Scope.VERIFICATIONS_READ))]


class Created(BaseModel):
    verification_id: str
    nonce: str = Field(description="the holder's device signs its proof of possession over it")
    refused: dict[str, ReasonCode] = Field(
        description="images refused at ingest, by role (nothing stored): decided when started"
    )


class StartRequest(BaseModel):
    device: DeviceBinding | None = Field(
        default=None, description="the holder's device key (P-256 JWK) and its proof over the nonce"
    )
    claims: dict[str, Any] | None = Field(
        default=None, description="mDL data elements for the credential (needs a device)"
    )


class Started(BaseModel):
    verification_id: str
    status: Literal["started"]


class PurgeRequested(BaseModel):
    verification_id: str
    purge: Literal["requested"]


class VerificationStatus(BaseModel):
    verification_id: str
    status: Literal["created", "running", "completed", "failed", "canceled", "terminated"] = Field(
        description="created: not started yet; running: see stage; completed: decided"
    )
    stage: str | None = None
    decision: Decision | None = None
    reasons: list[ReasonCode] = Field(default_factory=list)
    scores: dict[str, float] = Field(default_factory=dict)
    model_versions: dict[str, str] = Field(default_factory=dict)
    review_deadline: str | None = None
    reviewer: str | None = None
    details: dict[str, str] = Field(
        default_factory=dict, description="reason code -> what was refused (element and rule)"
    )
    credential: IssuedCredential | None = None


def _client(request: Request) -> VerificationClient:
    return request.app.state.verifications


@router.post(
    "",
    status_code=201,
    response_model=Created,
    responses=responses(401, 403, 409, 413, 422, 429),
    summary="Create a verification from a selfie and a document portrait",
)
async def create_verification(
    request: Request,
    client: Writer,
    selfie: Annotated[UploadFile, File(description="the selfie image")],
    document: Annotated[UploadFile, File(description="the document's portrait image")],
    subject_ref: Annotated[
        str, Form(min_length=1, max_length=200, description="your opaque reference to the person")
    ],
    verification_id: Annotated[
        str | None, Form(description="your id for it (default: a random one)")
    ] = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    selfie_bytes, document_bytes = await selfie.read(), await document.read()

    async def create() -> tuple[int, dict[str, Any]]:
        try:
            draft = await _client(request).create(
                selfie_bytes, document_bytes, subject_ref, verification_id
            )
        except InvalidVerificationId as error:
            raise ProblemError(422, ProblemCode.REQUEST_INVALID, "Invalid id", str(error)) from None
        except VerificationIdInUse as error:
            raise ProblemError(
                409, ProblemCode.VERIFICATION_ID_IN_USE, "Verification id in use", str(error)
            ) from None
        created = Created(
            verification_id=draft.verification_id, nonce=draft.nonce, refused=draft.refused
        )
        return 201, created.model_dump(mode="json")

    request_fingerprint = fingerprint(
        "create", selfie_bytes, document_bytes, subject_ref, verification_id
    )
    return await answer_once(request, client, idempotency_key, request_fingerprint, create)


@router.post(
    "/{verification_id}/start",
    status_code=202,
    response_model=Started,
    responses=responses(401, 403, 404, 409, 422, 429),
    summary="Start a created verification, with optional device binding and claims",
)
async def start_verification(
    request: Request,
    verification_id: VerificationId,
    body: StartRequest,
    client: Writer,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    async def start() -> tuple[int, dict[str, Any]]:
        verification = _client(request)
        draft = await asyncio.to_thread(verification.draft, verification_id)
        if draft is None:
            raise _not_found(verification_id)
        if body.claims is not None:
            _check_claims(verification, body.claims)
        await verification.start(draft, device=body.device, claims=body.claims)
        return 202, Started(verification_id=verification_id, status="started").model_dump()

    request_fingerprint = fingerprint("start", verification_id, body.model_dump(mode="json"))
    return await answer_once(request, client, idempotency_key, request_fingerprint, start)


def _check_claims(verification: VerificationClient, claims: dict[str, Any]) -> None:
    country = issuing_country(keys_dir(verification.settings.home))
    try:
        check_claims(claims, country, datetime.now(UTC).date())
    except ClaimsInvalid as error:  # its message names the element and rule, never the value
        raise ProblemError(422, ReasonCode.CLAIMS_INVALID, "Claims invalid", str(error)) from None


@router.get(
    "/{verification_id}",
    response_model=VerificationStatus,
    response_model_exclude_none=True,
    responses=responses(401, 403, 404, 422, 429),
    summary="Status of a verification, and its result once decided",
)
async def read_verification(
    request: Request,
    verification_id: VerificationId,
    client: Reader,
) -> Any:
    verification = _client(request)
    handle = verification.handle(verification_id)
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            raise
        if await asyncio.to_thread(verification.draft, verification_id) is None:
            raise _not_found(verification_id) from None
        return VerificationStatus(verification_id=verification_id, status="created")
    state = description.status
    if state is WorkflowExecutionStatus.COMPLETED:
        # The client fills in the credential's bytes from the encrypted store.
        result = await verification.result(verification_id)
        return VerificationStatus(
            verification_id=verification_id,
            status="completed",
            stage="completed",
            decision=result.decision,
            reasons=result.reasons,
            scores=result.scores,
            model_versions=result.model_versions,
            reviewer=result.reviewer,
            details=result.details,
            credential=result.credential,
        )
    if state is WorkflowExecutionStatus.RUNNING:
        progress = await verification.progress(verification_id)
        return VerificationStatus(
            verification_id=verification_id,
            status="running",
            stage=progress.stage.value,
            decision=progress.decision,
            reasons=progress.reasons,
            scores=progress.scores,
            model_versions=progress.model_versions,
            review_deadline=progress.review_deadline,
        )
    ended = {
        WorkflowExecutionStatus.CANCELED: "canceled",
        WorkflowExecutionStatus.TERMINATED: "terminated",
    }.get(state, "failed")
    return VerificationStatus(verification_id=verification_id, status=ended)


@router.post(
    "/{verification_id}/purge",
    status_code=202,
    response_model=PurgeRequested,
    responses=responses(401, 403, 404, 409, 422, 429),
    summary="Destroy the verification's images and credential (record and audit stay)",
)
async def purge_verification(
    request: Request,
    verification_id: VerificationId,
    client: Writer,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    async def purge() -> tuple[int, dict[str, Any]]:
        verification = _client(request)
        if await asyncio.to_thread(verifications.get, verification.engine, verification_id) is None:
            raise _not_found(verification_id)
        try:
            await verification.temporal.start_workflow(
                PurgeVerification.run,
                PurgeRequest(verification_id, f"api-client:{client.name}", "requested via API"),
                id=f"idflow-purge-{verification_id}",
                task_queue=verification.settings.cpu_task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        except WorkflowAlreadyStartedError:  # purged earlier: the same request
            pass
        return 202, PurgeRequested(verification_id=verification_id, purge="requested").model_dump()

    request_fingerprint = fingerprint("purge", verification_id)
    return await answer_once(request, client, idempotency_key, request_fingerprint, purge)


def _not_found(verification_id: str) -> ProblemError:
    return ProblemError(
        404, ProblemCode.NOT_FOUND, "No such verification", f"no verification {verification_id}"
    )
