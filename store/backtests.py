"""Backtest reports: what a candidate version would have decided on retained verifications.

One row per backtest, written by the ``Backtest`` workflow when it ends
(``idflow models backtest`` prints it). Only ids, decisions, reason codes and
scores: nothing about the people.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel

from domain.contracts import BacktestReport

from .audit import utcnow
from .rows import insert_or_existing


class BacktestReportRecord(SQLModel, table=True):
    __tablename__ = "backtest_reports"

    backtest_id: str = Field(primary_key=True, max_length=80)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def save(engine: Engine, report: BacktestReport) -> None:
    """Keep the report; a retried write keeps the first."""
    row = BacktestReportRecord(backtest_id=report.backtest_id, report=dataclasses.asdict(report))
    insert_or_existing(engine, row)


def get(engine: Engine, backtest_id: str) -> dict[str, Any] | None:
    with Session(engine) as session:
        row = session.get(BacktestReportRecord, backtest_id)
        return dict(row.report) if row else None
