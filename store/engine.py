"""One SQLAlchemy engine per database URL, with every idflow table created.

SQLite is the embedded default; any SQLAlchemy URL (e.g.
``postgresql+psycopg://...``) selects another database.
"""

from __future__ import annotations

import functools
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, create_engine


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != prefix + ":memory:":
        return Path(url[len(prefix) :])
    return None


@functools.cache
def get_engine(url: str) -> Engine:
    """The engine for ``url``, its tables created on first use."""
    sqlite_file = _sqlite_path(url)
    if sqlite_file is not None:
        sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        # WAL lets workers in several processes read while one writes.
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    _import_table_modules()
    SQLModel.metadata.create_all(engine)
    return engine


def _import_table_modules() -> None:
    """Import every module that declares tables so create_all sees them all."""
    import importlib

    for module in TABLE_MODULES:
        importlib.import_module(module)


# Modules that define SQLModel tables; each role adds its own here.
TABLE_MODULES: list[str] = [
    "store.verifications",
    "store.audit",
    "models.lifecycle.registry",
    "store.credentials",
    "store.data_keys",
]
