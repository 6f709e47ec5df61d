"""Webhooks at rest: endpoints, the events they are sent, deliveries and their attempts.

- ``webhook_endpoints``: an API client's URL and its signing secret, sealed
  (AES-256-GCM) under the current blob master key with the endpoint id as
  associated data (``store.envelope.seal``): the sender needs the secret
  itself, so it cannot be kept as a hash. Deleting an endpoint erases the
  sealed secret; the row stays so that its delivery log still reads.
- ``webhook_events``: each event's exact JSON body (what is signed and sent),
  one per verification and type. Bodies hold ids, vocabulary and times only.
- ``webhook_deliveries``: one event to one endpoint: ``pending`` until an
  attempt gets a 2xx (``delivered``) or the sender gives up (``failed``).
  A redelivery is a new delivery of the same event.
- ``webhook_attempts``: each HTTP attempt: when, the status code or a short
  error, and its outcome.

Ids are derived where a retried step must find its own rows again: the
decision's event from the workflow run, its first deliveries from the event
and the endpoint.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, LargeBinary, Text, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from security.keys import KeyRing

from .audit import utcnow
from .rows import insert_or_existing

DECIDED = "verification.decided"
SECRET_PREFIX = "whsec_"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_IDS = uuid.UUID("6f1d3c52-9a43-4b0e-9d57-0c8a41f1e7b2")  # namespace of the derived ids


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoints"

    webhook_id: str = Field(primary_key=True, max_length=40)
    client_id: str = Field(index=True, max_length=32)
    url: str = Field(max_length=2048)
    master_key_id: str | None = Field(default=None, max_length=64)
    sealed_secret: bytes | None = Field(
        default=None, sa_column=Column(LargeBinary, nullable=True), repr=False
    )
    created_at: datetime = Field(default_factory=utcnow)
    deleted_at: datetime | None = Field(default=None, index=True)


class WebhookEvent(SQLModel, table=True):
    __tablename__ = "webhook_events"

    event_id: str = Field(primary_key=True, max_length=40)
    event_type: str = Field(max_length=64)
    verification_id: str = Field(index=True, max_length=64)
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_deliveries"

    delivery_id: str = Field(primary_key=True, max_length=40)
    event_id: str = Field(index=True, max_length=40)
    webhook_id: str = Field(index=True, max_length=40)
    trigger: str = Field(max_length=16)  # "decision" or "redelivery"
    status: str = Field(default=PENDING, max_length=16)
    failure: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class WebhookAttempt(SQLModel, table=True):
    __tablename__ = "webhook_attempts"

    delivery_id: str = Field(primary_key=True, max_length=40)
    attempt: int = Field(primary_key=True)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=200)
    outcome: str | None = Field(default=None, max_length=16)


WEBHOOK_TABLES = (WebhookEndpoint, WebhookEvent, WebhookDelivery, WebhookAttempt)


@dataclass(frozen=True)
class Outbound:
    """What one attempt sends: the endpoint's URL and secret, the event's id and body."""

    delivery_id: str
    status: str
    url: str
    secret: str
    event_id: str
    body: bytes


@dataclass(frozen=True)
class LoggedDelivery:
    """A delivery with its event and attempts, as the delivery log shows it."""

    delivery: WebhookDelivery
    event: WebhookEvent
    attempts: list[WebhookAttempt]


class EndpointGone(LookupError):
    """The delivery's endpoint was deleted (its secret with it), or the delivery is unknown."""


def _derived_id(prefix: str, *parts: str) -> str:
    return prefix + uuid.uuid5(_IDS, "|".join(parts)).hex


def _secret_aad(webhook_id: str) -> bytes:
    return b"idflow-webhook-secret/v1|" + webhook_id.encode()


# --- Endpoints ----------------------------------------------------------------


