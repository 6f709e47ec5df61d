"""WebhookDelivery: one event to one endpoint, retried with exponential backoff until it lands.

    deliver (one HTTP attempt per activity attempt; Temporal spaces the retries)
    → delivered, or given up: refused by the receiver, endpoint deleted, or 3 days passed

A verification starts one per registered endpoint as an abandoned child when
it is decided (it never waits for a receiver); ``POST
/v1/webhooks/{id}/events/{event_id}/redeliver`` starts one for a new delivery
of the same event. The workflow id is ``idflow-webhook-<delivery id>``.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import names
    from domain.contracts import WebhookFailure

WORKFLOW_ID_PREFIX = "idflow-webhook-"
# Attempts 1 s, 2 s, 4 s ... apart, at most an hour apart, for 3 days.
FIRST_RETRY = timedelta(seconds=1)
LONGEST_RETRY = timedelta(hours=1)
GIVE_UP_AFTER = timedelta(days=3)


@workflow.defn(name="WebhookDelivery")
class WebhookDelivery:
    @workflow.run
    async def run(self, delivery_id: str) -> str:
        """``delivered`` or ``failed``; the delivery log has every attempt."""
        try:
            await workflow.execute_activity(
                names.DELIVER_WEBHOOK,
                delivery_id,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=GIVE_UP_AFTER,
                retry_policy=RetryPolicy(
                    initial_interval=FIRST_RETRY,
                    backoff_coefficient=2.0,
                    maximum_interval=LONGEST_RETRY,
                    non_retryable_error_types=[names.WEBHOOK_REFUSED, names.WEBHOOK_ENDPOINT_GONE],
                ),
                summary="Deliver the signed event",
            )
            return "delivered"
        except ActivityError as err:
            cause = err.cause
            why = cause.message if isinstance(cause, ApplicationError) else "gave up after 3 days"
        await workflow.execute_local_activity(
            names.FAIL_WEBHOOK_DELIVERY,
            WebhookFailure(delivery_id, why),
            start_to_close_timeout=timedelta(seconds=30),
            summary="Record the delivery as failed",
        )
        return "failed"


def delivery_workflow_id(delivery_id: str) -> str:
    return WORKFLOW_ID_PREFIX + delivery_id
