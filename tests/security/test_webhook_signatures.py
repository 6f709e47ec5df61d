"""Webhook signatures: what the receiver's helper accepts and refuses."""

from __future__ import annotations

import json

import pytest

from security.webhook_signatures import sign
from starter.webhooks import SignatureInvalid, verify_webhook

SECRET = "whsec_test-secret"
BODY = json.dumps({"id": "evt_1", "type": "verification.decided"}).encode()
SIGNED_AT = 1_764_797_400


def test_a_signed_body_verifies_and_reads_as_the_event() -> None:
    header = sign(SECRET, BODY, SIGNED_AT)
    assert header.startswith(f"t={SIGNED_AT},v1=")
    event = verify_webhook(SECRET, BODY, header, now=SIGNED_AT + 299)
    assert event == {"id": "evt_1", "type": "verification.decided"}


@pytest.mark.parametrize(
    ("secret", "body", "now", "why"),
    [
        (SECRET, BODY.replace(b"decided", b"decidee"), SIGNED_AT, "no signature matches"),
        (SECRET, BODY + b" ", SIGNED_AT, "no signature matches"),
        ("whsec_another", BODY, SIGNED_AT, "no signature matches"),
        (SECRET, BODY, SIGNED_AT + 301, "more than 300 s"),  # replayed later
        (SECRET, BODY, SIGNED_AT - 301, "more than 300 s"),  # from a skewed clock
    ],
)
def test_tampered_foreign_or_stale_deliveries_are_refused(
    secret: str, body: bytes, now: int, why: str
) -> None:
    with pytest.raises(SignatureInvalid, match=why):
        verify_webhook(secret, body, sign(SECRET, BODY, SIGNED_AT), now=now)


def test_the_signed_timestamp_cannot_be_moved() -> None:
    v1 = sign(SECRET, BODY, SIGNED_AT).split(",")[1]
    with pytest.raises(SignatureInvalid, match="no signature matches"):
        verify_webhook(SECRET, BODY, f"t={SIGNED_AT + 600},{v1}", now=SIGNED_AT + 600)


def test_the_tolerance_is_the_receivers_choice() -> None:
    header = sign(SECRET, BODY, SIGNED_AT)
    assert verify_webhook(SECRET, BODY, header, tolerance_seconds=3600, now=SIGNED_AT + 3000)
    with pytest.raises(SignatureInvalid):
        verify_webhook(SECRET, BODY, header, tolerance_seconds=60, now=SIGNED_AT + 61)


@pytest.mark.parametrize(
    "header", ["", "t=1764797400", "v1=00", "t=soon,v1=00", "garbage", "t=1764797400,v0=00"]
)
def test_malformed_headers_are_refused(header: str) -> None:
    with pytest.raises(SignatureInvalid):
        verify_webhook(SECRET, BODY, header, now=SIGNED_AT)


def test_any_matching_v1_passes_and_unknown_schemes_are_ignored() -> None:
    good = sign(SECRET, BODY, SIGNED_AT).split(",")[1]
    header = f"t={SIGNED_AT},v2=whatever,v1={'0' * 64},{good}"
    assert verify_webhook(SECRET, BODY, header, now=SIGNED_AT)["id"] == "evt_1"
