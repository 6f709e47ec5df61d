"""One SQLAlchemy engine per database URL, with the store's tables created.

SQLite is the embedded default; any SQLAlchemy URL (e.g.
``postgresql+psycopg://...``) selects another database.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, create_engine

from settings.files import private_dir
from store.api_clients import ApiClientRecord, IdempotencyRecord
from store.audit import AuditEntry
from store.backtests import BacktestReportRecord
from store.credentials import CredentialNonce, IssuedCredentialRecord
from store.data_keys import DataKeyRecord
from store.drafts import DraftRecord
from store.shadow_scores import ShadowScore
from store.verifications import VerificationRecord
from store.webhooks import WEBHOOK_TABLES


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != prefix + ":memory:":
        return Path(url[len(prefix) :])
    return None


_STORE_TABLES = (
    VerificationRecord,
    AuditEntry,
    IssuedCredentialRecord,
    CredentialNonce,
    DataKeyRecord,
    DraftRecord,
    ShadowScore,
    BacktestReportRecord,
    ApiClientRecord,
    IdempotencyRecord,
    *WEBHOOK_TABLES,
)


@functools.cache
def get_engine(url: str) -> Engine:
    """The engine for ``url``, its tables created on first use."""
    sqlite_file = _sqlite_path(url)
    if sqlite_file is not None:
        private_dir(sqlite_file.parent)
        # SQLite creates -wal and -shm with the database file's mode: the owner's only.
        os.close(os.open(sqlite_file, os.O_CREAT | os.O_WRONLY, 0o600))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        # WAL lets workers in several processes read while one writes.
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # Deleted or overwritten content is zeroed, not left in free space: a
            # shredded data key must leave no copy in the file (store.data_keys.destroy).
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    SQLModel.metadata.create_all(engine, tables=[model.__table__ for model in _STORE_TABLES])
    return engine


def ensure_tables(engine: Engine, *tables: type[SQLModel]) -> None:
    """Create the tables of a room above store/ (models.lifecycle), once per engine.

    store/ must not import the rooms that use it, so those create their own
    tables on first use instead of being imported here.
    """
    missing = [table for table in tables if (engine, table) not in _created]
    if missing:
        SQLModel.metadata.create_all(engine, tables=[table.__table__ for table in missing])
        _created.update((engine, table) for table in missing)


_created: set[tuple[Engine, type[SQLModel]]] = set()
