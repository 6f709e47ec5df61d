"""A verification's credential is issued exactly once, whatever is retried or crashes.

Also the activity itself, run by temporalio's ActivityEnvironment: idempotent,
and typed rejections leave it as non-retryable ApplicationErrors whose type
is the reason code, with messages free of personal data.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import names
from activities.credential import CredentialActivities
from mdoc import issuer as issuer_module
from store import audit, credentials
from store.credentials import IssuedCredentialRecord
from store.engine import get_engine
from tests.support.mdoc import ISSUER_ID


def _records(engine) -> list[IssuedCredentialRecord]:
    with Session(engine) as session:
        return list(session.exec(select(IssuedCredentialRecord)))


def _stored_credentials(issuance, verification_id: str) -> int:
    # Blobs are encrypted on disk: count the files beside the one portrait the request stored.
    folder = issuance.blobs.root / verification_id
    return sum(1 for _ in folder.iterdir()) - 1


def test_issuing_twice_returns_the_same_credential(issuance):
    request = issuance.request("v-1")

    first = issuance.issuer.issue(request)
    second = issuance.issuer.issue(request)

    assert second == first
    [record] = _records(issuance.engine)
    assert (record.verification_id, record.mso_digest) == ("v-1", first.mso_digest)
    assert _stored_credentials(issuance, "v-1") == 1
    issued_events = [
        e for e in audit.trail(issuance.engine, "v-1") if e.event == "credential_issued"
    ]
    assert len(issued_events) == 1
    assert issued_events[0].details["mso_digest"] == first.mso_digest


def test_crash_between_signing_and_recording(issuance, monkeypatch):
    request = issuance.request("v-1")
    record_issued = credentials.record_issued

    def worker_dies(*args, **kwargs):
        raise SystemExit("worker killed after signing and storing, before recording")

    monkeypatch.setattr(credentials, "record_issued", worker_dies)
    with pytest.raises(SystemExit):
        issuance.issuer.issue(request)
    assert _records(issuance.engine) == []

    monkeypatch.setattr(credentials, "record_issued", record_issued)
    retried = issuance.issuer.issue(request)  # Temporal's retry, same input
    again = issuance.issuer.issue(request)

    assert again == retried
    [record] = _records(issuance.engine)
    assert record.mso_digest == retried.mso_digest
    stored = issuance.blobs.get("v-1", record.blob)
    assert base64.b64encode(stored).decode() == retried.issuer_signed_b64


def test_crash_after_recording_returns_the_recorded_credential(issuance, monkeypatch):
    request = issuance.request("v-1")
    first = issuance.issuer.issue(request)
    # The retry must not sign again: make signing impossible and ask once more.
    monkeypatch.setattr(issuer_module, "sign_mdoc", lambda *a, **k: pytest.fail("signed twice"))

    assert issuance.issuer.issue(request) == first


def test_racing_attempts_both_return_the_first_record(issuance, monkeypatch):
    request = issuance.request("v-1")
    first = issuance.issuer.issue(request)
    # A second attempt that started before the first recorded: it signs too, then loses the insert.
    monkeypatch.setattr(credentials, "find_issued", lambda engine, verification_id: None)

    late = issuance.issuer.issue(request)

    assert late == first
    assert len(_records(issuance.engine)) == 1


def test_record_issued_keeps_the_first_record_and_raises_other_integrity_errors(issuance):
    def record(
        mso_digest: str, doc_type: str | None = "org.iso.18013.5.1.mDL"
    ) -> IssuedCredentialRecord:
        now = datetime.now(UTC)
        return IssuedCredentialRecord(
            verification_id="v-1",
            doc_type=doc_type,
            mso_digest=mso_digest,
            device_key_thumbprint="t",
            signed_at=now,
            valid_from=now,
            valid_until=now,
            signer_serial="s",
            blob_id="b",
            blob_sha256="h",
        )

    first = record("first")
    assert credentials.record_issued(issuance.engine, first) is first
    held = credentials.record_issued(issuance.engine, record("second"))  # a racing second issuance
    assert held.mso_digest == "first"
    assert [row.mso_digest for row in _records(issuance.engine)] == ["first"]

    broken = record("third", doc_type=None)
    broken.verification_id = "v-2"
    with pytest.raises(IntegrityError):  # not a duplicate: no row to return, the error stands
        credentials.record_issued(issuance.engine, broken)


# --- The activity -------------------------------------------------------------


@pytest.fixture
def activities(issuance) -> CredentialActivities:
    return CredentialActivities(issuance.engine, issuance.blobs, issuance.issuer.keys, ISSUER_ID)


def test_activity_is_registered_under_its_name():
    definition = getattr(CredentialActivities.issue_credential, "__temporal_activity_definition")
    assert definition.name == names.ISSUE_CREDENTIAL == "issue_credential"
    assert not definition.is_async  # runs on the CPU pool's thread executor


def test_activity_retry_returns_the_same_credential(issuance, activities):
    request = issuance.request("v-1")
    env = ActivityEnvironment()

    first = env.run(activities.issue_credential, request)
    retry = env.run(activities.issue_credential, request)

    assert retry == first and first.doc_type == "org.iso.18013.5.1.mDL"
    assert len(_records(issuance.engine)) == 1


def test_activity_bad_proof_is_non_retryable(issuance, activities):
    request = issuance.request("v-1")
    other = issuance.request("v-2")
    swapped = type(request)(request.verification_id, other.device, request.claims, request.portrait)

    with pytest.raises(ApplicationError) as failure:
        ActivityEnvironment().run(activities.issue_credential, swapped)

    assert failure.value.type == "DEVICE_PROOF_INVALID"
    assert failure.value.non_retryable
    assert failure.value.message == "proof nonce was not issued for this verification"
    assert failure.value.__cause__ is None  # no library message rides along


def test_activity_bad_claims_are_non_retryable_and_not_echoed(issuance, activities):
    claims = issuance.claims | {"birth_date": "12/08/1964"}
    request = issuance.request("v-1", claims=claims)

    with pytest.raises(ApplicationError) as failure:
        ActivityEnvironment().run(activities.issue_credential, request)

    assert failure.value.type == "CLAIMS_INVALID" and failure.value.non_retryable
    assert "12/08/1964" not in failure.value.message and "Mustermann" not in failure.value.message
    assert _records(issuance.engine) == []


@pytest.mark.postgres
def test_nonces_and_records_on_postgresql(issuance):
    url = os.environ.get("IDFLOW_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("IDFLOW_TEST_POSTGRES_URL is not set")
    engine = get_engine(url)
    issuance.issuer.engine = engine
    verification_id = f"pg-{os.urandom(6).hex()}"
    request = issuance.request(verification_id)

    first = issuance.issuer.issue(request)

    assert issuance.issuer.issue(request) == first
    assert credentials.find_issued(engine, verification_id).mso_digest == first.mso_digest
    with pytest.raises(ValueError, match="already used"):
        credentials.create_nonce(engine, verification_id)
