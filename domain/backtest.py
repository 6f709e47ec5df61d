"""The backtest report: what a candidate version would have decided, against what was decided.

Plain functions (stdlib only) that the ``Backtest`` workflow calls and tests
exercise without Temporal. "Before" is the recorded decision (a person's, when
one reviewed it); "after" is the candidate's automatic decision on the same
stored images.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from .contracts import (
    BacktestCase,
    BacktestReport,
    BacktestSelection,
    DecisionChange,
    Rescore,
    RescoreStatus,
)


def _described(decision: str | None, reasons: Iterable[str]) -> str:
    listed = ", ".join(reasons)
    return f"{decision} ({listed})" if listed else str(decision)


def build_report(
    backtest_id: str,
    candidate: dict[str, str],
    selection: BacktestSelection,
    cases: list[BacktestCase],
    rescores: list[Rescore],
) -> BacktestReport:
    """Count every case by what became of it, and list each decision that changed."""
    report = BacktestReport(backtest_id, dict(candidate), selection, selected=len(cases))
    by_id = {case.verification_id: case for case in cases}
    changes: Counter[str] = Counter()
    for rescore in rescores:
        if rescore.status is RescoreStatus.PURGED:
            report.purged += 1
        elif rescore.status is RescoreStatus.UNAVAILABLE:
            report.unavailable += 1
        elif rescore.status is RescoreStatus.FAILED:
            report.failed += 1
        else:
            report.rescored += 1
            case = by_id[rescore.verification_id]
            if rescore.decision == case.decision:
                report.unchanged += 1
                continue
            changes[f"{case.decision} -> {rescore.decision}"] += 1
            report.changed.append(
                DecisionChange(
                    rescore.verification_id,
                    _described(case.decision, case.reasons),
                    _described(rescore.decision, rescore.reasons),
                    dict(case.scores),
                    dict(rescore.scores),
                )
            )
    report.changes = dict(sorted(changes.items()))
    return report


def format_report(report: BacktestReport) -> str:
    """The report for people: counts, then each change."""
    candidate = ", ".join(f"{task} {ref}" for task, ref in sorted(report.candidate.items()))
    selection = report.selection
    lines = [
        f"backtest {report.backtest_id}: {candidate}",
        f"selected {report.selected} verifications decided since {selection.decided_after}"
        + (f" with {' or '.join(selection.reasons)}" if selection.reasons else "")
        + (f", decision {selection.decision}" if selection.decision else ""),
        f"rescored {report.rescored}: {report.unchanged} unchanged, "
        f"{report.rescored - report.unchanged} changed",
        f"skipped {report.purged} purged (images crypto-shredded), "
        f"{report.unavailable} without history or images, {report.failed} failed",
    ]
    lines += [f"  {change}: {count}" for change, count in report.changes.items()]
    for change in report.changed:
        lines.append(f"  {change.verification_id}: {change.before} -> {change.after}")
    return "\n".join(lines)
