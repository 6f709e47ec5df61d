"""IdentityVerification end to end: a real dev server, worker processes, models and photos."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import sqlite3
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from devstack.samples import DEMO_CLAIMS, SamplePair, sample_pairs
from domain.contracts import (
    IssuedCredential,
    PurgeRequest,
    ReviewDecision,
    Stage,
    VerificationResult,
)
from domain.policy import Band
from domain.reasons import Decision, ReasonCode
from mdoc import holder
from mdoc.keystore import KeyStore, keys_dir
from mdoc.verify import VerifiedDocument, verify_device_response, verify_issuer_signed
from security.staff_assertions import sign_review
from starter.client import Draft
from store import audit, credentials, retention, verifications
from workflows import search_attributes

from ..support.temporal import (
    DECODE_ONLY_STAFF,
    IdflowStack,
    corrupted_model_pins,
    grey_zone_pins,
    register_production_copy,
    take_issuer_keys_away,
)

pytestmark = [pytest.mark.temporal, pytest.mark.slow]

EMBED = "faceplugin-fr-feature@0.0.1"
SCORE_TOLERANCE = 1e-3  # the same image may score a last decimal apart, batched or alone


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
    """Each ``activity_type`` activity that ended: last attempt, "completed" or its failure type.

    (The history keeps only the last attempt of a retried activity.)
    """
    scheduled = {
        event.event_id
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    }
    started = [
        event.activity_task_started_event_attributes
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    last_attempt = {attributes.scheduled_event_id: attributes.attempt for attributes in started}
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


def trail(stack: IdflowStack, verification_id: str) -> list[str]:
    return [entry.event for entry in audit.trail(stack.client.engine, verification_id)]


def update_events(stack: IdflowStack, verification_id: str) -> list[Any]:
    """Reviews the workflow accepted; a refused one leaves no event."""
    return [
        event
        for event in history_events(stack, verification_id)
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]


def assert_no_credential(stack: IdflowStack, result: VerificationResult) -> None:
    """Neither the result, the verification's row nor the issuer's records hold a credential."""
    assert result.credential is None
    row = verifications.get(stack.client.engine, result.verification_id)
    assert row is not None and not row.credential_issued
    assert credentials.find_issued(stack.client.engine, result.verification_id) is None
    assert "credential_issued" not in trail(stack, result.verification_id)


def assert_bound_to(
    stack: IdflowStack, credential: IssuedCredential | None, device_key: ec.EllipticCurvePrivateKey
) -> VerifiedDocument:
    """What a relying party checks: the issuer's chain up to our IACA, and the holder's key.

    The IssuerSigned must verify against the stack's IACA certificate with its
    deviceKeyInfo equal to the holder's public key, and a DeviceResponse that the
    holder signs with its private key must verify too.
    """
    assert credential is not None
    iaca = KeyStore.open(keys_dir(stack.settings.home)).iaca()
    issuer_signed = base64.b64decode(credential.issuer_signed_b64)
    verified = verify_issuer_signed(issuer_signed, iaca, device_key=device_key.public_key())
    assert verified.doc_type == credential.doc_type == "org.iso.18013.5.1.mDL"
    assert verified.elements["family_name"] == DEMO_CLAIMS["family_name"]
    transcript = [None, None, ["relying-party-session", credential.mso_digest]]
    response = holder.device_response(issuer_signed, device_key, transcript)
    [presented] = verify_device_response(response, iaca, transcript)
    assert presented.mso_digest == verified.mso_digest == credential.mso_digest
    return verified


def start_with_device(
    stack: IdflowStack, pair: SamplePair, claims: dict[str, Any], **start: Any
) -> tuple[Draft, ec.EllipticCurvePrivateKey]:
    """Create and start a verification that binds a credential to a new device key once approved."""
    draft = stack.run(stack.client.create(pair.selfie, pair.document, subject_ref="test-subject"))
    device_key = holder.new_device_key()
    binding = holder.device_binding(device_key, draft.nonce, stack.settings.issuer_id)
    stack.run(stack.client.start(draft, device=binding, claims=claims, **start))
    return draft, device_key


@contextlib.contextmanager
def database_write_lock(stack: IdflowStack) -> Iterator[None]:
    """Hold the stack's SQLite write lock: every record the workflow writes waits (never fails)."""
    url = stack.settings.database_url
    assert url.startswith("sqlite:///"), url
    holder_connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder_connection.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder_connection.execute("ROLLBACK")
        holder_connection.close()


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


