"""``Idempotency-Key`` on writes: the same key and request get the answer given the first time.

The request's fingerprint is what makes two requests "the same" for that
operation (e.g. both images' bytes and the subject ref for a create, not the
multipart boundary). A key seen with another fingerprint is refused (422), a
key whose first request is still being answered too (409). Answers are kept
when they are the caller's to keep (2xx and 4xx); a failure on our side (an
exception, a 5xx) forgets the key so that a retry runs again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from store import api_clients

from .clients import ApiClient
from .problems import MEDIA_TYPE, ProblemCode, ProblemError

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
REPLAYED_HEADER = "Idempotent-Replayed"


def fingerprint(operation: str, *parts: Any) -> str:
    """sha256 of the operation and its parts (bytes as their sha256, others as canonical JSON)."""
    digest = hashlib.sha256(operation.encode())
    for part in parts:
        data = part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode()
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


async def answer_once(
    request: Request,
    client: ApiClient,
    key: str | None,
    request_fingerprint: str,
    answer: Callable[[], Awaitable[tuple[int, dict[str, Any]]]],
) -> JSONResponse:
    """``answer()``'s status and body, or the stored answer to this key."""
    if key is None:
        status, body = await answer()
        return _response(status, body)
    if not 0 < len(key) <= MAX_KEY_CHARS:
        raise ProblemError(
            422,
            ProblemCode.REQUEST_INVALID,
            "Invalid Idempotency-Key",
            f"{HEADER} must have 1 to {MAX_KEY_CHARS} characters",
        )
    engine = request.app.state.engine
    record, first = await asyncio.to_thread(
        api_clients.claim_idempotency_key, engine, client.client_id, key, request_fingerprint
    )
    if record.request_sha256 != request_fingerprint:
        raise ProblemError(
            422,
            ProblemCode.IDEMPOTENCY_KEY_REUSED,
            "Idempotency-Key reused",
            f"this {HEADER} was used for another request; use a new key for a new request",
        )
    if record.status_code is not None:
        assert record.body is not None
        return _response(record.status_code, record.body, {REPLAYED_HEADER: "true"})
    if not first:
        raise ProblemError(
            409,
            ProblemCode.IDEMPOTENCY_KEY_IN_FLIGHT,
            "Request in progress",
            f"the first request with this {HEADER} is still being answered; retry later",
        )
    try:
        try:
            status, body = await answer()
        except ProblemError as refusal:
            if refusal.status >= 500:
                raise
            status, body = refusal.status, refusal.body(request)  # the caller's to keep
    except BaseException:  # our failure: a retry with this key runs again
        await asyncio.to_thread(api_clients.release_idempotency_key, engine, client.client_id, key)
        raise
    await asyncio.to_thread(api_clients.record_answer, engine, client.client_id, key, status, body)
    return _response(status, body)


def _response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> JSONResponse:
    media_type = MEDIA_TYPE if status >= 400 else "application/json"
    return JSONResponse(body, status_code=status, media_type=media_type, headers=headers)
