"""Shadow and canary versions on live traffic, and backtests, through the real stack."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cli.main import run as idflow
from devstack.samples import SamplePair, sample_pairs
from domain.contracts import PurgeRequest, PurgeResult
from domain.reasons import Decision, ReasonCode
from models.lifecycle.compare import compare
from models.lifecycle.registry import set_alias
from models.lifecycle.rollout import set_canary_share
from store import backtests, shadow_scores
from store.engine import get_engine
from workflows import search_attributes
from workflows.retention import PurgeVerification

from ..support.temporal import (
    IdflowStack,
    corrupted_model_pins,
    grey_zone_pins,
    register_production_copy,
)

pytestmark = [pytest.mark.temporal, pytest.mark.slow]


@pytest.fixture(scope="module")
def same_person(photo_dir: Any) -> SamplePair:
    return sample_pairs(photo_dir)["same person"]


def attributes(stack: IdflowStack, verification_id: str) -> list[str]:
    description = stack.run(stack.client.handle(verification_id).describe())
    return description.typed_search_attributes.get(search_attributes.MODEL_VERSIONS) or []


def test_shadow_versions_score_every_verification_and_decide_nothing(
    idflow_stack: IdflowStack,
    same_person: SamplePair,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = idflow_stack.settings
    engine = get_engine(settings.database_url)
    # The production files again, the embedding with stricter thresholds (accept 0.8): the
    # pair's cosine (~0.73) passes production and would go to review under the shadow.
    strict = register_production_copy(
        settings, "embed", "0.0.1-shadow", "test shadow", {"accept": 0.8, "reject": 0.6}
    )
    liveness = register_production_copy(settings, "liveness", "0.0.1-shadow", "test shadow")
    set_alias(engine, "embed", "shadow", strict.ref, moved_by="test")
    set_alias(engine, "liveness", "shadow", liveness.ref, moved_by="test")

    result = idflow_stack.verify(same_person.selfie, same_person.document)
    assert result.decision is Decision.APPROVED and result.reasons == []
    assert result.shadow_versions == {"embed": strict.ref, "liveness": liveness.ref}
    # Same files, so the same scores: the shadow really ran on this verification's images.
    assert result.shadow_scores == {
        "liveness": result.scores["liveness"],
        "face_match": result.scores["face_match"],
    }
    assert f"shadow:embed:{strict.ref}" in attributes(idflow_stack, result.verification_id)
    rows = {
        row.score_name: row
        for row in shadow_scores.since(engine, datetime.now(UTC) - timedelta(hours=1))
        if row.verification_id == result.verification_id
    }
    assert rows["face_match"].shadow_version == strict.ref
    assert rows["face_match"].deciding_score == result.scores["face_match"]

    (match,) = [
        c
        for c in compare(engine, datetime.now(UTC) - timedelta(hours=1))
        if c.score == "face_match"
    ]
    assert match.count >= 1 and match.band_flips["pass -> uncertain"] >= 1
    assert match.decision_flips["approved -> review"] >= 1

    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    assert idflow(["models", "compare", "--since", "1h"]) == 0
    out = capsys.readouterr().out
    assert f"face_match: faceplugin-fr-feature@0.0.1 (deciding) vs {strict.ref} (shadow)" in out
    assert "decision flips: 1 of 1 (approved -> review 1)" in out
    assert idflow(["models", "compare", "--since", "1h", "--json"]) == 0
    listed = {c["score"]: c for c in json.loads(capsys.readouterr().out)}
    assert listed["liveness"]["decision_flips"] == {} and listed["liveness"]["mean_shift"] == 0

    # A shadow that cannot even load loses its score, nothing else.
    with corrupted_model_pins(settings, "liveness") as broken:
        set_alias(engine, "liveness", "shadow", broken["liveness"], moved_by="test")
        result = idflow_stack.verify(same_person.selfie, same_person.document)
    assert result.decision is Decision.APPROVED
    assert "liveness" not in result.shadow_scores and "face_match" in result.shadow_scores


def test_a_canary_decides_its_share_and_is_recorded(
    idflow_stack: IdflowStack, same_person: SamplePair
) -> None:
    settings = idflow_stack.settings
    engine = get_engine(settings.database_url)
    canary = register_production_copy(settings, "embed", "0.0.1-canary", "test canary")
    set_alias(engine, "embed", "canary", canary.ref, "test", force=True, reason="stack test")
    set_canary_share(engine, "embed", 100, "test")
    try:
        result = idflow_stack.verify(same_person.selfie, same_person.document)
    finally:
        set_canary_share(engine, "embed", 0, "test")
    assert result.decision is Decision.APPROVED
    assert result.model_versions["embed"] == canary.ref and result.canary == ["embed"]
    assert {f"embed:{canary.ref}", "canary:embed"} <= set(
        attributes(idflow_stack, result.verification_id)
    )

    result = idflow_stack.verify(same_person.selfie, same_person.document)
    assert result.model_versions["embed"] == "faceplugin-fr-feature@0.0.1" and result.canary == []


def test_backtest_reports_decision_changes_and_skips_purged_verifications(
    idflow_stack: IdflowStack,
    same_person: SamplePair,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = idflow_stack.settings
    strict = grey_zone_pins(settings)  # the pair's cosine falls in this version's grey zone
    uncertain = [
        idflow_stack.verify(
            same_person.selfie, same_person.document, model_pins=strict, review_deadline_seconds=1
        )
        for _ in range(2)
    ]
    for result in uncertain:
        assert result.decision is Decision.DECLINED
        assert result.reasons == [ReasonCode.FACE_MATCH_UNCERTAIN, ReasonCode.REVIEW_EXPIRED]
    kept, purged = (result.verification_id for result in uncertain)
    purge: PurgeResult = idflow_stack.run(
        idflow_stack.client.temporal.execute_workflow(
            PurgeVerification.run,
            PurgeRequest(purged, "test", "backtest skips purged verifications"),
            id=f"idflow-purge-{purged}",
            task_queue=settings.cpu_task_queue,
        )
    )
    assert purge.blobs_deleted >= 2 and not purge.already_purged  # images (and face crops)

    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    argv = ["models", "backtest", "--candidate", "embed=faceplugin-fr-feature@0.0.1"]
    argv += ["--reasons", "FACE_MATCH_UNCERTAIN", "--since", "1h", "--id", "bt-1"]
    assert idflow([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["selected"], report["rescored"], report["purged"]) == (2, 1, 1)
    assert report["changes"] == {"declined -> approved": 1}
    (change,) = report["changed"]
    assert change["verification_id"] == kept
    assert change["before"] == "declined (FACE_MATCH_UNCERTAIN, REVIEW_EXPIRED)"
    assert change["after"] == "approved"
    assert change["scores_after"]["face_match"] == change["scores_before"]["face_match"]
    assert backtests.get(get_engine(settings.database_url), "bt-1")

    assert idflow(["models", "backtest", "--candidate", "embed=nope@1"]) == 1
    assert "model nope@1 is not registered" in capsys.readouterr().err
