"""Shadow and canary: new versions meet live traffic before they decide all of it.

- ``shadow`` alias of a task: its version scores every verification beside the
  deciding one, in the same GPU activity; the scores are recorded, the decision
  is untouched (``idflow models compare`` reports what it would have changed).
- ``canary`` alias with a share (percent): its version decides that share of
  verifications instead of production. Which ones is a pure function of the
  verification id (``in_canary``), so a retried or replayed verification meets
  the same version, and the same id always gets the same choice.

A task pinned by the request (``model_pins``) gets exactly its pin: no canary,
and no shadow either (a pinned run is a deliberate experiment already).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import DateTime
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from domain.contracts import ModelChoice, ResolvedModels
from domain.enums import DECIDING_TASKS
from domain.errors import ModelUnavailable
from store.audit import utcnow
from store.engine import ensure_tables

from .registry import (
    CANARY,
    SHADOW,
    AliasMove,
    InvalidRegistration,
    ModelAlias,
    ModelVersion,
    resolve_all,
)
from .registry import resolve as resolve_pin

BUCKETS = 10_000  # shares in steps of 0.01 %


class CanaryShare(SQLModel, table=True):
    """The percentage of verifications the canary alias of a task decides."""

    __tablename__ = "model_canary_shares"

    task: str = Field(primary_key=True, max_length=32)
    percent: float
    set_by: str = Field(max_length=200)
    set_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


def _session(engine: Engine) -> Session:
    ensure_tables(engine, CanaryShare)
    return Session(engine)


def bucket(verification_id: str) -> int:
    """Where a verification id falls in 0..BUCKETS-1: uniform, and the same everywhere."""
    digest = hashlib.sha256(f"idflow-canary:{verification_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_canary(verification_id: str, percent: float) -> bool:
    """Whether the canary decides this verification when it takes ``percent`` of them."""
    return bucket(verification_id) < round(percent * BUCKETS / 100)


def set_canary_share(engine: Engine, task: str, percent: float, set_by: str) -> float:
    """Give the canary of ``task`` ``percent`` of verifications; the alias history records it.

    Returns the share it had before. The canary alias must exist (move it first,
    which the promotion gate checks).
    """
    if not 0 <= percent <= 100:
        raise InvalidRegistration(f"a canary share is a percentage 0..100, not {percent}")
    if not set_by.strip():
        raise InvalidRegistration("say who sets the canary share")
    with _session(engine) as session:
        alias = session.get(ModelAlias, (task, CANARY))
        if alias is None:
            raise InvalidRegistration(
                f"task {task!r} has no canary alias: point it at a version first"
            )
        ref = session.get(ModelVersion, alias.version_id).ref
        share = session.get(CanaryShare, task) or CanaryShare(task=task, percent=0, set_by=set_by)
        before = share.percent
        if before == percent:
            return before
        now = utcnow()
        share.percent, share.set_by, share.set_at = percent, set_by, now
        session.add(share)
        session.add(
            AliasMove(
                task=task,
                alias=CANARY,
                target=ref,
                previous=ref,
                moved_by=set_by,
                moved_at=now,
                note=f"share {before:g}% -> {percent:g}%",
            )
        )
        session.commit()
        return before


def canary_shares(engine: Engine) -> dict[str, float]:
    with _session(engine) as session:
        return {row.task: row.percent for row in session.exec(select(CanaryShare)).all()}


def resolve_verification(
    engine: Engine, verification_id: str, pins: dict[str, str]
) -> ResolvedModels:
    """The deciding versions of one verification (canary applied), and its shadows."""
    deciding = resolve_all(engine, pins)
    shares = canary_shares(engine)
    shadow, canary = {}, []
    for task in DECIDING_TASKS:
        if task in pins:
            continue
        if in_canary(verification_id, shares.get(task, 0.0)):
            deciding[task] = _alias_or_none(engine, task, CANARY) or deciding[task]
            canary += [task] if deciding[task].alias == CANARY else []
        candidate = _alias_or_none(engine, task, SHADOW)
        if candidate is not None and candidate.ref != deciding[task].ref:
            shadow[task] = candidate
    return ResolvedModels(deciding, shadow, canary)


def _alias_or_none(engine: Engine, task: str, alias: str) -> ModelChoice | None:
    try:
        return resolve_pin(engine, task, alias)
    except ModelUnavailable:
        return None
