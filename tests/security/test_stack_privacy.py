"""Privacy on the real stack: a dev server, both worker pools, real photos and models.

- the raw history (no codec: a plain client and ``temporal workflow show``)
  holds no claim value, no image bytes and no embedding-like float array, and
  decodes fully through the codec server;
- retention: after a purge the blobs say "purged", the record and the audit
  trail remain and the history still replays; the sweep purges expired ones;
- hostile images end in a decision with a reason code on the first attempt
  (refused at ingest: at once, with no activity), and no worker crashes.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from PIL import Image
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHistory

from cli.replay import replay
from devstack.samples import SamplePair, sample_pairs
from devstack.stack import TEMPORAL_BIN
from domain import policy
from domain.contracts import PurgeRequest, PurgeResult, Stage, VerificationResult
from domain.errors import BlobPurged
from domain.reasons import QUALITY_REASONS, Decision, ReasonCode
from mdoc import holder
from security.codec_server import start_codec_server
from security.config import SecurityConfig
from security.payload_codec import ENCODING, Binding, PayloadEncryptionCodec, data_converter
from security.staff_tokens import ensure_dev_tokens
from starter.client import VerificationIdInUse
from store import audit, data_keys, drafts, retention, verifications
from workers.schedules import retention_schedule_id
from workflows.identity_verification import SIGNED_REVIEWS, WEBHOOKS, workflow_id
from workflows.retention import PurgeVerification, RetentionSweep

from ..support.hostile_images import HostileImage
from ..support.temporal import IdflowStack

pytestmark = [pytest.mark.temporal, pytest.mark.slow]

# Claim values that occur nowhere else, so that finding one anywhere is a leak.
MARKERS = {
    "family_name": "Quetzalcoatl-Leak-7731",
    "given_name": "Ximena-Leak-0442",
    "document_number": "LEAK-4471-9912",
}
EMBEDDING_MIN_LENGTH = 32


# --- Looking at histories -------------------------------------------------------


def _payloads(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload in a proto message, with the field path it sits at."""
    if isinstance(message, Payload):
        yield path, message
        return
    for field, value in message.ListFields():
        where = f"{path}.{field.name}"
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, Message):
                    yield from _payloads(item, f"{where}[{key}]")
        elif isinstance(value, Message):
            yield from _payloads(value, where)
        else:  # a repeated message field
            for item in value:
                yield from _payloads(item, where)


def _float_arrays(document: Any) -> Iterator[list[Any]]:
    """Lists of at least EMBEDDING_MIN_LENGTH numbers anywhere in a JSON document."""
    if isinstance(document, list):
        if len(document) >= EMBEDDING_MIN_LENGTH and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in document
        ):
            yield document
        for item in document:
            yield from _float_arrays(item)
    elif isinstance(document, dict):
        for item in document.values():
            yield from _float_arrays(item)


def _json_payloads(document: Any) -> Iterator[tuple[bytes, bytes]]:
    """(encoding, data) of every payload in proto-JSON, base64 undone."""
    if isinstance(document, dict):
        if isinstance(document.get("metadata"), dict) and "encoding" in document["metadata"]:
            yield (
                base64.b64decode(document["metadata"]["encoding"]),
                base64.b64decode(document.get("data", "")),
            )
        for item in document.values():
            yield from _json_payloads(item)
    elif isinstance(document, list):
        for item in document:
            yield from _json_payloads(item)