def test_a_selfie_too_small_for_the_deciding_liveness_model_asks_for_a_recapture(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], photo_dir: Any
) -> None:
    """A 100 px frame filled by the face: faceplugin's liveness input (128 px from 2.7x the
    face box, its signature) would rest on 99 image px, so the quality check, given the
    pinned deciding version, sends it back instead of letting the model call it an attack."""
    face = np.load(photo_dir / "lfw_subset.npy")[0]
    grey = Image.fromarray(np.round(face * 255).astype(np.uint8)).resize((100, 100))
    selfie = io.BytesIO()
    grey.convert("RGB").save(selfie, "PNG")
    pins = {"liveness": "faceplugin-fr-liveness@0.0.1"}
    result = idflow_stack.verify(selfie.getvalue(), pairs["same person"].document, model_pins=pins)
    assert result.decision is Decision.RETRY
    assert ReasonCode.QUALITY_FACE_TOO_SMALL_FOR_LIVENESS in result.reasons
    assert result.scores == {}  # the liveness model never judged it


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

    # Anyone who can send an update, under any name: refused, and audited.
    forged = ReviewDecision(True, "trust me", reviewer="staff-42")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        idflow_stack.run(client.handle(draft.verification_id).execute_update("review", forged))
    assert "not signed by a staff member" in str(refused.value.cause)
    # A staff member without the review role, and a signature made for another verification.
    decode_only = DECODE_ONLY_STAFF
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        idflow_stack.run(idflow_stack.review(draft.verification_id, decode_only, True, "x"))
    assert "may not review" in str(refused.value.cause)
    elsewhere = sign_review(
        idflow_stack.staff_token("staff-42"), "staff-42", "idv-other", True, "x"
    )
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        idflow_stack.run(client.handle(draft.verification_id).execute_update("review", elsewhere))
    assert "does not verify for this verification" in str(refused.value.cause)
    refusals = [
        e for e in audit.trail(client.engine, draft.verification_id) if e.event == "review_refused"
    ]
    assert [(e.actor, e.details["claimed_staff_id"]) for e in refusals] == [
        ("unauthenticated", ""),
        ("unauthenticated", decode_only),
        ("unauthenticated", "staff-42"),
    ]
    assert "may not review" in refusals[1].details["why"]

    decision = idflow_stack.run(
        idflow_stack.review(
            draft.verification_id, "staff-42", True, "portrait matches on inspection"
        )
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
        idflow_stack.run(idflow_stack.review(draft.verification_id, "staff-43", False, "again"))


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
    deadline = time.monotonic() + 60  # the visibility store is eventually consistent
    while time.monotonic() < deadline:
        found = [w async for w in stack.client.temporal.list_workflows(workflow_query)]
        if found:
            return len(found)
        await asyncio.sleep(0.1)
    return 0


def test_approved_with_a_device_key_ends_with_a_bound_credential(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], mdl_claims: dict[str, Any]
) -> None:
    draft, device_key = start_with_device(idflow_stack, pairs["same person"], mdl_claims)
    result = idflow_stack.run(idflow_stack.client.result(draft.verification_id))
    assert result.decision is Decision.APPROVED
    verified = assert_bound_to(idflow_stack, result.credential, device_key)
    assert verified.elements["driving_privileges"][0]["vehicle_category_code"] == "B"
    row = verifications.get(idflow_stack.client.engine, draft.verification_id)
    assert row is not None and row.credential_issued
    assert trail(idflow_stack, draft.verification_id) == ["created", "credential_issued", "decided"]


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
    assert progress.scores == {}  # liveness and face match are one step: it never finished
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
    assert final_attempts(events, "check_biometrics") == [
        (2, "CachedFileTampered")
    ]  # retried, then gave up
    assert final_attempts(events, "check_quality") == [(1, "completed")]

    idflow_stack.run(
        idflow_stack.review(draft.verification_id, "staff-9", False, "no face match to go on")
    )
    result = idflow_stack.run(client.result(draft.verification_id))
    assert result.decision is Decision.DECLINED
    assert result.reasons == [ReasonCode.PROCESSING_FAILED, ReasonCode.REVIEW_DECLINED]
    assert result.reviewer == "staff-9"
    row = verifications.get(engine, draft.verification_id)
    assert row is not None and (row.status, row.decision) == ("completed", "declined")
    assert row.reasons == ["PROCESSING_FAILED", "REVIEW_DECLINED"]


