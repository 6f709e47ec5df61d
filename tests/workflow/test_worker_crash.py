"""A GPU worker killed with SIGKILL mid-inference loses no verification.

The GPU worker process is frozen (SIGSTOP) so that the server hands it
biometric tasks (liveness and face match) it can never finish; then it is SIGKILLed while
those tasks are in flight and a fresh worker process starts. Every
verification must still end with the decision its photos call for, and each
task the killed worker held must have run again, after its heartbeat timeout,
and been completed by the fresh worker.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState

from activities import names
from devstack.samples import sample_pairs
from domain.contracts import Stage, VerificationResult
from domain.reasons import Decision
from workflows.identity_verification import WORKFLOW_ID_PREFIX

from ..support.metrics import scrape, value
from ..support.temporal import IdflowStack

pytestmark = [pytest.mark.temporal, pytest.mark.slow]

GPU_ACTIVITIES = {names.CHECK_BIOMETRICS}


async def in_flight_gpu_tasks(
    stack: IdflowStack, verification_ids: list[str], pid: int
) -> set[tuple[str, str]]:
    """(verification id, activity id) of GPU activities the worker ``pid`` took but not finished."""
    taken = set()
    for verification_id in verification_ids:
        description = await stack.client.handle(verification_id).describe()
        for pending in description.raw_description.pending_activities:
            if (
                pending.activity_type.name in GPU_ACTIVITIES
                and pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                and worker_pid(pending.last_worker_identity) == pid
            ):
                taken.add((verification_id, pending.activity_id))
    return taken


def worker_pid(identity: str) -> int:
    """The process id in a worker identity (the SDK's default is ``pid@host``)."""
    return int(identity.split("@", 1)[0])


@dataclass(frozen=True)
class ActivityEnd:
    attempt: int  # the attempt that ended it (the history keeps only the last)
    worker_pid: int  # the process that ran that attempt
    completed: bool


def activity_ends(history: Any) -> dict[str, ActivityEnd]:
    """Activity id -> how it ended, from a closed history."""
    scheduled = {
        event.event_id: event.activity_task_scheduled_event_attributes.activity_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    completed = {
        event.activity_task_completed_event_attributes.scheduled_event_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    }
    started = [
        event.activity_task_started_event_attributes
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    return {
        scheduled[attributes.scheduled_event_id]: ActivityEnd(
            attributes.attempt,
            worker_pid(attributes.identity),
            attributes.scheduled_event_id in completed,
        )
        for attributes in started
    }


def ends_of(stack: IdflowStack, tasks: set[tuple[str, str]]) -> dict[tuple[str, str], ActivityEnd]:
    histories = {vid: stack.run(stack.client.handle(vid).fetch_history()) for vid, _ in tasks}
    return {(vid, aid): activity_ends(histories[vid])[aid] for vid, aid in tasks}


async def start_all(stack: IdflowStack, drafts: list[Any]) -> None:
    await asyncio.gather(*(stack.client.start(draft) for draft in drafts))


async def results_of(stack: IdflowStack, ids: list[str]) -> list[VerificationResult]:
    return list(await asyncio.gather(*(stack.client.result(vid) for vid in ids)))


def test_sigkill_of_the_gpu_worker_loses_no_verification(
    idflow_stack: IdflowStack, photo_dir: Any
) -> None:
    pairs = sample_pairs(photo_dir)
    cases = [pairs["same person"], pairs["different people"]] * 3
    expected = {Decision.APPROVED if p.expected == "approved" else Decision.DECLINED for p in cases}
    assert expected == {Decision.APPROVED, Decision.DECLINED}
    client = idflow_stack.client
    drafts = [idflow_stack.run(client.create(p.selfie, p.document, "crash-test")) for p in cases]
    ids = [draft.verification_id for draft in drafts]

    gpu = idflow_stack.workers["gpu"]
    assert gpu.process is not None
    frozen = gpu.process.pid
    gpu.process.send_signal(signal.SIGSTOP)  # takes tasks from its open polls, runs none
    try:
        idflow_stack.run(start_all(idflow_stack, drafts))
        deadline = time.monotonic() + 60
        while not all(
            idflow_stack.run(client.progress(vid)).stage is Stage.BIOMETRICS for vid in ids
        ):
            assert time.monotonic() < deadline, "verifications never reached the GPU stage"
            time.sleep(0.2)
        while not idflow_stack.run(in_flight_gpu_tasks(idflow_stack, ids, frozen)):
            assert time.monotonic() < deadline, "the frozen GPU worker never took a task"
            time.sleep(0.2)
    finally:
        held = idflow_stack.run(in_flight_gpu_tasks(idflow_stack, ids, frozen))
        gpu.kill()  # SIGKILL works on a stopped process
    assert held

    fresh = idflow_stack.replace_worker("gpu", kill=True)
    assert fresh.process is not None and fresh.process.pid != frozen

    decided = idflow_stack.run(results_of(idflow_stack, ids), timeout=120)
    for pair, result in zip(cases, decided, strict=True):
        assert (
            " ".join([result.decision.value, *(r.value for r in result.reasons)]) == pair.expected
        )

    # Each task the killed worker held ran again and was completed by the fresh worker.
    ends = ends_of(idflow_stack, held)
    assert all(
        end.completed and end.attempt > 1 and end.worker_pid == fresh.process.pid
        for end in ends.values()
    ), (ends, frozen, fresh.process.pid)


def test_sigterm_lets_the_gpu_worker_finish_its_tasks_before_it_exits(
    idflow_stack: IdflowStack, photo_dir: Any
) -> None:
    pairs = sample_pairs(photo_dir)
    cases = [pairs["same person"], pairs["different people"]] * 4  # the pool runs 8 at once
    client = idflow_stack.client
    drafts = [idflow_stack.run(client.create(p.selfie, p.document, "shutdown-test")) for p in cases]
    ids = [draft.verification_id for draft in drafts]

    gpu = idflow_stack.workers["gpu"]
    assert gpu.process is not None
    stopping = gpu.process.pid
    # Frozen, it gathers several tasks at once; thawed, it runs them together. The
    # stop comes only once they run: a task still in a poll answer the worker has
    # not read when it stops polling is not its to finish (it runs again elsewhere
    # after the heartbeat timeout: delayed, never lost).
    gpu.process.send_signal(signal.SIGSTOP)
    try:
        idflow_stack.run(start_all(idflow_stack, drafts))
        deadline = time.monotonic() + 60
        while not idflow_stack.run(in_flight_gpu_tasks(idflow_stack, ids, stopping)):
            assert time.monotonic() < deadline, "the frozen GPU worker never took a task"
            time.sleep(0.2)
    finally:
        gpu.process.send_signal(signal.SIGCONT)
    while not value(scrape(idflow_stack, "gpu"), "idflow_stage_in_flight"):
        assert time.monotonic() < deadline, "the thawed GPU worker never ran a task"
        time.sleep(0.01)
    gpu.process.send_signal(signal.SIGTERM)
    assert gpu.stop() == 0
    log = gpu.log_tail()
    assert "stopped" in log
    finishing = re.search(r"finishing (\d+) task\(s\)((?: \S+)*)", log)
    assert finishing and int(finishing[1]) > 0, log
    # Named there by workflow id: idv-<verification id>/<activity id>.
    held = {
        (workflow.removeprefix(WORKFLOW_ID_PREFIX), activity_id)
        for workflow, activity_id in (task.rsplit("/", 1) for task in finishing[2].split())
    }
    idflow_stack.replace_worker("gpu")

    decided = idflow_stack.run(results_of(idflow_stack, ids), timeout=120)
    assert [r.decision for r in decided] == [Decision.APPROVED, Decision.DECLINED] * 4
    # What it was running when told to stop it finished itself, on the first attempt.
    ends = ends_of(idflow_stack, held)
    assert all(
        end.completed and end.attempt == 1 and end.worker_pid == stopping for end in ends.values()
    ), (ends, stopping, log)