def _windows(data: bytes, size: int = 32, count: int = 16) -> list[bytes]:
    step = max(1, (len(data) - size) // count)
    return [data[at : at + size] for at in range(64, len(data) - size, step)][:count]


def _assert_no_personal_data(raw: bytes, images: list[bytes]) -> None:
    texts = [raw, base64.b64encode(raw)]
    for value in MARKERS.values():
        assert all(value.encode() not in text for text in texts), f"claim value {value} leaked"
    for image in images:
        for window in _windows(image):
            assert window not in raw, "image bytes leaked into the history"


@pytest.fixture(scope="module")
def codec_server(idflow_stack: IdflowStack) -> Iterator[tuple[str, str]]:
    """The stack's codec server on a free port: (url, dev CLI token)."""
    settings = idflow_stack.settings
    tokens = ensure_dev_tokens(settings)
    config = SecurityConfig(codec_port=0)
    runner, url = idflow_stack.run(start_codec_server(settings, config))
    try:
        yield url, tokens["dev-staff"]
    finally:
        idflow_stack.run(runner.cleanup())


@pytest.fixture
def leaky_inputs(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], mdl_claims: dict[str, Any]
) -> dict[str, Any]:
    """One approved verification with a credential and one declined with a failure."""
    client = idflow_stack.client
    pair = pairs["same person"]
    claims = mdl_claims | MARKERS
    approved = idflow_stack.run(
        client.create(pair.selfie, pair.document, subject_ref="opaque-subject-1")
    )
    declined = idflow_stack.run(
        client.create(pair.selfie, pair.document, subject_ref="opaque-subject-2")
    )
    key = holder.new_device_key()
    good = holder.device_binding(key, approved.nonce, idflow_stack.settings.issuer_id)
    bad = holder.device_binding(key, "not-the-nonce", idflow_stack.settings.issuer_id)

    async def run() -> list[VerificationResult]:
        await client.start(approved, device=good, claims=claims)
        await client.start(declined, device=bad, claims=claims)
        return [await client.result(d.verification_id) for d in (approved, declined)]

    results = idflow_stack.run(run())
    assert [r.decision for r in results] == [Decision.APPROVED, Decision.DECLINED]
    assert results[0].credential is not None and results[1].reasons == [
        ReasonCode.DEVICE_PROOF_INVALID
    ]
    stored = [
        client.blobs.get(approved.verification_id, ref)
        for ref in (approved.selfie, approved.document)
    ]
    return {
        "ids": [approved.verification_id, declined.verification_id],
        "images": [pair.selfie, pair.document, *stored],
    }


@pytest.fixture(scope="module")
def pairs(photo_dir: Path) -> dict[str, SamplePair]:
    return sample_pairs(photo_dir)


async def _raw_history_async(stack: IdflowStack, verification_id: str) -> WorkflowHistory:
    """The history as the Temporal server stores it (a client without the codec)."""
    plain = await Client.connect(stack.server.target, namespace=stack.settings.temporal_namespace)
    return await plain.get_workflow_handle(workflow_id(verification_id)).fetch_history()


def _raw_history(stack: IdflowStack, verification_id: str) -> WorkflowHistory:
    return stack.run(_raw_history_async(stack, verification_id))


def _cli_show(stack: IdflowStack, verification_id: str, *codec: str) -> str:
    command = [
        str(TEMPORAL_BIN),
        "workflow",
        "show",
        "--workflow-id",
        workflow_id(verification_id),
        "--address",
        stack.server.target,
        "--namespace",
        stack.settings.temporal_namespace,
        "--output",
        "json",
        *codec,
    ]
    return subprocess.run(command, check=True, capture_output=True, timeout=60, text=True).stdout


