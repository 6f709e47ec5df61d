"""The verifications table and the audit log, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from devstack.samples import sample_pairs
from domain.contracts import RecordInput, Stage, VerificationResult
from domain.reasons import Decision, ReasonCode
from store import audit, verifications
from store.engine import get_engine

from ..support.temporal import TemporalServer, stack_settings, start_stack

POSTGRES_URL = os.environ.get("IDFLOW_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="IDFLOW_TEST_POSTGRES_URL is not set (e.g. .ci/run sets it)"
)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose connections use a fresh schema, dropped afterwards."""
    assert POSTGRES_URL is not None
    schema = f"idflow_test_{uuid.uuid4().hex[:12]}"
    admin = get_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, needs_postgres])]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'idflow.db'}"
    return request.getfixturevalue("postgres_url")


def decided(verification_id: str) -> RecordInput:
    result = VerificationResult(
        verification_id,
        Decision.DECLINED,
        [ReasonCode.FACE_MISMATCH],
        scores={"face_match": 0.0121, "liveness": 0.9999},
        model_versions={"embed": "faceplugin-fr-feature@0.0.1"},
    )
    return RecordInput(
        verification_id, f"idv-{verification_id}", Stage.COMPLETED, "decided", result=result
    )


def test_a_verification_is_created_once_and_recorded_idempotently(database_url: str) -> None:
    engine = get_engine(database_url)
    vid = uuid.uuid4().hex
    assert verifications.create(engine, vid, f"idv-{vid}", "subject-1")
    assert not verifications.create(engine, vid, f"idv-{vid}", "subject-1")

    # A retried activity records the same entry under the same key: one audit entry.
    verifications.record(engine, decided(vid), key="run-1:7")
    verifications.record(engine, decided(vid), key="run-1:7")

    row = verifications.get(engine, vid)
    assert row is not None
    assert (row.status, row.decision, row.reasons) == ("completed", "declined", ["FACE_MISMATCH"])
    assert row.scores == {"face_match": 0.0121, "liveness": 0.9999}
    assert row.model_versions == {"embed": "faceplugin-fr-feature@0.0.1"}
    assert row.decided_at is not None and row.subject_ref == "subject-1"
    trail = audit.trail(engine, vid)
    assert [(entry.event, entry.actor) for entry in trail] == [
        ("created", "client"),
        ("decided", "workflow"),
    ]
    assert trail[1].details == {
        "stage": "completed",
        "decision": "declined",
        "reasons": ["FACE_MISMATCH"],
    }


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"]
)
def test_the_database_refuses_to_rewrite_the_audit_log(database_url: str, statement: str) -> None:
    engine = get_engine(database_url)
    vid = uuid.uuid4().hex
    verifications.create(engine, vid, f"idv-{vid}", "subject-1")
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(statement))
    assert [entry.actor for entry in audit.trail(engine, vid)] == ["client"]


@pytest.mark.postgres
@pytest.mark.temporal
@needs_postgres
def test_a_verification_runs_end_to_end_on_postgresql(
    temporal_server: TemporalServer,
    model_cache: Path,
    test_keys: dict[str, str],
    postgres_url: str,
    photo_dir: Any,
    tmp_path: Path,
) -> None:
    settings = stack_settings(
        tmp_path, temporal_server.target, model_cache, database_url=postgres_url
    )
    stack = start_stack(temporal_server, settings)
    try:
        pair = sample_pairs(photo_dir)["same person"]
        result = stack.verify(pair.selfie, pair.document)
    finally:
        stack.stop()
    assert result.decision is Decision.APPROVED
    engine = get_engine(postgres_url)
    row = verifications.get(engine, result.verification_id)
    assert row is not None and row.decision == "approved"
    assert row.model_versions == result.model_versions
    with engine.connect() as connection:  # the rows really are in PostgreSQL
        assert connection.execute(text("SELECT count(*) FROM verifications")).scalar_one() == 1
