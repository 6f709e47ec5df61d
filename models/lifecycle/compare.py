"""``idflow models compare``: what the shadow versions would have changed, over a time window.

For each score (liveness, face match) and pair of versions (deciding ->
shadow): how far the shadow's scores moved, how often the score's band
(pass / uncertain / fail at each version's own thresholds) flipped, and how
often the verification's automatic decision would have flipped had the shadow
decided that check (the other check keeping its deciding score).
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from domain import policy
from domain.contracts import ModelChoice
from domain.errors import ModelUnavailable
from store import shadow_scores
from store.shadow_scores import SCORE_TASKS
from store.verifications import VerificationRecord

from .registry import resolve

_WINDOW = re.compile(r"(\d+(?:\.\d+)?)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_window(text: str) -> timedelta:
    """``30m``, ``24h``, ``7d``, ``2w`` as a timedelta."""
    match = _WINDOW.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"a time window reads like 30m, 24h, 7d or 2w, not {text!r}")
    return timedelta(**{_UNITS[match[2]]: float(match[1])})


@dataclass
class ScoreComparison:
    score: str  # liveness, face_match
    deciding_version: str
    shadow_version: str
    shifts: list[float] = field(default_factory=list)  # shadow - deciding
    band_flips: Counter[str] = field(default_factory=Counter)  # "pass -> uncertain"
    decision_flips: Counter[str] = field(default_factory=Counter)  # "approved -> review"

    @property
    def count(self) -> int:
        return len(self.shifts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "deciding_version": self.deciding_version,
            "shadow_version": self.shadow_version,
            "verifications": self.count,
            "mean_shift": round(statistics.fmean(self.shifts), 4),
            "median_shift": round(statistics.median(self.shifts), 4),
            "max_abs_shift": round(max(abs(s) for s in self.shifts), 4),
            "band_flips": dict(self.band_flips),
            "decision_flips": dict(self.decision_flips),
        }

    def describe(self) -> str:
        d = self.as_dict()

        def flips(counts: Counter[str]) -> str:
            total = sum(counts.values())
            listed = ", ".join(f"{change} {n}" for change, n in sorted(counts.items()))
            return f"{total} of {self.count}" + (f" ({listed})" if listed else "")

        return "\n".join(
            [
                f"{self.score}: {self.deciding_version} (deciding) vs {self.shadow_version} "
                f"(shadow), {self.count} verifications",
                f"  score shift (shadow - deciding): mean {d['mean_shift']:+.4f}, "
                f"median {d['median_shift']:+.4f}, largest {d['max_abs_shift']:.4f}",
                f"  check flips: {flips(self.band_flips)}",
                f"  decision flips: {flips(self.decision_flips)}",
            ]
        )


def compare(engine: Engine, start: datetime) -> list[ScoreComparison]:
    """Every shadow score recorded since ``start``, grouped by score and version pair."""
    rows = shadow_scores.since(engine, start)
    records = _records(engine, {row.verification_id for row in rows})
    choices = _Choices(engine)
    found: dict[tuple[str, str, str], ScoreComparison] = {}
    for row in rows:
        key = (row.score_name, row.deciding_version, row.shadow_version)
        comparison = found.setdefault(key, ScoreComparison(*key))
        comparison.shifts.append(row.shadow_score - row.deciding_score)
        deciding = choices.get(row.task, row.deciding_version)
        shadow = choices.get(row.task, row.shadow_version)
        if not _decides(deciding) or not _decides(shadow):
            continue  # without thresholds there is no band to compare
        before = policy.band(row.deciding_score, deciding)
        after = policy.band(row.shadow_score, shadow)
        if before is not after:
            comparison.band_flips[f"{before.value} -> {after.value}"] += 1
        record = records.get(row.verification_id)
        if record is not None:
            flip = _decision_flip(record, row.score_name, row.shadow_score, shadow, choices)
            if flip is not None:
                comparison.decision_flips[flip] += 1
    return list(found.values())


def _decision_flip(
    record: VerificationRecord,
    name: str,
    shadow_score: float,
    shadow: ModelChoice,
    choices: _Choices,
) -> str | None:
    """ "before -> after" when deciding this check by the shadow changes the automatic outcome."""
    models = {
        score: choices.get(task, record.model_versions.get(task, ""))
        for score, task in SCORE_TASKS.items()
    }
    scores = dict(record.scores)
    if set(scores) < set(SCORE_TASKS) or not all(_decides(m) for m in models.values()):
        return None  # decided before biometrics (quality, rejection): nothing to flip

    def outcome(models: dict[str, ModelChoice], scores: dict[str, float]) -> str:
        decided = policy.biometric_outcome(
            scores["liveness"], models["liveness"], scores["face_match"], models["face_match"]
        )
        return decided.decision.value

    before = outcome(models, scores)
    after = outcome(models | {name: shadow}, scores | {name: shadow_score})
    return None if before == after else f"{before} -> {after}"


def _decides(choice: ModelChoice | None) -> bool:
    return choice is not None and choice.accept is not None and choice.reject is not None


class _Choices:
    """Registered versions (with thresholds) by ref, each read once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._seen: dict[str, ModelChoice | None] = {}

    def get(self, task: str, ref: str) -> ModelChoice | None:
        if ref not in self._seen:
            try:
                self._seen[ref] = resolve(self.engine, task, ref)
            except ModelUnavailable:
                self._seen[ref] = None
        return self._seen[ref]


def _records(engine: Engine, ids: set[str]) -> dict[str, VerificationRecord]:
    if not ids:
        return {}
    query = select(VerificationRecord).where(VerificationRecord.verification_id.in_(ids))  # type: ignore[attr-defined]
    with Session(engine) as session:
        return {row.verification_id: row for row in session.exec(query).all()}