def binding_gives_up(
    stack: IdflowStack, pair: SamplePair, claims: dict[str, Any]
) -> tuple[Draft, ec.EllipticCurvePrivateKey]:
    """A same-person verification whose binding ran out of retries; it awaits a person.

    The issuer's keys are away until binding gave up, and back afterwards.
    """
    put_back = take_issuer_keys_away(stack.settings)
    try:
        draft, device_key = start_with_device(stack, pair, claims, processing_attempts=2)
        wait_for_stage(stack, draft.verification_id, Stage.AWAITING_REVIEW)
    finally:
        put_back()
    progress = stack.run(stack.client.progress(draft.verification_id))
    assert (progress.decision, progress.reasons) == (
        Decision.REVIEW,
        [ReasonCode.PROCESSING_FAILED],
    )
    assert set(progress.scores) == {"liveness", "face_match"}  # approved before binding gave up
    row = verifications.get(stack.client.engine, draft.verification_id)
    assert row is not None and (row.decision, row.reasons) == ("review", ["PROCESSING_FAILED"])
    assert not row.credential_issued
    return draft, device_key


def test_a_binding_that_keeps_failing_goes_to_a_person_and_binds_once_approved(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], mdl_claims: dict[str, Any]
) -> None:
    client, engine = idflow_stack.client, idflow_stack.client.engine
    draft, device_key = binding_gives_up(idflow_stack, pairs["same person"], mdl_claims)

    idflow_stack.run(
        idflow_stack.review(draft.verification_id, "staff-9", True, "issuer keys restored")
    )
    result = idflow_stack.run(client.result(draft.verification_id))
    assert result.decision is Decision.APPROVED
    assert result.reasons == [ReasonCode.PROCESSING_FAILED, ReasonCode.REVIEW_APPROVED]
    assert_bound_to(idflow_stack, result.credential, device_key)
    events = history_events(idflow_stack, draft.verification_id)
    assert final_attempts(events, "issue_credential") == [(2, "KeyStoreError"), (1, "completed")]
    assert trail(idflow_stack, draft.verification_id) == [
        "created",
        "review_requested",
        "reviewed",
        "credential_issued",
        "decided",
    ]
    row = verifications.get(engine, draft.verification_id)
    assert row is not None and (row.decision, row.credential_issued) == ("approved", True)


