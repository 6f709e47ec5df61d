"""Activity: check who signed a review, against the staff token store (local, CPU pool).

Runs before the workflow takes a reviewer's decision. Returns the checked
staff id (what the history records as the reviewer); a refusal is appended to
the audit log (``review_refused``, with the claimed staff id and why) and
fails the update with a non-retryable ``REVIEW_UNAUTHORIZED`` error.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.contracts import AuthorizeReviewInput
from security.keys import KeyConfigError
from security.staff_assertions import ReviewRefused, check_review
from security.staff_tokens import load_staff_tokens
from settings import Settings
from store import audit

from . import names

UNAUTHORIZED = "REVIEW_UNAUTHORIZED"
UNKNOWN_ACTOR = "unauthenticated"


class ReviewActivities:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    @activity.defn(name=names.AUTHORIZE_REVIEW)
    def authorize_review(self, request: AuthorizeReviewInput) -> str:
        try:
            # Read on each review: a revoked token stops working without a restart.
            tokens = load_staff_tokens(self.settings)
            return check_review(
                tokens,
                request.workflow_id,
                request.decision,
                datetime.fromisoformat(request.round_opened_at),
                datetime.now(UTC),
            )
        except (ReviewRefused, KeyConfigError) as refused:
            why = str(refused) if isinstance(refused, ReviewRefused) else "no staff tokens"
            info = activity.info()
            audit.append(
                self.engine,
                f"{info.workflow_run_id}:{info.activity_id}",
                request.verification_id,
                "review_refused",
                UNKNOWN_ACTOR,
                claimed_staff_id=request.decision.staff_id[:100],
                why=why,
            )
            raise ApplicationError(why, type=UNAUTHORIZED, non_retryable=True) from None
