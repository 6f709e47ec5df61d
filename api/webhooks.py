"""``/v1/webhooks``: register endpoints, read their delivery log, ask for a redelivery.

    POST   /v1/webhooks                                      JSON: url → the signing secret, once
    GET    /v1/webhooks                                      the client's endpoints
    DELETE /v1/webhooks/{webhook_id}                         stop sending; the secret is erased
    GET    /v1/webhooks/{webhook_id}/deliveries              deliveries and their attempts
    POST   /v1/webhooks/{webhook_id}/events/{event_id}/redeliver   send an event again

Every endpoint gets every decision (``verification.decided``), signed with its
own secret (``security.webhook_signatures``) and delivered by a
``WebhookDelivery`` workflow. All operations need the ``webhooks`` scope; a
client sees only its own endpoints. A URL is ``https``, or ``http`` to a
loopback address (a receiver on the same host).
"""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from security.keys import BLOB, load_key_ring
from starter.client import VerificationClient
from store import webhooks
from workflows.webhooks import WebhookDelivery, delivery_workflow_id

from .clients import ApiClient, Scope, require
from .idempotency import answer_once, fingerprint
from .problems import ProblemCode, ProblemError, responses
from .verifications import IdempotencyKey

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

Owner = Annotated[ApiClient, Depends(require(Scope.WEBHOOKS))]
WebhookId = Annotated[str, Path(pattern=r"^whk_[0-9a-f]{32}$", description="the endpoint's id")]
EventId = Annotated[str, Path(pattern=r"^evt_[0-9a-f]{32}$", description="the event's id")]
MAX_URL_CHARS = 2048


class WebhookRegistration(BaseModel):
    url: str = Field(
        min_length=1,
        max_length=MAX_URL_CHARS,
        description="where events are POSTed: https, or http to a loopback address",
    )


class Webhook(BaseModel):
    webhook_id: str
    url: str
    created_at: datetime


class WebhookCreated(Webhook):
    secret: str = Field(
        description="the signing secret (whsec_...): shown once, keep it to verify signatures"
    )


class Webhooks(BaseModel):
    webhooks: list[Webhook]


class Attempt(BaseModel):
    attempt: int
    started_at: datetime
    finished_at: datetime | None = None
    status_code: int | None = Field(default=None, description="the receiver's HTTP status")
    error: str | None = Field(default=None, description="timeout or the connection error class")
    outcome: Literal["delivered", "retry", "refused"] | None = Field(
        default=None, description="None while the attempt runs"
    )


class Delivery(BaseModel):
    delivery_id: str
    event_id: str
    event_type: str
    verification_id: str
    trigger: Literal["decision", "redelivery"]
    status: Literal["pending", "delivered", "failed"]
    failure: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    attempts: list[Attempt]


class DeliveryLog(BaseModel):
    deliveries: list[Delivery] = Field(description="newest first")


def _verifications(request: Request) -> VerificationClient:
    return request.app.state.verifications


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if (
        not host
        or parts.scheme not in ("https", "http")
        or (parts.scheme == "http" and not loopback)
    ):
        raise ProblemError(
            422,
            ProblemCode.REQUEST_INVALID,
            "Invalid webhook URL",
            "url must be an https URL, or http to a loopback address (127.0.0.1, ::1, localhost)",
        )


def _not_found(what: str) -> ProblemError:
    return ProblemError(404, ProblemCode.NOT_FOUND, "Not found", f"no {what}")