def declined_by_a_reviewer(
    stack: IdflowStack, verification_id: str, why_reviewed: ReasonCode, reviewer: str, note: str
) -> VerificationResult:
    """A person declines a verification that awaits review: it is recorded, nothing is issued."""
    client = stack.client
    assert stack.run(stack.review(verification_id, reviewer, False, note)) is Decision.DECLINED
    result = stack.run(client.result(verification_id))
    reasons = [why_reviewed, ReasonCode.REVIEW_DECLINED]
    assert (result.decision, result.reasons, result.reviewer) == (
        Decision.DECLINED,
        reasons,
        reviewer,
    )
    assert_no_credential(stack, result)
    row = verifications.get(client.engine, verification_id)
    assert row is not None
    assert (row.status, row.decision, row.reasons, row.reviewer) == (
        "completed",
        "declined",
        [reason.value for reason in reasons],
        reviewer,
    )
    [reviewed] = [e for e in audit.trail(client.engine, verification_id) if e.event == "reviewed"]
    assert (reviewed.actor, reviewed.details["note"]) == (reviewer, note)
    assert trail(stack, verification_id) == ["created", "review_requested", "reviewed", "decided"]
    return result


def test_a_binding_that_gave_up_and_is_declined_issues_nothing(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], mdl_claims: dict[str, Any]
) -> None:
    draft, _ = binding_gives_up(idflow_stack, pairs["same person"], mdl_claims)
    declined_by_a_reviewer(
        idflow_stack,
        draft.verification_id,
        ReasonCode.PROCESSING_FAILED,
        "staff-9",
        "do not issue today",
    )
    events = history_events(idflow_stack, draft.verification_id)
    assert final_attempts(events, "issue_credential") == [(2, "KeyStoreError")]  # not tried again


def test_a_binding_that_gave_up_and_nobody_reviews_expires_without_a_credential(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], mdl_claims: dict[str, Any]
) -> None:
    put_back = take_issuer_keys_away(idflow_stack.settings)
    try:
        draft, _ = start_with_device(
            idflow_stack,
            pairs["same person"],
            mdl_claims,
            processing_attempts=2,
            review_deadline_seconds=2,
        )
        result = idflow_stack.run(idflow_stack.client.result(draft.verification_id))
    finally:
        put_back()
    assert result.decision is Decision.DECLINED
    assert result.reasons == [ReasonCode.PROCESSING_FAILED, ReasonCode.REVIEW_EXPIRED]
    assert result.reviewer is None
    assert_no_credential(idflow_stack, result)
    row = verifications.get(idflow_stack.client.engine, draft.verification_id)
    assert row is not None and (row.status, row.decision, row.reviewer) == (
        "completed",
        "declined",
        None,
    )
    assert row.reasons == ["PROCESSING_FAILED", "REVIEW_EXPIRED"]
    assert trail(idflow_stack, draft.verification_id) == ["created", "review_requested", "decided"]
    events = history_events(idflow_stack, draft.verification_id)
    assert final_attempts(events, "issue_credential") == [(2, "KeyStoreError")]
    assert [e for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED]


# --- Liveness: real model versions whose thresholds put the real score where a test needs it


@pytest.fixture(scope="module")
def selfie_liveness(idflow_stack: IdflowStack, pairs: dict[str, SamplePair]) -> float:
    """The production liveness score of the same-person selfie, measured on this stack."""
    pair = pairs["same person"]
    return idflow_stack.verify(pair.selfie, pair.document).scores["liveness"]


def liveness_pins(stack: IdflowStack, score: float, band: Band) -> dict[str, str]:
    """The production liveness model registered again, thresholds putting ``score`` in ``band``.

    Same file, same sha256: the worker computes the same real score, and only
    the version's thresholds decide differently.
    """
    thresholds = {
        Band.FAIL: {"accept": score + 0.02, "reject": score + 0.01},
        Band.UNCERTAIN: {"accept": score + 0.01, "reject": score - 0.01},
    }[band]
    choice = register_production_copy(
        stack.settings,
        "liveness",
        f"0.0.1-{band.value}",
        caveats=f"test version: thresholds that put the sample selfie in the {band.value} band",
        thresholds=thresholds,
    )
    return {"liveness": choice.ref}


