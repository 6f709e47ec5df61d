"""Signed reviews: only a staff member with the review role, for this verification, now."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from security.staff_assertions import ReviewRefused, check_review, sign_review
from security.staff_tokens import StaffTokens

RITA = "rita-token-0123456789abcdef"  # reviewer
DORA = "dora-token-0123456789abcdef"  # decode only
TOKENS = StaffTokens.from_entries(
    {"rita": (RITA, frozenset({"review"})), "dora": (DORA, frozenset({"decode"}))}, "test"
)
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
OPENED = NOW - timedelta(hours=1)


def _check(decision, workflow_id: str = "idv-1", now: datetime = NOW) -> str:
    return check_review(TOKENS, workflow_id, decision, OPENED, now)


def test_a_reviewer_signs_and_the_checked_id_is_theirs() -> None:
    decision = sign_review(RITA, "rita", "idv-1", True, "portrait matches", now=NOW)
    assert _check(decision) == "rita"


@pytest.mark.parametrize(
    "change, why",
    [
        ({"approve": False}, "does not verify"),  # the decision was altered
        ({"reason": "other"}, "does not verify"),
        ({"staff_id": "dora"}, "does not verify"),  # claims to be someone else
        ({"staff_id": "mallory"}, "unknown staff member"),
        ({"signature": ""}, "not signed"),
        ({"staff_id": "", "signature": ""}, "not signed"),
    ],
)
def test_altered_or_unsigned_reviews_are_refused(change: dict, why: str) -> None:
    decision = sign_review(RITA, "rita", "idv-1", True, "portrait matches", now=NOW)
    with pytest.raises(ReviewRefused, match=why):
        _check(dataclasses.replace(decision, **change))


def test_a_signature_for_another_verification_is_refused() -> None:
    decision = sign_review(RITA, "rita", "idv-other", True, "ok", now=NOW)
    with pytest.raises(ReviewRefused, match="does not verify for this verification"):
        _check(decision)


def test_staff_without_the_review_role_cannot_review() -> None:
    with pytest.raises(ReviewRefused, match="dora may not review"):
        _check(sign_review(DORA, "dora", "idv-1", True, "ok", now=NOW))


def test_stale_or_earlier_round_signatures_are_refused() -> None:
    old = sign_review(RITA, "rita", "idv-1", True, "ok", now=OPENED - timedelta(minutes=5))
    with pytest.raises(ReviewRefused, match="before this review round opened"):
        _check(old)
    signed = sign_review(RITA, "rita", "idv-1", True, "ok", now=NOW)
    with pytest.raises(ReviewRefused, match="stale"):
        _check(signed, now=NOW + timedelta(minutes=11))