def add_endpoint(
    engine: Engine, ring: KeyRing, client_id: str, url: str
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (returned once; stored sealed)."""
    webhook_id = "whk_" + uuid.uuid4().hex
    from .envelope import seal  # here: envelope imports store.engine, which imports this module

    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    kid, master = ring.current()
    row = WebhookEndpoint(
        webhook_id=webhook_id,
        client_id=client_id,
        url=url,
        master_key_id=kid,
        sealed_secret=seal(master, secret.encode(), _secret_aad(webhook_id)),
    )
    with Session(engine) as session:
        session.add(row)
        session.commit()
        session.refresh(row)
    return row, secret


def endpoints(engine: Engine, client_id: str) -> list[WebhookEndpoint]:
    """The client's live endpoints, oldest first."""
    with Session(engine) as session:
        query = (
            select(WebhookEndpoint)
            .where(WebhookEndpoint.client_id == client_id)
            .where(col(WebhookEndpoint.deleted_at).is_(None))
            .order_by(col(WebhookEndpoint.created_at))
        )
        return list(session.exec(query))


def endpoint(engine: Engine, client_id: str, webhook_id: str) -> WebhookEndpoint | None:
    """The client's endpoint (deleted ones too: their log still reads), else None."""
    with Session(engine) as session:
        row = session.get(WebhookEndpoint, webhook_id)
    return row if row is not None and row.client_id == client_id else None


def delete_endpoint(engine: Engine, client_id: str, webhook_id: str) -> bool:
    """Stop sending to it and erase its secret; False when the client has no such live one."""
    with Session(engine) as session:
        changed = (
            session.connection()
            .execute(
                update(WebhookEndpoint)
                .where(col(WebhookEndpoint.webhook_id) == webhook_id)
                .where(col(WebhookEndpoint.client_id) == client_id)
                .where(col(WebhookEndpoint.deleted_at).is_(None))
                .values(deleted_at=utcnow(), sealed_secret=None, master_key_id=None)
            )
            .rowcount
        )
        session.commit()
    return bool(changed)


# --- Events and deliveries ------------------------------------------------------


def queue_decision(
    engine: Engine, run_id: str, verification_id: str, decision: str, reasons: list[str]
) -> list[str]:
    """The decision's event (made once per workflow run) and a delivery of it to every live
    endpoint; returns the delivery ids. A repeated call returns the same ids."""
    event_id = _derived_id("evt_", run_id, DECIDED)
    created = utcnow()
    body = {
        "id": event_id,
        "type": DECIDED,
        "created_at": created.isoformat(),
        "data": {"verification_id": verification_id, "decision": decision, "reasons": reasons},
    }
    event = WebhookEvent(
        event_id=event_id,
        event_type=DECIDED,
        verification_id=verification_id,
        body=json.dumps(body, separators=(",", ":"), sort_keys=True),
        created_at=created,
    )
    insert_or_existing(engine, event)
    with Session(engine) as session:
        live = session.exec(
            select(WebhookEndpoint.webhook_id).where(col(WebhookEndpoint.deleted_at).is_(None))
        )
        webhook_ids = sorted(live)
    deliveries = [
        WebhookDelivery(
            delivery_id=_derived_id("dlv_", event_id, webhook_id),
            event_id=event_id,
            webhook_id=webhook_id,
            trigger="decision",
        )
        for webhook_id in webhook_ids
    ]
    return [insert_or_existing(engine, delivery).delivery_id for delivery in deliveries]


def redeliver(engine: Engine, webhook_id: str, event_id: str) -> LoggedDelivery | None:
    """A new delivery of an event to an endpoint that was sent it before; None if it never was."""
    with Session(engine) as session:
        sent = session.exec(
            select(WebhookDelivery.delivery_id)
            .where(WebhookDelivery.webhook_id == webhook_id)
            .where(WebhookDelivery.event_id == event_id)
        ).first()
        event = session.get(WebhookEvent, event_id)
        if sent is None or event is None:
            return None
        delivery = WebhookDelivery(
            delivery_id="dlv_" + uuid.uuid4().hex,
            event_id=event_id,
            webhook_id=webhook_id,
            trigger="redelivery",
        )
        session.add(delivery)
        session.commit()
        session.refresh(delivery)
        session.refresh(event)
        return LoggedDelivery(delivery, event, [])


def outbound(engine: Engine, ring: KeyRing, delivery_id: str) -> Outbound:
    """What to send for a delivery; ``EndpointGone`` when there is nothing to send it to."""
    from .envelope import open_sealed  # as in add_endpoint

    with Session(engine) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            raise EndpointGone(f"no webhook delivery {delivery_id}")
        target = session.get(WebhookEndpoint, delivery.webhook_id)
        event = session.get(WebhookEvent, delivery.event_id)
    if target is None or event is None or target.sealed_secret is None:
        raise EndpointGone(f"webhook {delivery.webhook_id} was deleted")
    assert target.master_key_id is not None
    secret = open_sealed(
        ring.get(target.master_key_id),
        target.sealed_secret,
        _secret_aad(target.webhook_id),
        what=f"the signing secret of webhook {target.webhook_id}",
    )
    return Outbound(
        delivery_id,
        delivery.status,
        target.url,
        secret.decode(),
        event.event_id,
        event.body.encode(),
    )


def start_attempt(engine: Engine, delivery_id: str, attempt: int) -> None:
    insert_or_existing(engine, WebhookAttempt(delivery_id=delivery_id, attempt=attempt))


def finish_attempt(
    engine: Engine,
    delivery_id: str,
    attempt: int,
    outcome: str,
    status_code: int | None = None,
    error: str | None = None,
) -> None:
    """Record how an attempt ended; a ``delivered`` one also marks its delivery delivered
    (once: a repeated success leaves the first in place)."""
    now = utcnow()
    with Session(engine) as session:
        connection = session.connection()
        connection.execute(
            update(WebhookAttempt)
            .where(col(WebhookAttempt.delivery_id) == delivery_id)
            .where(col(WebhookAttempt.attempt) == attempt)
            .values(finished_at=now, status_code=status_code, error=error, outcome=outcome)
        )
        if outcome == DELIVERED:
            connection.execute(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.delivery_id) == delivery_id)
                .where(col(WebhookDelivery.status) == PENDING)
                .values(status=DELIVERED, finished_at=now)
            )
        session.commit()