def test_a_selfie_failing_liveness_is_declined_without_a_credential(
    idflow_stack: IdflowStack,
    pairs: dict[str, SamplePair],
    mdl_claims: dict[str, Any],
    selfie_liveness: float,
) -> None:
    pins = liveness_pins(idflow_stack, selfie_liveness, Band.FAIL)
    draft, _ = start_with_device(idflow_stack, pairs["same person"], mdl_claims, model_pins=pins)
    result = idflow_stack.run(idflow_stack.client.result(draft.verification_id))

    assert result.decision is Decision.DECLINED
    assert result.reasons == [ReasonCode.LIVENESS_FAILED]  # the faces match: liveness alone
    assert result.scores["liveness"] == pytest.approx(selfie_liveness, abs=SCORE_TOLERANCE)
    assert result.scores["face_match"] >= 0.45
    assert result.model_versions["liveness"] == pins["liveness"]
    assert_no_credential(idflow_stack, result)
    row = verifications.get(idflow_stack.client.engine, draft.verification_id)
    assert row is not None
    assert (row.status, row.decision, row.reasons) == ("completed", "declined", ["LIVENESS_FAILED"])
    assert row.model_versions["liveness"] == pins["liveness"]
    assert trail(idflow_stack, draft.verification_id) == ["created", "decided"]
    events = history_events(idflow_stack, draft.verification_id)
    assert final_attempts(events, "issue_credential") == []  # binding never started


def test_uncertain_liveness_waits_for_review_and_binds_once_approved(
    idflow_stack: IdflowStack,
    pairs: dict[str, SamplePair],
    mdl_claims: dict[str, Any],
    selfie_liveness: float,
) -> None:
    client = idflow_stack.client
    pins = liveness_pins(idflow_stack, selfie_liveness, Band.UNCERTAIN)
    draft, device_key = start_with_device(
        idflow_stack, pairs["same person"], mdl_claims, model_pins=pins
    )
    wait_for_stage(idflow_stack, draft.verification_id, Stage.AWAITING_REVIEW)

    progress = idflow_stack.run(client.progress(draft.verification_id))
    assert (progress.decision, progress.reasons) == (
        Decision.REVIEW,
        [ReasonCode.LIVENESS_UNCERTAIN],
    )
    assert progress.scores["liveness"] == pytest.approx(selfie_liveness, abs=SCORE_TOLERANCE)
    row = verifications.get(client.engine, draft.verification_id)
    assert row is not None and (row.status, row.decision, row.reasons) == (
        "awaiting_review",
        "review",
        ["LIVENESS_UNCERTAIN"],
    )
    assert not row.credential_issued  # nothing is bound before a person approves
    attributes = idflow_stack.run(
        client.handle(draft.verification_id).describe()
    ).typed_search_attributes
    assert attributes.get(search_attributes.REASONS) == ["LIVENESS_UNCERTAIN"]

    idflow_stack.run(
        idflow_stack.review(draft.verification_id, "staff-5", True, "live on the video")
    )
    result = idflow_stack.run(client.result(draft.verification_id))
    assert result.decision is Decision.APPROVED
    assert result.reasons == [ReasonCode.LIVENESS_UNCERTAIN, ReasonCode.REVIEW_APPROVED]
    assert result.reviewer == "staff-5"
    assert_bound_to(idflow_stack, result.credential, device_key)
    assert trail(idflow_stack, draft.verification_id) == [
        "created",
        "review_requested",
        "reviewed",
        "credential_issued",
        "decided",
    ]


# --- Grey zone declined, and what the review validator refuses --------------------------


