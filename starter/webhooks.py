"""Receive idflow webhooks: check the signature, then read the event.

    from starter.webhooks import SignatureInvalid, verify_webhook

    try:
        event = verify_webhook(secret, request_body_bytes, request.headers["Idflow-Signature"])
    except SignatureInvalid:
        return 400
    if event["type"] == "verification.decided":
        ...  # event["data"]: verification_id, decision, reasons

Pass the raw body as received (not parsed and re-serialised JSON). The
timestamp must be within ``tolerance_seconds`` (default 300) of this host's
clock, which refuses a captured request replayed later. Delivery is at least
once: dedupe on ``event["id"]`` (the ``Idflow-Event-Id`` header).
"""

from __future__ import annotations

import json
from typing import Any

from security.webhook_signatures import DEFAULT_TOLERANCE_SECONDS, HEADER, SignatureInvalid, verify

__all__ = ["DEFAULT_TOLERANCE_SECONDS", "HEADER", "SignatureInvalid", "verify_webhook"]


def verify_webhook(
    secret: str,
    body: bytes,
    signature_header: str,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """The event in ``body`` once ``signature_header`` proves it came from idflow, unchanged
    and recently; ``SignatureInvalid`` otherwise."""
    verify(secret, body, signature_header, tolerance_seconds, now)
    return json.loads(body)
