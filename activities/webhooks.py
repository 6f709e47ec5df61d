"""Activities: queue a decision for the webhooks, deliver one event, give a delivery up.

``deliver_webhook`` is one HTTP attempt; Temporal's retry policy (in
``workflows.webhooks``) spaces the attempts. Each attempt is signed anew
(``security.webhook_signatures``) and written to the delivery log before and
after the request. A 2xx is delivered; 408, 425, 429, a 5xx, a timeout or a
connection failure fail the attempt (Temporal retries it); any other status
(a redirect is not followed, a 4xx) is the receiver refusing it: a
non-retryable ``WEBHOOK_REFUSED``. A deleted endpoint ends its deliveries
(``WEBHOOK_ENDPOINT_GONE``). Errors name a status code or an error class,
never the URL or the body.
"""

from __future__ import annotations

import asyncio

import aiohttp
from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.contracts import DecisionEventInput, WebhookFailure
from security import webhook_signatures
from security.keys import KeyRing
from store import webhooks
from store.webhooks import DELIVERED, EndpointGone

from . import metrics, names

REQUEST_TIMEOUT_SECONDS = 10
_RETRYABLE_STATUS = frozenset({408, 425, 429})
USER_AGENT = "idflow-webhooks/1"


def attempt_outcome(status: int) -> str:
    """``delivered``, ``retry`` (the receiver may take it later) or ``refused``."""
    if 200 <= status < 300:
        return DELIVERED
    if status in _RETRYABLE_STATUS or status >= 500:
        return "retry"
    return "refused"


class WebhookActivities:
    def __init__(self, engine: Engine, secrets: KeyRing) -> None:
        self.engine = engine
        self.secrets = secrets  # the blob master keys, which seal the signing secrets

    @activity.defn(name=names.QUEUE_DECISION_EVENT)
    def queue_decision_event(self, decided: DecisionEventInput) -> list[str]:
        """The ids of the deliveries to make: one per live endpoint."""
        return webhooks.queue_decision(
            self.engine,
            activity.info().workflow_run_id,
            decided.verification_id,
            decided.decision.value,
            [reason.value for reason in decided.reasons],
        )

    @activity.defn(name=names.DELIVER_WEBHOOK)
    async def deliver_webhook(self, delivery_id: str) -> None:
        try:
            out = await asyncio.to_thread(webhooks.outbound, self.engine, self.secrets, delivery_id)
        except EndpointGone as gone:
            metrics.WEBHOOK_ATTEMPTS.labels("endpoint_gone").inc()
            raise ApplicationError(
                str(gone), type=names.WEBHOOK_ENDPOINT_GONE, non_retryable=True
            ) from None
        if out.status == DELIVERED:  # an earlier attempt got through; its completion was lost
            return
        attempt = activity.info().attempt
        await asyncio.to_thread(webhooks.start_attempt, self.engine, delivery_id, attempt)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idflow-Event-Id": out.event_id,
            "Idflow-Delivery-Id": delivery_id,
            webhook_signatures.HEADER: webhook_signatures.sign(out.secret, out.body),
        }
        status: int | None = None
        try:
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    out.url, data=out.body, headers=headers, allow_redirects=False
                ) as sent,
            ):
                status = sent.status
            outcome, error = attempt_outcome(status), None
        except TimeoutError:
            outcome, error = "retry", "timeout"
        except aiohttp.ClientError as failure:
            outcome, error = "retry", type(failure).__name__
        await asyncio.to_thread(
            webhooks.finish_attempt, self.engine, delivery_id, attempt, outcome, status, error
        )
        metrics.WEBHOOK_ATTEMPTS.labels(outcome).inc()
        if outcome == DELIVERED:
            metrics.WEBHOOK_DELIVERIES.labels(DELIVERED).inc()
            return
        what = f"HTTP {status}" if status is not None else error
        if outcome == "refused":
            raise ApplicationError(
                f"the receiver refused it: {what}", type=names.WEBHOOK_REFUSED, non_retryable=True
            )
        raise ApplicationError(f"not delivered: {what}", type="WEBHOOK_NOT_DELIVERED")

    @activity.defn(name=names.FAIL_WEBHOOK_DELIVERY)
    def fail_webhook_delivery(self, failed: WebhookFailure) -> None:
        webhooks.fail_delivery(self.engine, failed.delivery_id, failed.failure)
        metrics.WEBHOOK_DELIVERIES.labels(webhooks.FAILED).inc()