def test_raw_history_holds_no_personal_data_and_decodes_with_the_codec(
    idflow_stack: IdflowStack, leaky_inputs: dict[str, Any], codec_server: tuple[str, str]
) -> None:
    codec = data_converter(idflow_stack.settings, Binding.ANY_WORKFLOW).payload_codec
    assert isinstance(codec, PayloadEncryptionCodec)
    for verification_id in leaky_inputs["ids"]:
        history = _raw_history(idflow_stack, verification_id)
        raw = History(events=history.events).SerializeToString()
        _assert_no_personal_data(raw, leaky_inputs["images"])
        assert not list(_float_arrays(json.loads(history.to_json())))

        # Every payload is ciphertext, except the search attributes (plaintext by design)
        # and the SDK's own marker data: local-activity markers (ids, attempt, times) and
        # workflow.patched markers (the patch id).
        found = list(_payloads(History(events=history.events)))
        sdk_markers = ("details[data].payloads", "details[patch-data].payloads")
        encrypted = [
            (where, p)
            for where, p in found
            if "search_attributes" not in where
            and not where.endswith(
                tuple(f"marker_recorded_event_attributes.{m}" for m in sdk_markers)
            )
        ]
        assert len(encrypted) >= 10
        assert [where for where, p in encrypted if p.metadata["encoding"] != ENCODING] == []
        failures = [
            e.activity_task_failed_event_attributes.failure
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED
        ]
        assert all(f.message == "Encoded failure" and not f.stack_trace for f in failures)
        assert all(f.encoded_attributes.metadata["encoding"] == ENCODING for f in failures)
        assert bool(failures) == (verification_id == leaky_inputs["ids"][1])  # the declined one

        # ... and the same history decodes fully with the codec: with no claim in it
        # even then (holder data and credential travel as references to the store).
        decoded = [codec.decrypt(p) for _, p in encrypted]
        assert all(p.metadata["encoding"] != ENCODING for p in decoded)
        plain = b"".join(p.data for p in decoded)
        assert b'"decision"' in plain and b'"holder"' in plain
        _assert_no_personal_data(plain, leaky_inputs["images"])
        assert b"opaque-subject" not in plain
        assert not list(
            _float_arrays(
                [json.loads(p.data) for p in decoded if p.metadata["encoding"] == b"json/plain"]
            )
        )

        # The same through the Temporal CLI: without a codec, then with the codec server.
        url, token = codec_server
        shown = _cli_show(idflow_stack, verification_id)
        _assert_no_personal_data(shown.encode(), leaky_inputs["images"])
        assert MARKERS["given_name"] not in shown
        with_codec = _cli_show(
            idflow_stack,
            verification_id,
            "--codec-endpoint",
            url,
            "--codec-auth",
            f"Bearer {token}",
        )
        shown_payloads = list(_json_payloads(json.loads(with_codec)))
        assert len(shown_payloads) >= len(encrypted)
        assert all(encoding != ENCODING for encoding, _ in shown_payloads)
        shown_plain = b"".join(data for _, data in shown_payloads)
        assert b'"decision"' in shown_plain and MARKERS["given_name"].encode() not in shown_plain

        # Search attributes are plaintext: only the known vocabulary; the workflow id is opaque.
        vocabulary = {
            *(s.value for s in Stage),
            *(d.value for d in Decision),
            *(r.value for r in ReasonCode),
            SIGNED_REVIEWS,  # TemporalChangeVersion, set by workflow.patched
            WEBHOOKS,
        }
        attributes = [json.loads(p.data) for where, p in found if "search_attributes" in where]
        values = [
            v for value in attributes for v in (value if isinstance(value, list) else [value])
        ]
        assert len(values) >= 6
        for value in values:
            model = r"(shadow:)?[a-z]+:[\w.-]+@[\w.-]+|canary:[a-z]+"
            assert value in vocabulary or re.fullmatch(model, value), value
        assert history.workflow_id == f"idv-{verification_id}" and re.fullmatch(
            r"[0-9a-f]{32}", verification_id
        )

    for worker in idflow_stack.workers.values():  # nor do the workers' logs
        _assert_no_personal_data(worker.log_path.read_bytes(), leaky_inputs["images"])


# --- Retention ------------------------------------------------------------------------


def _database_files(settings: Any) -> list[Path]:
    database = Path(settings.database_url.removeprefix("sqlite:///"))
    return [path for path in (database, Path(f"{database}-wal")) if path.exists()]


def _reencoded(jpeg: bytes) -> bytes:
    """The same photo as other bytes (JPEG quality 93), so its digests are its own."""
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("RGB").save(out, "JPEG", quality=93)
    return out.getvalue()