def test_a_grey_zone_declined_by_the_reviewer_issues_nothing(
    idflow_stack: IdflowStack,
    pairs: dict[str, SamplePair],
    mdl_claims: dict[str, Any],
    strict_embed: dict[str, str],
) -> None:
    draft, _ = start_with_device(
        idflow_stack, pairs["same person"], mdl_claims, model_pins=strict_embed
    )
    wait_for_stage(idflow_stack, draft.verification_id, Stage.AWAITING_REVIEW)
    declined_by_a_reviewer(
        idflow_stack,
        draft.verification_id,
        ReasonCode.FACE_MATCH_UNCERTAIN,
        "staff-7",
        "portrait too old to tell",
    )
    attributes = idflow_stack.run(
        idflow_stack.client.handle(draft.verification_id).describe()
    ).typed_search_attributes
    assert attributes.get(search_attributes.DECISION) == "declined"
    assert attributes.get(search_attributes.REASONS) == ["FACE_MATCH_UNCERTAIN", "REVIEW_DECLINED"]


def test_a_review_is_refused_while_the_verification_is_not_awaiting_one(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], mdl_claims: dict[str, Any]
) -> None:
    client = idflow_stack.client
    put_back = take_issuer_keys_away(idflow_stack.settings)
    try:  # binding keeps retrying while the keys are away: the stage stays put
        draft, device_key = start_with_device(
            idflow_stack, pairs["same person"], mdl_claims, processing_attempts=20
        )
        wait_for_stage(idflow_stack, draft.verification_id, Stage.BINDING_CREDENTIAL)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            idflow_stack.run(
                idflow_stack.review(draft.verification_id, "staff-3", False, "too early")
            )
    finally:
        put_back()
    assert "not awaiting review (stage: binding_credential)" in str(refused.value.cause)

    result = idflow_stack.run(client.result(draft.verification_id))
    assert result.decision is Decision.APPROVED  # the refused review changed nothing
    assert (result.reasons, result.reviewer) == ([], None)
    assert_bound_to(idflow_stack, result.credential, device_key)
    assert trail(idflow_stack, draft.verification_id) == ["created", "credential_issued", "decided"]
    assert update_events(idflow_stack, draft.verification_id) == []  # refusals leave no trace


def test_a_second_review_is_refused_while_the_first_is_being_recorded(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], strict_embed: dict[str, str]
) -> None:
    client = idflow_stack.client
    pair = pairs["same person"]
    draft = idflow_stack.run(client.create(pair.selfie, pair.document, subject_ref="test-subject"))
    idflow_stack.run(client.start(draft, model_pins=strict_embed))
    wait_for_stage(idflow_stack, draft.verification_id, Stage.AWAITING_REVIEW)

    # Two reviewers answer at once. With the database locked, the review accepted first
    # cannot be recorded yet: the verification still awaits review when the other arrives.
    loop = idflow_stack.server.loop.loop
    with database_write_lock(idflow_stack):
        reviews = {
            reviewer: asyncio.run_coroutine_threadsafe(
                idflow_stack.review(draft.verification_id, reviewer, approve, "looked at it"), loop
            )
            for reviewer, approve in (("staff-1", True), ("staff-2", False))
        }
        done, _ = futures.wait(reviews.values(), 120, futures.FIRST_COMPLETED)
        assert done, "no review was accepted"
    outcomes = {reviewer: review.exception(120) for reviewer, review in reviews.items()}
    [winner] = [reviewer for reviewer, error in outcomes.items() if error is None]
    [refused] = [error for error in outcomes.values() if error is not None]
    assert isinstance(refused, WorkflowUpdateFailedError), refused
    assert f"already reviewed by {winner}" in str(refused.cause)

    result = idflow_stack.run(client.result(draft.verification_id))
    expected = Decision.APPROVED if winner == "staff-1" else Decision.DECLINED
    assert (result.decision, result.reviewer) == (expected, winner)
    reviewed = [
        e for e in audit.trail(client.engine, draft.verification_id) if e.event == "reviewed"
    ]
    assert [e.actor for e in reviewed] == [winner]
    # The loser is refused by the validator, or (when both arrived before either was
    # authorised) after its signature was checked: either way only the winner counts.
    assert 1 <= len(update_events(idflow_stack, draft.verification_id)) <= 2


# --- Input and claims no retry can fix: decided on the first attempt ------------------


