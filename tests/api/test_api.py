"""The HTTP API against a real stack: uvicorn on a free port, Temporal, both worker pools."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from api.app import openapi_document
from cli.commands import format_result
from devstack.samples import DEMO_CLAIMS
from domain.contracts import VerificationResult
from domain.reasons import ReasonCode
from mdoc import holder
from store import api_clients
from store.engine import get_engine

from ..support.api import ApiServer
from ..support.temporal import IdflowStack

pytestmark = [pytest.mark.temporal, pytest.mark.slow]

OPENAPI = Path(__file__).resolve().parents[2] / "api" / "openapi.json"
PROBLEM = "application/problem+json"
MiB = 2**20


@pytest.fixture(scope="module")
def writer(api_server: ApiServer) -> Iterator[httpx.Client]:
    with api_server.client("writer") as client:
        yield client


def upload(photo: Any, subject: str = "api-subject", **form: str) -> dict[str, Any]:
    return {
        "files": {
            "selfie": ("selfie.jpg", photo("obama.jpg"), "image/jpeg"),
            "document": ("document.jpg", photo("obama2.jpg"), "image/jpeg"),
        },
        "data": {"subject_ref": subject, **form},
    }


def wait_decided(client: httpx.Client, verification_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while True:
        status = client.get(f"/v1/verifications/{verification_id}")
        assert status.status_code == 200, status.text
        if status.json()["status"] == "completed" or time.monotonic() > deadline:
            return status.json()
        time.sleep(0.25)


def stored_counts(stack: IdflowStack) -> tuple[int, int]:
    """Verification rows and stored blob files."""
    from sqlmodel import Session, func, select

    from store.verifications import VerificationRecord

    with Session(get_engine(stack.settings.database_url)) as session:
        rows = session.exec(select(func.count()).select_from(VerificationRecord)).one()
    blobs = stack.settings.blob_dir
    return rows, sum(1 for path in blobs.rglob("*") if path.is_file()) if blobs.exists() else 0


def test_create_start_and_result_with_a_credential(
    writer: httpx.Client, photo: Any, idflow_stack: IdflowStack
) -> None:
    created = writer.post("/v1/verifications", **upload(photo))
    assert created.status_code == 201, created.text
    draft = created.json()
    assert draft["refused"] == {} and draft["nonce"]
    vid = draft["verification_id"]
    assert writer.get(f"/v1/verifications/{vid}").json()["status"] == "created"

    key = holder.new_device_key()
    binding = holder.device_binding(key, draft["nonce"], idflow_stack.settings.issuer_id)
    body = {"device": dataclasses.asdict(binding), "claims": DEMO_CLAIMS}
    started = writer.post(f"/v1/verifications/{vid}/start", json=body)
    assert started.status_code == 202, started.text

    result = wait_decided(writer, vid)
    assert result["decision"] == "approved", result
    assert result["scores"]["face_match"] > 0.5 and result["scores"]["liveness"] > 0
    assert set(result["model_versions"]) >= {"detect", "embed", "liveness"}
    credential = result["credential"]
    assert credential["doc_type"] == "org.iso.18013.5.1.mDL" and credential["issuer_signed_b64"]

    purged = writer.post(f"/v1/verifications/{vid}/purge", headers={"Idempotency-Key": vid})
    assert purged.status_code == 202, purged.text
    outcome = idflow_stack.run(
        idflow_stack.client.temporal.get_workflow_handle(f"idflow-purge-{vid}").result()
    )
    assert outcome["blobs_deleted"] >= 2 if isinstance(outcome, dict) else outcome.blobs_deleted


def test_idempotent_create(writer: httpx.Client, photo: Any) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = writer.post("/v1/verifications", headers=key, **upload(photo))
    again = writer.post("/v1/verifications", headers=key, **upload(photo))
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()  # same id, same nonce: nothing made twice
    assert again.headers["Idempotent-Replayed"] == "true"

    other = writer.post("/v1/verifications", headers=key, **upload(photo, subject="another"))
    assert other.status_code == 422 and other.headers["content-type"] == PROBLEM
    assert other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"

    without_key = writer.post("/v1/verifications", **upload(photo))
    assert without_key.json()["verification_id"] != first.json()["verification_id"]


def test_keys_and_scopes(api_server: ApiServer, photo: Any, idflow_stack: IdflowStack) -> None:
    with api_server.client() as anonymous:
        missing = anonymous.get("/v1/verifications/anything")
        wrong = anonymous.get(
            "/v1/verifications/anything", headers={"Authorization": "Bearer idf_not-a-key"}
        )
    for refused in (missing, wrong):
        assert refused.status_code == 401 and refused.headers["content-type"] == PROBLEM
        assert refused.json()["code"] == "UNAUTHENTICATED"
    with api_server.client("reader") as reader:
        before = stored_counts(idflow_stack)
        denied = reader.post("/v1/verifications", **upload(photo))
        assert denied.status_code == 403 and denied.json()["code"] == "SCOPE_MISSING"
        assert "verifications:write" in denied.json()["detail"]
        assert stored_counts(idflow_stack) == before
        assert reader.get("/v1/verifications/unknown-id").status_code == 404
    # Keys are kept as their sha256 only.
    engine = get_engine(idflow_stack.settings.database_url)
    record = api_clients.find_by_key(engine, api_server.keys["reader"])
    assert record is not None and api_server.keys["reader"] not in record.key_sha256


def test_rate_limit(api_server: ApiServer) -> None:
    with api_server.client("slow") as slow:
        answers = [slow.get("/v1/verifications/unknown-id") for _ in range(3)]
    assert [answer.status_code for answer in answers] == [404, 404, 429]
    assert answers[2].json()["code"] == "RATE_LIMITED" and int(answers[2].headers["Retry-After"])


def declare_and_read_answer(api_server: ApiServer, content_length: int) -> tuple[int, bytes]:
    """Send only the headers of a request that declares ``content_length`` bytes; the answer."""
    host, port = api_server.base_url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/verifications HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {api_server.keys['writer']}\r\n"
        f"Content-Type: multipart/form-data; boundary=cap\r\nContent-Length: {content_length}"
        "\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head.encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_oversize_upload_refused_with_nothing_stored(
    api_server: ApiServer, writer: httpx.Client, idflow_stack: IdflowStack
) -> None:
    before = stored_counts(idflow_stack)
    # Refused on the declared length: the server answers before a byte of the body is sent.
    status, body = declare_and_read_answer(api_server, 60 * MiB)
    assert status == 413 and json.loads(body)["code"] == "INPUT_TOO_LARGE"

    sent = 0

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, cut off at the cap
        nonlocal sent
        boundary = b"--cap\r\nContent-Disposition: form-data; name=selfie; filename=a.jpg\r\n\r\n"
        yield boundary
        for _ in range(80):
            sent += MiB
            yield b"\xff" * MiB

    streamed = writer.post(
        "/v1/verifications",
        content=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=cap", "Idempotency-Key": "big"},
    )
    assert streamed.status_code == 413 and streamed.json()["code"] == "INPUT_TOO_LARGE"
    assert stored_counts(idflow_stack) == before
    # The refused request claimed no idempotency key: the key is free for a real request.
    assert not _idempotency_rows(idflow_stack, "big")


def _idempotency_rows(stack: IdflowStack, key: str) -> list[Any]:
    from sqlmodel import Session, select

    with Session(get_engine(stack.settings.database_url)) as session:
        query = select(api_clients.IdempotencyRecord).where(
            api_clients.IdempotencyRecord.key == key
        )
        return list(session.exec(query))


def test_claims_checked_when_the_verification_starts(writer: httpx.Client, photo: Any) -> None:
    vid = writer.post("/v1/verifications", **upload(photo)).json()["verification_id"]
    claims = DEMO_CLAIMS | {"birth_date": "12.08.1964"}
    refused = writer.post(f"/v1/verifications/{vid}/start", json={"claims": claims})
    assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
    problem = refused.json()
    assert problem["code"] == "CLAIMS_INVALID"
    assert "birth_date" in problem["detail"] and "YYYY-MM-DD" in problem["detail"]
    assert "12.08.1964" not in refused.text and "Mustermann" not in refused.text
    # Nothing ran: the verification waits to be started with good claims.
    assert writer.get(f"/v1/verifications/{vid}").json()["status"] == "created"


def test_committed_openapi_document_is_the_apps(idflow_stack: IdflowStack) -> None:
    assert OPENAPI.read_text() == openapi_document(idflow_stack.settings), (
        "api/openapi.json is stale: run `idflow api --openapi api/openapi.json`"
    )


def test_schemathesis_finds_no_server_error_and_no_schema_break(api_server: ApiServer) -> None:
    schema = schemathesis.openapi.from_dict(json.loads(OPENAPI.read_text()))
    auth = {"Authorization": f"Bearer {api_server.keys['writer']}"}
    checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=api_server.base_url, headers=auth, checks=checks)

        check()


def test_a_rejection_carries_its_detail_to_the_result_and_the_cli(
    idflow_stack: IdflowStack, photo: Any
) -> None:
    # A backend on the Python client skips the API's start check: the issuer refuses at the end.
    settings = idflow_stack.settings
    client = idflow_stack.client

    async def verify() -> VerificationResult:
        draft = await client.create(photo("obama.jpg"), photo("obama2.jpg"), "cli-subject")
        binding = holder.device_binding(holder.new_device_key(), draft.nonce, settings.issuer_id)
        claims = DEMO_CLAIMS | {"birth_date": "12.08.1964"}
        await client.start(draft, device=binding, claims=claims)
        return await client.result(draft.verification_id)

    result = idflow_stack.run(verify())
    assert ReasonCode.CLAIMS_INVALID in result.reasons
    detail = result.details["CLAIMS_INVALID"]
    assert "birth_date" in detail and "YYYY-MM-DD" in detail and "12.08.1964" not in detail
    assert f"detail       CLAIMS_INVALID: {detail}" in format_result(result, settings)

    status = subprocess.run(
        [sys.executable, "-m", "cli", "status", result.verification_id],
        env=os.environ | settings.to_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert "workflow     completed" in lines and "decision     declined" in lines
    assert any(line.startswith("reasons      CLAIMS_INVALID") for line in lines), lines
    assert any(line.startswith("details      CLAIMS_INVALID claim birth_date") for line in lines)
    values = "\n".join(line for line in lines if not line.startswith(("ui ", "  ")))
    for repr_mark in ("ReasonCode.", "Stage.", "Decision.", "<", "{", "["):
        assert repr_mark not in values, status.stdout
