"""The data_keys table: one wrapped data key per verification, and its retention.

A verification's blobs (images, issued credential) are encrypted with its own
data key; the row holds that key wrapped by a blob master key
(``store.envelope``), never the key itself. Destroying the wrapped key
(crypto-shredding) makes every copy of those blobs unreadable, wherever the
ciphertext lives (disk, object store, backups of either). The row stays as a
tombstone: when, and why, the personal data was purged.

The keys live in the database rather than beside the blobs because deletion
there is one transaction, independent of how the blob storage keeps (or
versions, or backs up) files, and because the row also carries the
retention deadline that the retention sweep queries.
"""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import Column, LargeBinary, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from .audit import utcnow
from .rows import insert_or_existing


class DataKeyRecord(SQLModel, table=True):
    __tablename__ = "data_keys"

    verification_id: str = Field(primary_key=True, max_length=64)
    master_key_id: str | None = Field(default=None, max_length=64)
    wrapped_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    retain_until: datetime = Field(index=True)
    purged_at: datetime | None = Field(default=None, index=True)
    purge_reason: str | None = Field(default=None, max_length=200)

    @property
    def purged(self) -> bool:
        return self.purged_at is not None


def get(engine: Engine, verification_id: str) -> DataKeyRecord | None:
    with Session(engine) as session:
        return session.get(DataKeyRecord, verification_id)


def insert_if_absent(engine: Engine, row: DataKeyRecord) -> DataKeyRecord:
    """Insert ``row`` unless the verification has one; returns the row that holds."""
    return insert_or_existing(engine, row)


def destroy(engine: Engine, verification_id: str, reason: str, retain_until: datetime) -> bool:
    """Erase the wrapped key (a tombstone row if there was none); False if already purged."""
    now = utcnow()
    insert_if_absent(
        engine, DataKeyRecord(verification_id=verification_id, retain_until=retain_until)
    )
    changed = _update_live(
        engine,
        verification_id,
        wrapped_key=None,
        master_key_id=None,
        purged_at=now,
        purge_reason=reason,
    )
    _wipe_old_copies(engine)  # no copy of the wrapped key left in -wal or free space
    return changed


def _wipe_old_copies(engine: Engine, attempts: int = 50) -> bool:
    """Make overwritten rows unrecoverable from the database files; True when done.

    SQLite (WAL mode) keeps earlier versions of changed pages in ``-wal`` until
    a checkpoint copies the newest into the database; ``secure_delete`` (set on
    every connection, ``store.engine``) zeroes freed bytes there, and
    ``wal_checkpoint(TRUNCATE)`` empties the WAL file. A reader still inside a
    transaction makes the checkpoint busy: retried for up to ``attempts`` × 0.1 s.
    PostgreSQL keeps dead row versions until vacuum and WAL segments until
    recycled: there, rotating the blob master key (and dropping the old one)
    is what makes lingering wrapped keys useless.
    """
    if engine.dialect.name != "sqlite":
        return False
    with engine.connect() as connection:
        for _ in range(attempts):
            busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()[0]
            if not busy:
                return True
            time.sleep(0.1)
    return False


def set_retain_until(engine: Engine, verification_id: str, retain_until: datetime) -> bool:
    """Move a live verification's retention deadline; False if unknown or already purged."""
    return _update_live(engine, verification_id, retain_until=retain_until)


def _update_live(engine: Engine, verification_id: str, **values: object) -> bool:
    """Set ``values`` on the verification's key row unless it is purged; True if it changed."""
    with Session(engine) as session:
        changed = (
            session.connection()
            .execute(
                update(DataKeyRecord)
                .where(DataKeyRecord.verification_id == verification_id)
                .where(DataKeyRecord.purged_at.is_(None))  # type: ignore[union-attr]
                .values(**values)
            )
            .rowcount
        )
        session.commit()
    return bool(changed)


def expired(engine: Engine, now: datetime, limit: int) -> list[str]:
    """Ids of verifications whose retention ended and whose key still exists, oldest first."""
    with Session(engine) as session:
        query = (
            select(DataKeyRecord.verification_id)
            .where(DataKeyRecord.purged_at.is_(None))  # type: ignore[union-attr]
            .where(DataKeyRecord.retain_until <= now)
            .order_by(DataKeyRecord.retain_until)
            .limit(limit)
        )
        return list(session.exec(query))


def live_wrapped_by_other_than(engine: Engine, master_key_id: str) -> list[DataKeyRecord]:
    """Live rows wrapped by a master key other than ``master_key_id`` (to re-wrap them)."""
    with Session(engine) as session:
        query = (
            select(DataKeyRecord)
            .where(DataKeyRecord.purged_at.is_(None))  # type: ignore[union-attr]
            .where(DataKeyRecord.master_key_id != master_key_id)
        )
        return list(session.exec(query))


def replace_wrapping(
    engine: Engine, verification_id: str, old_master_key_id: str, master_key_id: str, wrapped: bytes
) -> bool:
    """Store a re-wrapped key, unless the row changed (purged or re-wrapped) meanwhile."""
    with Session(engine) as session:
        changed = (
            session.connection()
            .execute(
                update(DataKeyRecord)
                .where(DataKeyRecord.verification_id == verification_id)
                .where(DataKeyRecord.master_key_id == old_master_key_id)
                .where(DataKeyRecord.purged_at.is_(None))  # type: ignore[union-attr]
                .values(master_key_id=master_key_id, wrapped_key=wrapped)
            )
            .rowcount
        )
        session.commit()
    return bool(changed)