def test_purge_forgets_the_person_and_keeps_decision_audit_and_replay(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair], mdl_claims: dict[str, Any]
) -> None:
    client, settings = idflow_stack.client, idflow_stack.settings
    # Photos no other test here uploads: their digests must be nowhere after the purge.
    pair = pairs["same person"]
    selfie, document = _reencoded(pair.selfie), _reencoded(pair.document)
    subject = "opaque-subject-purged-3"
    draft = idflow_stack.run(client.create(selfie, document, subject_ref=subject))
    binding = holder.device_binding(holder.new_device_key(), draft.nonce, settings.issuer_id)

    async def verify() -> VerificationResult:
        await client.start(draft, device=binding, claims=mdl_claims | MARKERS)
        return await client.result(draft.verification_id)

    async def purge(request: PurgeRequest, run_id: str) -> PurgeResult:
        return await client.temporal.execute_workflow(
            PurgeVerification.run, request, id=run_id, task_queue=settings.cpu_task_queue
        )

    result = idflow_stack.run(verify())
    assert result.decision is Decision.APPROVED and result.credential is not None
    assert result.credential.issuer_signed_b64  # the client read it from the store
    credential = base64.b64decode(result.credential.issuer_signed_b64)
    wrapped = data_keys.get(client.engine, draft.verification_id).wrapped_key  # type: ignore[union-attr]
    assert wrapped is not None

    request = PurgeRequest(draft.verification_id, "staff-42", "deletion requested")
    purged = idflow_stack.run(purge(request, f"idflow-purge-{draft.verification_id}"))
    again = idflow_stack.run(purge(request, f"idflow-purge-again-{draft.verification_id}"))
    # Selfie, document, the face crops the quality check cut from them, holder data
    # (device binding + claims) and the IssuerSigned.
    assert (purged.blobs_deleted, purged.already_purged) == (5, False)
    assert again.already_purged

    # The history, decoded with the payload key: decision and scores, nothing personal.
    history = idflow_stack.run(_raw_history_async(idflow_stack, draft.verification_id))
    codec = data_converter(settings, Binding.ANY_WORKFLOW).payload_codec
    assert isinstance(codec, PayloadEncryptionCodec)
    payloads = [p for _, p in _payloads(History(events=history.events))]
    plain = b"".join(
        codec.decrypt(p).data if p.metadata["encoding"] == ENCODING else p.data for p in payloads
    )
    assert b'"approved"' in plain and b'"face_match"' in plain and b'"liveness"' in plain
    _assert_no_personal_data(plain, [selfie, document, credential])
    for secret in (subject, binding.proof_jwt, binding.public_jwk["x"]):
        assert secret.encode() not in plain, secret
    encoded = base64.b64encode(credential)
    assert not [w for w in _windows(encoded) if w in plain], "the credential leaked"
    assert b"\xff\xd8\xff" not in plain and b"/9j/" not in plain  # no JPEG, raw or base64

    # What the history references is gone for good: reading it says "purged".
    with pytest.raises(BlobPurged, match=r"purged on .* can never be read again"):
        client.blobs.get(draft.verification_id, draft.selfie)
    assert (
        idflow_stack.run(client.result(draft.verification_id)).credential.issuer_signed_b64 is None
    )  # type: ignore[union-attr]

    # No copy of the wrapped data key, the subject reference, nor a digest that would
    # confirm the photos or the subject, in the database files.
    digests = [draft.selfie.sha256.encode(), draft.document.sha256.encode()]  # type: ignore[union-attr]
    digests.append(drafts.request_digest(selfie, document, subject).encode())
    for path in _database_files(settings):
        content = path.read_bytes()
        assert wrapped not in content and subject.encode() not in content, path.name
        assert not [d for d in digests if d in content], path.name
    with pytest.raises(VerificationIdInUse):  # the id stays taken
        idflow_stack.run(
            client.create(
                selfie, document, subject_ref=subject, verification_id=draft.verification_id
            )
        )

    row = verifications.get(client.engine, draft.verification_id)
    assert row is not None and row.decision == "approved" and row.scores == result.scores
    assert row.subject_ref == "" and row.credential_issued
    trail = audit.trail(client.engine, draft.verification_id)
    assert [e.event for e in trail] == ["created", "credential_issued", "decided", "purged"]
    assert (trail[-1].actor, trail[-1].details["reason"]) == ("staff-42", "deletion requested")
    assert "purged" in (retention.personal_data_status(client.engine, draft.verification_id) or "")

    idflow_stack.run(replay(history, settings))  # raises ReplayFailed if it does not replay