@router.post(
    "",
    status_code=201,
    response_model=WebhookCreated,
    responses=responses(401, 403, 409, 422, 429),
    summary="Register an endpoint for decision events; its signing secret is returned once",
)
async def create_webhook(
    request: Request,
    body: WebhookRegistration,
    client: Owner,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    _check_url(body.url)

    async def create() -> tuple[int, dict[str, Any]]:
        verifications = _verifications(request)
        ring = load_key_ring(verifications.settings, BLOB)
        row, secret = await asyncio.to_thread(
            webhooks.add_endpoint, verifications.engine, ring, client.client_id, body.url
        )
        created = WebhookCreated(
            webhook_id=row.webhook_id, url=row.url, created_at=row.created_at, secret=secret
        )
        return 201, created.model_dump(mode="json")

    request_fingerprint = fingerprint("webhook", body.url)
    return await answer_once(request, client, idempotency_key, request_fingerprint, create)


@router.get(
    "",
    response_model=Webhooks,
    responses=responses(401, 403, 429),
    summary="The client's endpoints (never their secrets)",
)
async def list_webhooks(request: Request, client: Owner) -> Any:
    engine = _verifications(request).engine
    rows = await asyncio.to_thread(webhooks.endpoints, engine, client.client_id)
    return Webhooks(
        webhooks=[
            Webhook(webhook_id=r.webhook_id, url=r.url, created_at=r.created_at) for r in rows
        ]
    )


@router.delete(
    "/{webhook_id}",
    status_code=204,
    response_class=Response,
    responses=responses(401, 403, 404, 422, 429),
    summary="Stop sending to an endpoint and erase its secret (its delivery log stays)",
)
async def delete_webhook(request: Request, webhook_id: WebhookId, client: Owner) -> Response:
    engine = _verifications(request).engine
    if not await asyncio.to_thread(webhooks.delete_endpoint, engine, client.client_id, webhook_id):
        raise _not_found(f"webhook {webhook_id}")
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryLog,
    response_model_exclude_none=True,
    responses=responses(401, 403, 404, 422, 429),
    summary="The endpoint's deliveries, newest first, each with its attempts",
)
async def read_deliveries(
    request: Request,
    webhook_id: WebhookId,
    client: Owner,
    limit: Annotated[int, Query(ge=1, le=200, description="at most this many")] = 50,
) -> Any:
    engine = _verifications(request).engine
    if await asyncio.to_thread(webhooks.endpoint, engine, client.client_id, webhook_id) is None:
        raise _not_found(f"webhook {webhook_id}")
    logged = await asyncio.to_thread(webhooks.delivery_log, engine, webhook_id, limit)
    return DeliveryLog(deliveries=[_delivery(entry) for entry in logged])


def _delivery(entry: webhooks.LoggedDelivery) -> Delivery:
    delivery, event = entry.delivery, entry.event
    return Delivery(
        delivery_id=delivery.delivery_id,
        event_id=event.event_id,
        event_type=event.event_type,
        verification_id=event.verification_id,
        trigger=delivery.trigger,  # type: ignore[arg-type]
        status=delivery.status,  # type: ignore[arg-type]
        failure=delivery.failure,
        created_at=delivery.created_at,
        finished_at=delivery.finished_at,
        attempts=[Attempt.model_validate(a, from_attributes=True) for a in entry.attempts],
    )


@router.post(
    "/{webhook_id}/events/{event_id}/redeliver",
    status_code=202,
    response_model=Delivery,
    response_model_exclude_none=True,
    responses=responses(401, 403, 404, 409, 422, 429),
    summary="Deliver an event to the endpoint again (a new delivery, signed anew)",
)
async def redeliver(
    request: Request,
    webhook_id: WebhookId,
    event_id: EventId,
    client: Owner,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    async def start() -> tuple[int, dict[str, Any]]:
        verifications = _verifications(request)
        engine = verifications.engine
        target = await asyncio.to_thread(webhooks.endpoint, engine, client.client_id, webhook_id)
        if target is None or target.deleted_at is not None:
            raise _not_found(f"webhook {webhook_id}")
        logged = await asyncio.to_thread(webhooks.redeliver, engine, webhook_id, event_id)
        if logged is None:
            raise _not_found(f"event {event_id} sent to webhook {webhook_id}")
        delivery_id = logged.delivery.delivery_id
        await verifications.temporal.start_workflow(
            WebhookDelivery.run,
            delivery_id,
            id=delivery_workflow_id(delivery_id),
            task_queue=verifications.settings.cpu_task_queue,
        )
        return 202, _delivery(logged).model_dump(mode="json", exclude_none=True)

    request_fingerprint = fingerprint("redeliver", webhook_id, event_id)
    return await answer_once(request, client, idempotency_key, request_fingerprint, start)