def fail_delivery(engine: Engine, delivery_id: str, failure: str) -> None:
    """The sender gave up on a delivery (unless it was delivered meanwhile)."""
    with Session(engine) as session:
        session.connection().execute(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.delivery_id) == delivery_id)
            .where(col(WebhookDelivery.status) == PENDING)
            .values(status=FAILED, failure=failure[:200], finished_at=utcnow())
        )
        session.commit()


def delivery_log(engine: Engine, webhook_id: str, limit: int) -> list[LoggedDelivery]:
    """The endpoint's newest ``limit`` deliveries with their events and attempts."""
    with Session(engine) as session:
        rows = session.exec(
            select(WebhookDelivery, WebhookEvent)
            .join(WebhookEvent, col(WebhookEvent.event_id) == col(WebhookDelivery.event_id))
            .where(WebhookDelivery.webhook_id == webhook_id)
            .order_by(col(WebhookDelivery.created_at).desc())
            .limit(limit)
        ).all()
        ids = [delivery.delivery_id for delivery, _ in rows]
        attempts: dict[str, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in ids}
        for attempt in session.exec(
            select(WebhookAttempt)
            .where(col(WebhookAttempt.delivery_id).in_(ids))
            .order_by(col(WebhookAttempt.attempt))
        ):
            attempts[attempt.delivery_id].append(attempt)
    return [
        LoggedDelivery(delivery, event, attempts[delivery.delivery_id]) for delivery, event in rows
    ]
