"""Retention of personal data: how long a verification's blobs live, and purging them.

Each verification's personal data (images, holder data: device binding and
claims, issued credential) is kept for ``IDFLOW_RETENTION_DAYS`` (default 30)
from its first stored blob, or for a per-verification period set with
``set_retention``. Then the retention schedule (``workers.schedules`` starts
``workflows.retention``) purges it; ``idflow purge ID`` does so at once. A
purge erases the record's subject reference and the request's digests (the
create draft), destroys the verification's data
key (crypto-shredding), deletes its blob files and appends a ``purged`` audit
entry. What stays: the verification's record (decision, reason codes, scores,
model versions), its audit trail and its Temporal history, which holds only
references to what was destroyed and still replays.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine

from domain.contracts import PurgeRequest, PurgeResult
from store import audit, data_keys, drafts, verifications
from store.audit import utcnow
from store.blobs import BlobStore


def purge(engine: Engine, blobs: BlobStore, request: PurgeRequest) -> PurgeResult:
    """Shred the data key, delete the blobs, audit it. Idempotent."""
    row = data_keys.get(engine, request.verification_id)
    already_purged = row is not None and row.purged
    # The subject reference and the request's digests link the record to a person:
    # they go too (before the key is shredded, whose checkpoint also wipes the old
    # rows from the files).
    verifications.forget_subject(engine, request.verification_id)
    drafts.forget(engine, request.verification_id)
    deleted = blobs.delete_verification(request.verification_id, reason=request.reason)
    if not already_purged:
        audit.append(
            engine,
            f"{request.verification_id}:purged",
            request.verification_id,
            "purged",
            request.actor,
            reason=request.reason,
            blobs_deleted=deleted,
        )
    return PurgeResult(request.verification_id, deleted, already_purged)


def expired(engine: Engine, limit: int) -> list[str]:
    """Verifications whose retention period has ended and whose data still exists."""
    return data_keys.expired(engine, utcnow(), limit)


def set_retention(engine: Engine, verification_id: str, days: float) -> bool:
    """Keep a verification's personal data ``days`` from now instead; False if none is kept."""
    return data_keys.set_retain_until(engine, verification_id, utcnow() + timedelta(days=days))


def personal_data_status(engine: Engine, verification_id: str) -> str | None:
    """One line for ``idflow status``: kept until when, or purged when and why."""
    row = data_keys.get(engine, verification_id)
    if row is None:
        return None
    if row.purged_at is not None:
        return (
            f"purged {row.purged_at:%Y-%m-%d %H:%M} UTC ({row.purge_reason}): images can no "
            f"longer be read; record, audit trail and history remain"
        )
    return f"kept until {row.retain_until:%Y-%m-%d %H:%M} UTC"