def test_the_sweep_purges_verifications_whose_retention_ended(
    idflow_stack: IdflowStack, pairs: dict[str, SamplePair]
) -> None:
    client, settings = idflow_stack.client, idflow_stack.settings
    pair = pairs["same person"]
    expired = idflow_stack.run(
        client.create(pair.selfie, pair.document, subject_ref="opaque-subject-4")
    )
    kept = idflow_stack.run(
        client.create(pair.selfie, pair.document, subject_ref="opaque-subject-5")
    )
    assert retention.set_retention(client.engine, expired.verification_id, days=-1)

    async def sweep() -> int:
        schedule = await client.temporal.get_schedule_handle(
            retention_schedule_id(settings)
        ).describe()
        assert schedule.schedule.action.workflow == "RetentionSweep"  # type: ignore[union-attr]
        return await client.temporal.execute_workflow(
            RetentionSweep.run,
            id=f"sweep-{expired.verification_id}",
            task_queue=settings.cpu_task_queue,
        )

    assert idflow_stack.run(sweep()) >= 1
    with pytest.raises(BlobPurged, match="retention period ended"):
        client.blobs.get(expired.verification_id, expired.selfie)
    assert client.blobs.get(kept.verification_id, kept.selfie)
    assert data_keys.get(client.engine, kept.verification_id).purged_at is None  # type: ignore[union-attr]


# --- Hostile input ------------------------------------------------------------------


# One of each family of the hostile corpus (tests.support.hostile_images); the
# whole corpus runs through create() in tests/security/test_hostile_ingest.py.
STACK_SUBSET = (
    "jpeg-scan-bomb-1000",
    "jpeg-empty-com-flood",
    "png-16bit-rgba-4000x4000",
    "png-grey-7000x7000",
    "webp-canvas-16000x16000",
    "truncated-jpeg",
    "jpeg-scan-bomb-truncated",
    "png-corrupt-idat-crc",
    "zero-size",
    "svg",
    "gif-javascript-polyglot",
    "heic-container",
    "apng-animated",
    "jpeg-arithmetic-coded",
    "png-rgba-face-under-alpha-0",
    "png-16-bit-grey",
    "cmyk-jpeg",
    "exif-5000-entries-ifd-loop",
)


def test_hostile_images_end_in_a_decision_on_the_first_attempt_and_crash_no_worker(
    idflow_stack: IdflowStack,
    pairs: dict[str, SamplePair],
    hostile_image_corpus: list[HostileImage],
) -> None:
    """Refused at ingest: decided at once, no activity. Decodable: processed, never retried."""
    client = idflow_stack.client
    good = pairs["same person"].document
    subset = {item.name: item for item in hostile_image_corpus if item.name in STACK_SUBSET}
    assert set(subset) == set(STACK_SUBSET)

    async def verify(data: bytes) -> tuple[VerificationResult, list[int]]:
        draft = await client.create(data, good, subject_ref="opaque-fuzz")
        await client.start(draft)
        result = await client.result(draft.verification_id)
        history = await client.handle(draft.verification_id).fetch_history()
        attempts = [
            e.activity_task_started_event_attributes.attempt
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        ]
        return result, attempts

    async def verify_all() -> list[tuple[VerificationResult, list[int]]]:
        return await asyncio.gather(*(verify(item.data) for item in subset.values()))

    outcomes = dict(zip(subset, idflow_stack.run(verify_all(), timeout=600), strict=True))
    for name, (result, attempts) in outcomes.items():
        expected = subset[name].expected
        if expected is not None:
            assert (result.decision, result.reasons) == (Decision.RETRY, [expected]), name
            assert attempts == [], f"{name}: an activity ran on an image refused at ingest"
        else:
            assert ReasonCode.PROCESSING_FAILED not in result.reasons, name
            assert not set(result.reasons) & policy.RECAPTURABLE - QUALITY_REASONS, name
            assert set(attempts) == {1}, f"{name}: an activity was retried"
    hidden = outcomes["png-rgba-face-under-alpha-0"][0]  # the face under alpha 0 is not judged
    assert hidden.decision is Decision.RETRY and ReasonCode.QUALITY_NO_FACE in hidden.reasons
    for pool, worker in idflow_stack.workers.items():
        assert worker.process is not None and worker.process.poll() is None, f"{pool} worker died"
    assert idflow_stack.verify(pairs["same person"].selfie, good).decision is Decision.APPROVED
