"""The backtest report, without Temporal: counts by outcome and each decision that changed."""

from __future__ import annotations

from domain.backtest import build_report, format_report
from domain.contracts import BacktestCase, BacktestSelection, Rescore, RescoreStatus


def case(vid: str, decision: str, *reasons: str) -> BacktestCase:
    return BacktestCase(vid, f"idv-{vid}", decision, list(reasons), {"face_match": 0.5}, False)


def test_report_counts_every_case_and_lists_changes() -> None:
    cases = [
        case("a", "review", "FACE_MATCH_UNCERTAIN"),
        case("b", "review", "FACE_MATCH_UNCERTAIN"),
        case("c", "approved"),
        case("d", "declined", "FACE_MISMATCH"),
        case("e", "review"),
        case("f", "review"),
    ]
    rescores = [
        Rescore("a", RescoreStatus.RESCORED, "approved", [], {"face_match": 0.6}),
        Rescore("b", RescoreStatus.RESCORED, "declined", ["FACE_MISMATCH"], {"face_match": 0.1}),
        Rescore("c", RescoreStatus.RESCORED, "approved", [], {"face_match": 0.9}),
        Rescore("d", RescoreStatus.PURGED),
        Rescore("e", RescoreStatus.UNAVAILABLE),
        Rescore("f", RescoreStatus.FAILED),
    ]
    selection = BacktestSelection("2026-12-01T00:00:00+00:00", ["FACE_MATCH_UNCERTAIN"], None, 10)
    report = build_report("bt", {"embed": "x@2"}, selection, cases, rescores)
    assert (report.selected, report.rescored, report.unchanged) == (6, 3, 1)
    assert (report.purged, report.unavailable, report.failed) == (1, 1, 1)
    assert report.changes == {"review -> approved": 1, "review -> declined": 1}
    assert [(c.verification_id, c.before, c.after) for c in report.changed] == [
        ("a", "review (FACE_MATCH_UNCERTAIN)", "approved"),
        ("b", "review (FACE_MATCH_UNCERTAIN)", "declined (FACE_MISMATCH)"),
    ]
    text = format_report(report)
    assert "rescored 3: 1 unchanged, 2 changed" in text
    assert (
        "skipped 1 purged (images crypto-shredded), 1 without history or images, 1 failed" in text
    )
    assert "  review -> approved: 1" in text
