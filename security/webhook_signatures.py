"""Webhook signatures: HMAC-SHA256 over ``timestamp + "." + body``, in Stripe's header format.

    Idflow-Signature: t=1764797400,v1=5257a869e7ec...d8bd   (64 hex digits)

``t`` is the sending time (Unix seconds) and ``v1`` the hex HMAC-SHA256 of
``f"{t}.".encode() + body`` under the endpoint's signing secret. Each attempt
is signed anew, so ``t`` is the attempt's time. A receiver recomputes the
HMAC over the raw body it received (before any JSON parsing), compares it in
constant time with every ``v1`` in the header, and refuses a ``t`` further
than its tolerance from its own clock (a replayed old request). Unknown
schemes (a future ``v2``) are ignored, so a header may carry more than one
during a change of scheme.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Idflow-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureInvalid(ValueError):
    """The header is malformed, no signature matches, or the timestamp is outside tolerance."""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Idflow-Signature`` header value for ``body``, signed now (or at ``timestamp``)."""
    signed_at = int(time.time()) if timestamp is None else timestamp
    return f"t={signed_at},{SCHEME}={_digest(secret, signed_at, body)}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check ``header`` against the raw ``body``; returns its timestamp, or raises
    ``SignatureInvalid``."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureInvalid("the signature's timestamp is not an integer") from None
        elif name == SCHEME:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureInvalid(f"the header needs t=<timestamp> and {SCHEME}=<signature>")
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance_seconds:
        raise SignatureInvalid(
            f"the signature's timestamp is more than {tolerance_seconds} s from now"
        )
    expected = _digest(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, signature) for signature in signatures):
        raise SignatureInvalid("no signature matches the body under this secret")
    return timestamp
