"""Insert a row once: the first writer wins; a repeated or concurrent insert gets the row
that holds."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel

Row = TypeVar("Row", bound=SQLModel)


def insert_or_existing(engine: Engine, row: Row) -> Row:
    """Insert ``row``; when one with its primary key exists already, return that one instead.

    ``result is row`` tells the caller whether this call inserted it. An
    integrity error with no such row (another constraint failed) is raised.
    """
    model = type(row)
    key = inspect(model).primary_key_from_instance(row)
    with Session(engine) as session:
        session.add(row)
        try:
            session.commit()
            session.refresh(row)
            return row
        except IntegrityError:  # a retry, or another process, inserted it first: theirs holds
            session.rollback()
            existing = session.get(model, key)
            if existing is None:
                raise
            return existing
