"""IdentityVerification end to end: a real dev server, worker processes, models and photos."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from devstack.samples import SamplePair, sample_pairs
from domain.contracts import Stage, VerificationResult
from domain.reasons import Decision, ReasonCode
from mdoc import holder
from store import audit, verifications
from workflows import search_attributes

from ..support.temporal import (
    IdflowStack,
    corrupted_model_pins,
    grey_zone_pins,
    take_issuer_keys_away,
)

pytestmark = [pytest.mark.temporal, pytest.mark.slow]

EMBED = "faceplugin-fr-feature@0.0.1"


@pytest.fixture(scope="module")
def pairs(photo_dir: Any) -> dict[str, SamplePair]:
    return sample_pairs(photo_dir)


@pytest.fixture(scope="module")
def strict_embed(idflow_stack: IdflowStack) -> dict[str, str]:
    return grey_zone_pins(idflow_stack.settings)


def history_events(stack: IdflowStack, verification_id: str) -> list[Any]:
    history = stack.run(stack.client.handle(verification_id).fetch_history())
    return list(history.events)


def started_attempts(events: list[Any]) -> list[int]:
    return [
        event.activity_task_started_event_attributes.attempt
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]


def final_attempts(events: list[Any], activity_type: str) -> list[tuple[int, str]]:
    """Each ``activity_type`` activity that ended: its last attempt, and "completed" or its failure type.

    (The history keeps only the last attempt of a retried activity.)
    """
    scheduled = {
        event.event_id
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    }
    last_attempt = {
        event.activity_task_started_event_attributes.scheduled_event_id: event.activity_task_started_event_attributes.attempt
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    }
    ends = []
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed = event.activity_task_completed_event_attributes
            if completed.scheduled_event_id in scheduled:
                ends.append((last_attempt[completed.scheduled_event_id], "completed"))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            failed = event.activity_task_failed_event_attributes
            if failed.scheduled_event_id in scheduled:
                ends.append(
                    (
                        last_attempt[failed.scheduled_event_id],
                        failed.failure.application_failure_info.type,
                    )
                )
    return ends


def wait_for_stage(
    stack: IdflowStack, verification_id: str, stage: Stage, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while stack.run(stack.client.progress(verification_id)).stage is not stage:
        assert time.monotonic() < deadline, f"{verification_id} never reached {stage.value}"
        time.sleep(0.1)


def test_same_person_is_approved_and_recorded(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair]
) -> None:
    pair = pairs["same person"]
    result = idflow_stack.verify(pair.selfie, pair.document)

    assert result.decision is Decision.APPROVED
    assert result.reasons == []
    assert result.scores["face_match"] >= 0.45 and result.scores["liveness"] >= 0.8
    assert result.model_versions["embed"] == EMBED
    assert set(result.model_versions) == {"detect", "landmarks", "embed", "liveness", "eye", "pose"}

    engine = idflow_stack.client.engine
    row = verifications.get(engine, result.verification_id)
    assert row is not None and row.status == Stage.COMPLETED.value
    assert (row.decision, row.scores, row.model_versions) == (
        "approved",
        result.scores,
        result.model_versions,
    )
    assert [entry.event for entry in audit.trail(engine, result.verification_id)] == [
        "created",
        "decided",
    ]


def test_different_people_are_declined_with_face_mismatch(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair]
) -> None:
    pair = pairs["different people"]
    result = idflow_stack.verify(pair.selfie, pair.document)
    assert result.decision is Decision.DECLINED
    assert result.reasons == [ReasonCode.FACE_MISMATCH]
    assert result.scores["face_match"] < 0.35


def test_no_face_asks_for_a_recapture_without_biometrics(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair]
) -> None:
    pair = pairs["no face"]
    result = idflow_stack.verify(pair.selfie, pair.document)
    assert result.decision is Decision.RETRY
    assert result.reasons == [ReasonCode.QUALITY_NO_FACE]
    assert result.scores == {}  # liveness and face match never ran


def test_corrupt_file_is_decided_at_once_without_storing_it(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair]
) -> None:
    """Refused at ingest: nothing stored, no activity decodes it again, decided at once."""
    pair = pairs["corrupt file"]
    draft = idflow_stack.run(idflow_stack.client.create(pair.selfie, pair.document, "test-subject"))
    assert draft.refused == {"selfie": ReasonCode.INPUT_UNREADABLE}
    assert draft.selfie is None and draft.document is None
    blob_folder = idflow_stack.settings.blob_dir / draft.verification_id
    assert not blob_folder.exists() or not any(blob_folder.iterdir())

    idflow_stack.run(idflow_stack.client.start(draft))
    result = idflow_stack.run(idflow_stack.client.result(draft.verification_id))
    assert result.decision is Decision.RETRY
    assert result.reasons == [ReasonCode.INPUT_UNREADABLE]

    events = history_events(idflow_stack, result.verification_id)
    assert started_attempts(events) == []  # no quality check, no retry, no PROCESSING_FAILED
    row = verifications.get(idflow_stack.client.engine, draft.verification_id)
    assert row is not None and row.reasons == ["INPUT_UNREADABLE"] and row.decision == "retry"


def test_grey_zone_waits_for_review_and_an_update_approves_it(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], strict_embed: dict[str, str]
) -> None:
    client = idflow_stack.client
    pair = pairs["same person"]
    draft = idflow_stack.run(client.create(pair.selfie, pair.document, subject_ref="test-subject"))
    idflow_stack.run(client.start(draft, model_pins=strict_embed))
    wait_for_stage(idflow_stack, draft.verification_id, Stage.AWAITING_REVIEW)

    progress = idflow_stack.run(client.progress(draft.verification_id))
    assert progress.decision is Decision.REVIEW
    assert progress.reasons == [ReasonCode.FACE_MATCH_UNCERTAIN]  # why it waits for a person
    assert 0.6 <= progress.scores["face_match"] < 0.8
    assert progress.model_versions["embed"] == strict_embed["embed"] != EMBED
    assert progress.review_deadline is not None
    row = verifications.get(client.engine, draft.verification_id)
    assert row is not None and row.status == Stage.AWAITING_REVIEW.value
    assert (row.decision, row.reasons) == ("review", ["FACE_MATCH_UNCERTAIN"])

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        idflow_stack.run(client.review(draft.verification_id, " ", True, "no reviewer id"))
    assert "reviewer's id" in str(refused.value.cause)
    decision = idflow_stack.run(
        client.review(draft.verification_id, "staff-42", True, "portrait matches on inspection")
    )
    assert decision is Decision.APPROVED
    result = idflow_stack.run(client.result(draft.verification_id))
    assert result.decision is Decision.APPROVED
    assert result.reasons == [ReasonCode.FACE_MATCH_UNCERTAIN, ReasonCode.REVIEW_APPROVED]
    assert result.reviewer == "staff-42"
    row = verifications.get(client.engine, draft.verification_id)
    assert row is not None and (row.decision, row.reviewer) == ("approved", "staff-42")
    reviewed = [
        e for e in audit.trail(client.engine, draft.verification_id) if e.event == "reviewed"
    ]
    assert len(reviewed) == 1 and reviewed[0].actor == "staff-42"
    assert reviewed[0].details["note"] == "portrait matches on inspection"
    with pytest.raises(RPCError, match="already completed"):  # decided: no second review
        idflow_stack.run(client.review(draft.verification_id, "staff-43", False, "second opinion"))


def test_review_deadline_expires_into_a_decline(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], strict_embed: dict[str, str]
) -> None:
    pair = pairs["same person"]
    result = idflow_stack.verify(
        pair.selfie, pair.document, model_pins=strict_embed, review_deadline_seconds=2
    )
    assert result.decision is Decision.DECLINED
    assert result.reasons == [ReasonCode.FACE_MATCH_UNCERTAIN, ReasonCode.REVIEW_EXPIRED]
    assert result.reviewer is None
    timers = [
        event
        for event in history_events(idflow_stack, result.verification_id)
        if event.event_type == EventType.EVENT_TYPE_TIMER_FIRED
    ]
    assert len(timers) == 1


def test_starting_the_same_id_twice_gives_one_workflow(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair]
) -> None:
    client = idflow_stack.client
    pair = pairs["same person"]
    draft = idflow_stack.run(client.create(pair.selfie, pair.document, subject_ref="test-subject"))

    async def start_twice_then_again_after_the_end() -> tuple[str, str, str, int]:
        first, second = await asyncio.gather(client.start(draft), client.start(draft))
        await first.result()
        third = await client.start(draft)
        runs = [
            execution.run_id
            async for execution in client.temporal.list_workflows(f"WorkflowId = '{first.id}'")
        ]
        return (
            first.result_run_id or "",
            second.result_run_id or "",
            (await third.describe()).run_id,
            len(runs),
        )

    first_run, second_run, third_run, runs = idflow_stack.run(
        start_twice_then_again_after_the_end()
    )
    assert first_run == second_run == third_run
    assert runs == 1


def test_search_attributes_say_what_happened_without_personal_data(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair]
) -> None:
    pair = pairs["different people"]
    result = idflow_stack.verify(pair.selfie, pair.document)
    description = idflow_stack.run(idflow_stack.client.handle(result.verification_id).describe())
    attributes = description.typed_search_attributes
    assert attributes.get(search_attributes.STATUS) == Stage.COMPLETED.value
    assert attributes.get(search_attributes.DECISION) == "declined"
    assert attributes.get(search_attributes.REASONS) == ["FACE_MISMATCH"]
    assert sorted(attributes.get(search_attributes.MODEL_VERSIONS) or []) == sorted(
        f"{task}:{ref}" for task, ref in result.model_versions.items()
    )

    found = idflow_stack.run(_count(idflow_stack, "IdflowReasons = 'FACE_MISMATCH'", result))
    assert found == 1


async def _count(stack: IdflowStack, query: str, result: VerificationResult) -> int:
    workflow_query = f"{query} AND WorkflowId = 'idv-{result.verification_id}'"
    for _ in range(50):  # the visibility store is eventually consistent
        found = [w async for w in stack.client.temporal.list_workflows(workflow_query)]
        if found:
            return len(found)
        await asyncio.sleep(0.1)
    return 0


def test_approved_with_a_device_key_ends_with_a_bound_credential(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], mdl_claims: dict[str, Any]
) -> None:
    client = idflow_stack.client
    pair = pairs["same person"]
    device_key = holder.new_device_key()
    draft = idflow_stack.run(client.create(pair.selfie, pair.document, subject_ref="test-subject"))
    binding = holder.device_binding(device_key, draft.nonce, idflow_stack.settings.issuer_id)

    async def verify() -> VerificationResult:
        await client.start(draft, device=binding, claims=mdl_claims)
        return await client.result(draft.verification_id)

    result = idflow_stack.run(verify())
    assert result.decision is Decision.APPROVED
    assert result.credential is not None
    assert result.credential.doc_type == "org.iso.18013.5.1.mDL"
    assert result.credential.issuer_signed_b64
    row = verifications.get(client.engine, draft.verification_id)
    assert row is not None and row.credential_issued


def test_a_proof_over_the_wrong_nonce_declines_on_the_first_attempt(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], mdl_claims: dict[str, Any]
) -> None:
    client = idflow_stack.client
    pair = pairs["same person"]
    draft = idflow_stack.run(client.create(pair.selfie, pair.document, subject_ref="test-subject"))
    binding = holder.device_binding(
        holder.new_device_key(), "not-the-nonce", idflow_stack.settings.issuer_id
    )

    async def verify() -> VerificationResult:
        await client.start(draft, device=binding, claims=mdl_claims)
        return await client.result(draft.verification_id)

    result = idflow_stack.run(verify())
    assert result.decision is Decision.DECLINED
    assert result.reasons == [ReasonCode.DEVICE_PROOF_INVALID]
    assert result.credential is None
    assert set(started_attempts(history_events(idflow_stack, draft.verification_id))) == {1}


# --- Every verification ends in a recorded decision ----------------------------------


def test_an_unknown_model_pin_is_declined_on_the_first_attempt(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair]
) -> None:
    pair = pairs["same person"]
    result = idflow_stack.verify(
        pair.selfie, pair.document, model_pins={"embed": "no-such-model@9.9.9"}
    )
    assert result.decision is Decision.DECLINED
    assert result.reasons == [ReasonCode.MODEL_UNAVAILABLE]
    row = verifications.get(idflow_stack.client.engine, result.verification_id)
    assert row is not None and (row.status, row.decision) == (Stage.COMPLETED.value, "declined")


def test_a_face_match_that_keeps_failing_goes_to_a_person_with_processing_failed(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair]
) -> None:
    client, engine = idflow_stack.client, idflow_stack.client.engine
    pair = pairs["same person"]
    draft = idflow_stack.run(client.create(pair.selfie, pair.document, subject_ref="test-subject"))
    with corrupted_model_pins(idflow_stack.settings, "embed") as broken_embed:
        idflow_stack.run(client.start(draft, model_pins=broken_embed, processing_attempts=2))
        wait_for_stage(idflow_stack, draft.verification_id, Stage.AWAITING_REVIEW)

    progress = idflow_stack.run(client.progress(draft.verification_id))
    assert (progress.decision, progress.reasons) == (
        Decision.REVIEW,
        [ReasonCode.PROCESSING_FAILED],
    )
    assert set(progress.scores) == {"liveness"}  # it ran; the face match never could
    row = verifications.get(engine, draft.verification_id)
    assert row is not None
    assert (row.status, row.decision, row.reasons) == (
        "awaiting_review",
        "review",
        ["PROCESSING_FAILED"],
    )
    [requested] = [
        e for e in audit.trail(engine, draft.verification_id) if e.event == "review_requested"
    ]
    assert (requested.details["decision"], requested.details["reasons"]) == (
        "review",
        ["PROCESSING_FAILED"],
    )
    attributes = idflow_stack.run(
        client.handle(draft.verification_id).describe()
    ).typed_search_attributes
    assert attributes.get(search_attributes.DECISION) == "review"
    assert attributes.get(search_attributes.REASONS) == ["PROCESSING_FAILED"]
    events = history_events(idflow_stack, draft.verification_id)
    assert final_attempts(events, "match_faces") == [
        (2, "CachedFileTampered")
    ]  # retried, then gave up
    assert final_attempts(events, "check_liveness") == [(1, "completed")]

    idflow_stack.run(
        client.review(draft.verification_id, "staff-9", False, "no face match to go on")
    )
    result = idflow_stack.run(client.result(draft.verification_id))
    assert result.decision is Decision.DECLINED
    assert result.reasons == [ReasonCode.PROCESSING_FAILED, ReasonCode.REVIEW_DECLINED]
    assert result.reviewer == "staff-9"
    row = verifications.get(engine, draft.verification_id)
    assert row is not None and (row.status, row.decision) == ("completed", "declined")
    assert row.reasons == ["PROCESSING_FAILED", "REVIEW_DECLINED"]


def test_a_binding_that_keeps_failing_goes_to_a_person_and_binds_once_approved(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], mdl_claims: dict[str, Any]
) -> None:
    client, engine = idflow_stack.client, idflow_stack.client.engine
    pair = pairs["same person"]
    draft = idflow_stack.run(client.create(pair.selfie, pair.document, subject_ref="test-subject"))
    binding = holder.device_binding(
        holder.new_device_key(), draft.nonce, idflow_stack.settings.issuer_id
    )
    put_back = take_issuer_keys_away(idflow_stack.settings)
    try:
        idflow_stack.run(
            client.start(draft, device=binding, claims=mdl_claims, processing_attempts=2)
        )
        wait_for_stage(idflow_stack, draft.verification_id, Stage.AWAITING_REVIEW)
    finally:
        put_back()

    progress = idflow_stack.run(client.progress(draft.verification_id))
    assert (progress.decision, progress.reasons) == (
        Decision.REVIEW,
        [ReasonCode.PROCESSING_FAILED],
    )
    assert set(progress.scores) == {"liveness", "face_match"}  # approved before binding gave up
    row = verifications.get(engine, draft.verification_id)
    assert row is not None and (row.decision, row.reasons) == ("review", ["PROCESSING_FAILED"])
    assert not row.credential_issued

    idflow_stack.run(client.review(draft.verification_id, "staff-9", True, "issuer keys restored"))
    result = idflow_stack.run(client.result(draft.verification_id))
    assert result.decision is Decision.APPROVED
    assert result.reasons == [ReasonCode.PROCESSING_FAILED, ReasonCode.REVIEW_APPROVED]
    assert result.credential is not None and result.credential.issuer_signed_b64
    events = history_events(idflow_stack, draft.verification_id)
    assert final_attempts(events, "issue_credential") == [(2, "KeyStoreError"), (1, "completed")]
    trail = [entry.event for entry in audit.trail(engine, draft.verification_id)]
    assert trail == ["created", "review_requested", "reviewed", "credential_issued", "decided"]
    row = verifications.get(engine, draft.verification_id)
    assert row is not None and (row.decision, row.credential_issued) == ("approved", True)


def test_finished_verifications_are_replayed_when_the_stack_stops(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair]
) -> None:
    """The fixture replays them all at teardown; this checks that its query finds them."""
    pair = pairs["no face"]
    idflow_stack.verify(pair.selfie, pair.document)
    deadline = time.monotonic() + 10
    while (replayed := idflow_stack.replay_finished()) == 0:  # visibility is eventually consistent
        assert time.monotonic() < deadline, "no finished verification is visible to replay"
        time.sleep(0.2)
    assert replayed >= 1
