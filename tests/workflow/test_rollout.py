"""Shadow and canary versions on live traffic, and backtests, through the real stack."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from cli.main import run as idflow
from devstack.samples import SamplePair, sample_pairs
from domain.contracts import PurgeRequest, PurgeResult
from domain.enums import QUALITY_TASKS
from domain.reasons import Decision, ReasonCode
from domain.signatures import InputSignature, ModelSignature, OutputSignature
from models.cache import sha256_of
from models.face import FaceModels, decode_image, observe_faces
from models.face.inputs import crop
from models.lifecycle.compare import compare
from models.lifecycle.registry import register_version, resolve_all, set_alias
from models.lifecycle.rollout import set_canary_share
from models.serving import ModelServer
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


def tiny_liveness(folder: Path) -> tuple[Path, ModelSignature]:
    """A real ONNX liveness model with crops of its own: the mean colour (0..1) of a 48x48 RGB
    crop of 1.5x the face box, through fixed weights to two logits. No deciding model cuts
    such crops."""
    weights = np.array([[4.0, -4.0], [-2.0, 2.0], [1.0, -1.0]], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["mean", "weights"], ["logits"]),
        ],
        "tiny-liveness",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 48, 48])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = folder / "tiny-liveness.onnx"
    path.write_bytes(model.SerializeToString())
    signature = ModelSignature(
        [InputSignature("input", "face-box", [48, 48], "RGB", [0.0], [255.0], scale=1.5)],
        OutputSignature("logits", "logits", positive_class=1),
    )
    return path, signature


def test_a_shadow_liveness_version_with_other_crops_is_scored_on_its_own_crops(
    idflow_stack: IdflowStack, same_person: SamplePair, tmp_path: Path
) -> None:
    settings = idflow_stack.settings
    engine = get_engine(settings.database_url)
    path, signature = tiny_liveness(tmp_path)
    tiny = register_version(
        engine,
        settings.model_cache,
        path,
        task="liveness",
        name="tiny-liveness",
        version="1",
        sha256=sha256_of(path),
        licence="test",
        signature=signature,
        caveats="test shadow: mean colour of its own crop",
    )
    set_alias(engine, "liveness", "shadow", tiny.ref, moved_by="test")
    try:
        result = idflow_stack.verify(same_person.selfie, same_person.document)
    finally:  # the other tests' shadow: the production file again
        again = register_production_copy(settings, "liveness", "0.0.1-shadow", "test shadow")
        set_alias(engine, "liveness", "shadow", again.ref, moved_by="test")
    assert result.decision is Decision.APPROVED  # the shadow decides nothing
    assert result.shadow_versions["liveness"] == tiny.ref
    # Its score is that of its own crop of the selfie (1.5x the face box, 48 px), not None.
    with ModelServer(settings.model_cache) as server:
        choices = resolve_all(engine, {})
        models = FaceModels.load(server, {task: choices[task] for task in QUALITY_TASKS})
        image = decode_image(same_person.selfie)
        (face, *_), _ = observe_faces(image, models)
    mean = crop(signature.inputs[0], image, face).reshape(-1, 3).mean(axis=0) / 255
    logits = mean @ np.array([[4.0, -4.0], [-2.0, 2.0], [1.0, -1.0]])
    expected = float(np.exp(logits[1]) / np.exp(logits).sum())
    assert result.shadow_scores["liveness"] == pytest.approx(expected, abs=0.01)
    assert result.shadow_scores["liveness"] != result.scores["liveness"]


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