def assert_decided_at_once(
    stack: IdflowStack, result: VerificationResult, activity: str, reason: ReasonCode
) -> None:
    """Declined for ``reason`` by ``activity``'s first attempt, recorded, and no credential."""
    assert result.decision is Decision.DECLINED
    assert result.reasons == [reason]
    events = history_events(stack, result.verification_id)
    ends = final_attempts(events, activity)
    assert (1, reason.value) in ends and {attempt for attempt, _ in ends} == {1}, ends
    assert set(started_attempts(events)) == {1}
    row = verifications.get(stack.client.engine, result.verification_id)
    assert row is not None
    assert (row.status, row.decision, row.reasons) == ("completed", "declined", [reason.value])
    assert_no_credential(stack, result)


def test_invalid_claims_decline_on_the_first_attempt_without_a_credential(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair]
) -> None:
    expired = DEMO_CLAIMS | {"issue_date": "2014-03-01", "expiry_date": "2024-02-28"}
    draft, _ = start_with_device(idflow_stack, pairs["same person"], expired)
    result = idflow_stack.run(idflow_stack.client.result(draft.verification_id))
    assert_decided_at_once(idflow_stack, result, "issue_credential", ReasonCode.CLAIMS_INVALID)
    assert set(result.scores) == {"liveness", "face_match"}  # approved; the claims were not
    assert trail(idflow_stack, draft.verification_id) == ["created", "decided"]


def test_images_purged_before_the_start_decline_with_input_purged(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], mdl_claims: dict[str, Any]
) -> None:
    client = idflow_stack.client
    pair = pairs["same person"]
    draft = idflow_stack.run(client.create(pair.selfie, pair.document, subject_ref="test-subject"))
    retention.purge(
        client.engine,
        client.blobs,
        PurgeRequest(draft.verification_id, actor="staff-4", reason="subject asked"),
    )
    binding = holder.device_binding(
        holder.new_device_key(), draft.nonce, idflow_stack.settings.issuer_id
    )
    result = idflow_stack.run(
        _start_and_wait(idflow_stack, draft, device=binding, claims=mdl_claims)
    )
    assert_decided_at_once(idflow_stack, result, "check_quality", ReasonCode.INPUT_PURGED)
    assert result.scores == {}
    assert trail(idflow_stack, draft.verification_id) == ["created", "purged", "decided"]


def test_a_tampered_stored_image_declines_with_input_integrity(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair]
) -> None:
    client = idflow_stack.client
    pair = pairs["same person"]
    draft = idflow_stack.run(client.create(pair.selfie, pair.document, subject_ref="test-subject"))
    stored = idflow_stack.settings.blob_dir / draft.verification_id / draft.selfie.blob_id
    sealed = bytearray(stored.read_bytes())
    sealed[len(sealed) // 2] ^= 0x01  # one bit of the ciphertext, as a tamperer with disk access
    stored.write_bytes(bytes(sealed))

    result = idflow_stack.run(_start_and_wait(idflow_stack, draft))
    assert_decided_at_once(idflow_stack, result, "check_quality", ReasonCode.INPUT_INTEGRITY)
    assert result.scores == {}
    assert trail(idflow_stack, draft.verification_id) == ["created", "decided"]


async def _start_and_wait(stack: IdflowStack, draft: Draft, **start: Any) -> VerificationResult:
    await stack.client.start(draft, **start)
    return await stack.client.result(draft.verification_id)


def test_finished_verifications_are_replayed_when_the_stack_stops(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair]
) -> None:
    """The fixture replays them all at teardown; this checks that its query finds them."""
    pair = pairs["no face"]
    idflow_stack.verify(pair.selfie, pair.document)
    deadline = time.monotonic() + 60
    while (replayed := idflow_stack.replay_finished()) == 0:  # visibility is eventually consistent
        assert time.monotonic() < deadline, "no finished verification is visible to replay"
        time.sleep(0.2)
    assert replayed >= 1
