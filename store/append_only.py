"""Tables the database itself keeps append-only: triggers refuse UPDATE and DELETE.

A convention ("rows are only ever appended") holds only for code that follows
it; the triggers also stop a stray SQL session or another program. They are
created with the table (SQLite and PostgreSQL), so a database whose table
existed before a model was marked append-only gets them only on a fresh schema.
"""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import DDL, event
from sqlmodel import SQLModel

Model = TypeVar("Model", bound=type[SQLModel])


def _statements(table: str) -> dict[str, list[str]]:
    """The trigger DDL for ``table`` per dialect; the error names the table."""
    refusal = f"{table} is append-only"
    return {
        "sqlite": [
            f"CREATE TRIGGER {table}_no_{op} BEFORE {op.upper()} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{refusal}'); END"
            for op in ("update", "delete")
        ],
        "postgresql": [
            f"CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql "
            f"AS $$ BEGIN RAISE EXCEPTION '{refusal}'; END $$",
            *(
                f"CREATE TRIGGER {table}_no_{op} BEFORE {op.upper()} ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
                for op in ("update", "delete")
            ),
        ],
    }


def append_only(model: Model) -> Model:
    """Class decorator for a table model: the database refuses UPDATE and DELETE on its rows."""
    table = model.__table__  # type: ignore[attr-defined]
    for dialect, statements in _statements(table.name).items():
        for statement in statements:
            event.listen(table, "after_create", DDL(statement).execute_if(dialect=dialect))
    return model
