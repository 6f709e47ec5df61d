"""Signed staff decisions: who reviews is proven, never typed.

Anyone who can send a Temporal update could otherwise approve a verification
under any name. So a review carries an assertion the staff member signs with
the key derived from their staff token (``security.staff_tokens``)::

    HMAC-SHA256(assertion_key(token), ["idflow-review/v1", workflow id, staff id,
                                        approve, reason, signed_at])

and the CPU worker (which holds the staff token store) checks it before the
workflow accepts the review (``check_review``): the staff member exists, has
the ``review`` role, the signature matches this workflow and this decision,
and it was signed during the current review round and not long ago (so an
assertion seen once cannot be replayed into another round or workflow). The
reviewer id the history records is the checked member's id.

The signature binds the workflow id, so it says nothing about any other
verification; the token itself never leaves the staff member's machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

from domain.contracts import ReviewDecision

from .staff_tokens import REVIEW, StaffTokens, assertion_key

CLOCK_SKEW = timedelta(seconds=60)
VALID_FOR = timedelta(minutes=10)


class ReviewRefused(Exception):
    """The review's assertion does not prove a reviewer; the message says why (no secrets)."""


def _signing_input(workflow_id: str, decision: ReviewDecision) -> bytes:
    fields = [
        "idflow-review/v1",
        workflow_id,
        decision.staff_id,
        decision.approve,
        decision.reason,
        decision.signed_at,
    ]
    return json.dumps(fields, separators=(",", ":")).encode()


def _mac(key: bytes, workflow_id: str, decision: ReviewDecision) -> str:
    return hmac.new(key, _signing_input(workflow_id, decision), hashlib.sha256).hexdigest()


def sign_review(
    token: str,
    staff_id: str,
    workflow_id: str,
    approve: bool,
    reason: str,
    now: datetime | None = None,
) -> ReviewDecision:
    """The review update's payload, signed by the holder of ``token``."""
    moment = (now or datetime.now(UTC)).astimezone(UTC).isoformat()
    unsigned = ReviewDecision(approve=approve, reason=reason, staff_id=staff_id, signed_at=moment)
    return dataclasses.replace(
        unsigned, signature=_mac(assertion_key(token), workflow_id, unsigned)
    )


def check_review(
    tokens: StaffTokens,
    workflow_id: str,
    decision: ReviewDecision,
    round_opened_at: datetime,
    now: datetime,
) -> str:
    """The staff id of the member who signed ``decision``; ``ReviewRefused`` otherwise."""
    if not decision.staff_id or not decision.signature:
        raise ReviewRefused("the review is not signed by a staff member")
    member = tokens.member(decision.staff_id)
    if member is None:
        raise ReviewRefused("the review is signed for an unknown staff member")
    expected = _mac(member.assertion_key, workflow_id, decision)
    if not hmac.compare_digest(expected, decision.signature):
        raise ReviewRefused("the review's signature does not verify for this verification")
    if REVIEW not in member.roles:
        raise ReviewRefused(f"staff member {member.staff_id} may not review")
    try:
        signed_at = datetime.fromisoformat(decision.signed_at)
    except ValueError:
        raise ReviewRefused("the review's signing time is not ISO 8601") from None
    if signed_at.tzinfo is None:
        raise ReviewRefused("the review's signing time has no time zone")
    if signed_at < round_opened_at - CLOCK_SKEW:
        raise ReviewRefused("the review was signed before this review round opened")
    if signed_at > now + CLOCK_SKEW or now - signed_at > VALID_FOR:
        raise ReviewRefused("the review's signature is stale or from the future")
    return member.staff_id
