"""Memo, heartbeat details and failures go through the codec too (a real dev server).

A small workflow of our own: started with a memo, its activity heartbeats
details (which the server shows on the pending activity) and then times out
(so the server records the last heartbeat details in history), and the
workflow fails with a message and details. Every one of
those values is secret; the raw history must hold none of them in plaintext
and must decode fully with the codec.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from security.payload_codec import ENCODING, Binding, data_converter
from settings import Settings

from ..support.temporal import TemporalServer

pytestmark = [pytest.mark.temporal]

SECRETS = {
    "memo": "memo-secret-5521",
    "heartbeat": "heartbeat-secret-8813",
    "message": "failure-secret-2290",
    "details": "details-secret-6604",
}


@activity.defn
async def heartbeat_then_hang() -> None:
    activity.heartbeat({"progress": SECRETS["heartbeat"]})
    await asyncio.Event().wait()  # until the heartbeat timeout ends it (and shutdown cancels it)


@workflow.defn
class LeakyWorkflow:
    @workflow.run
    async def run(self) -> None:
        try:
            await workflow.execute_activity(
                heartbeat_then_hang,
                start_to_close_timeout=timedelta(seconds=60),
                # Generous: the one heartbeat must reach the server first, on a busy machine too.
                heartbeat_timeout=timedelta(seconds=5),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except Exception:
            raise ApplicationError(
                SECRETS["message"], {"why": SECRETS["details"]}, non_retryable=True
            ) from None


async def pending_heartbeat(handle: WorkflowHandle[Any, Any], timeout_s: float = 60) -> Payload:
    """The heartbeat details the server holds for the running activity, once it has them."""
    deadline = time.monotonic() + timeout_s
    while True:
        description = await handle.describe()
        for activity_info in description.raw_description.pending_activities:
            if activity_info.heartbeat_details.payloads:
                [details] = activity_info.heartbeat_details.payloads
                return details
        assert time.monotonic() < deadline, "the activity's heartbeat never reached the server"
        await asyncio.sleep(0.1)


def test_memo_heartbeats_and_failures_are_encrypted(
    temporal_server: TemporalServer, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path, model_cache=tmp_path, blob_dir=tmp_path, database_url="sqlite://"
    )
    queue = f"leaky-{uuid.uuid4().hex[:8]}"

    async def run() -> tuple[History, Payload]:
        target = temporal_server.target
        client = await Client.connect(target, data_converter=data_converter(settings))
        raw_client = await Client.connect(target)  # what someone without the key sees
        # Unsandboxed: the sandbox would re-import this test module; the codec is what is tested.
        async with Worker(
            client,
            task_queue=queue,
            workflows=[LeakyWorkflow],
            activities=[heartbeat_then_hang],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            handle = await client.start_workflow(
                LeakyWorkflow.run, id=queue, task_queue=queue, memo={"note": SECRETS["memo"]}
            )
            pending = await pending_heartbeat(raw_client.get_workflow_handle(queue))
            with pytest.raises(WorkflowFailureError) as failed:
                await handle.result()
        assert SECRETS["message"] in str(failed.value.cause)  # decoded for those with the key
        raw = await raw_client.get_workflow_handle(queue).fetch_history()
        return History(events=raw.events), pending

    raw, pending = temporal_server.run(run())
    assert pending.metadata["encoding"] == ENCODING
    assert SECRETS["heartbeat"].encode() not in pending.SerializeToString()
    data = raw.SerializeToString()
    assert not [name for name, secret in SECRETS.items() if secret.encode() in data]
    started = raw.events[0].workflow_execution_started_event_attributes
    assert started.memo.fields["note"].metadata["encoding"] == ENCODING
    timed_out = [
        e.activity_task_timed_out_event_attributes.failure
        for e in raw.events
        if e.HasField("activity_task_timed_out_event_attributes")
    ]
    [heartbeat] = timed_out[0].timeout_failure_info.last_heartbeat_details.payloads
    assert heartbeat.metadata["encoding"] == ENCODING
    failure = raw.events[-1].workflow_execution_failed_event_attributes.failure
    assert failure.message == "Encoded failure"
    assert failure.application_failure_info.details.payloads[0].metadata["encoding"] == ENCODING

    codec = data_converter(settings, Binding.ANY_WORKFLOW).payload_codec  # as the codec server
    assert codec is not None
    plain = b"".join(
        p.data
        for p in temporal_server.run(
            codec.decode(
                [
                    started.memo.fields["note"],
                    heartbeat,
                    failure.encoded_attributes,
                    *failure.application_failure_info.details.payloads,
                ]
            )
        )
    )
    assert all(secret.encode() in plain for secret in SECRETS.values())
