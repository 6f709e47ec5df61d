"""Idempotency records last ``IDEMPOTENCY_KEEP``: then the key is free again and the row is gone."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlmodel import Session, select

from store import api_clients
from store.api_clients import IDEMPOTENCY_KEEP, IdempotencyRecord
from store.audit import utcnow
from store.engine import ensure_tables, get_engine


def test_a_key_is_kept_for_a_day_then_free_and_its_record_deleted(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'idflow.db'}")
    ensure_tables(engine, IdempotencyRecord)
    start = utcnow()
    _, made = api_clients.claim_idempotency_key(engine, "c1", "k", "request-a", start)
    assert made
    api_clients.record_answer(engine, "c1", "k", 201, {"verification_id": "v-1"})
    _, made = api_clients.claim_idempotency_key(engine, "c2", "old", "x", start)
    assert made

    # Within the day: the same key answers for the first request, whatever comes now.
    later = start + IDEMPOTENCY_KEEP - timedelta(minutes=1)
    kept, made = api_clients.claim_idempotency_key(engine, "c1", "k", "request-b", later)
    assert not made and (kept.request_sha256, kept.status_code) == ("request-a", 201)

    # After it: the key is free for a new request, its old answer is gone.
    after = start + IDEMPOTENCY_KEEP + timedelta(minutes=1)
    fresh, made = api_clients.claim_idempotency_key(engine, "c1", "k", "request-b", after)
    assert made and fresh.status_code is None and fresh.request_sha256 == "request-b"
    with Session(engine) as session:
        rows = {(r.client_id, r.key) for r in session.exec(select(IdempotencyRecord))}
    # Another client's records expire on that client's next claim, not on this one's.
    assert rows == {("c1", "k"), ("c2", "old")}
