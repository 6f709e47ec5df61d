"""Promotion gated on evidence: evaluations kept per version, targets, overrides on the record."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from cli.main import run as idflow
from domain.signatures import ModelSignature
from models.cache import model_file
from models.lifecycle.cards import card_path
from models.lifecycle.evaluate import evaluate
from models.lifecycle.evaluations import history
from models.lifecycle.registry import (
    InvalidRegistration,
    PromotionRefused,
    alias_history,
    get_version,
    register_version,
    resolve,
    set_alias,
    signature_of,
)
from models.lifecycle.targets import TARGETS, Target, check

PRODUCTION_LIVENESS = "faceplugin-fr-liveness@0.0.1"
# The liveness targets, but measurable on a 2 + 2 set: the gate's mechanics on a real evaluation.
SMALL_SET_TARGETS = {
    "liveness": tuple(dataclasses.replace(t, min_samples=2) for t in TARGETS["liveness"])
}


def quiet(_: str) -> None:
    pass


@pytest.fixture
def candidate(model_registry_engine: Engine, scratch_cache: Path) -> str:
    """The production liveness file registered again as a new version: it has no evaluation."""
    base = get_version(model_registry_engine, PRODUCTION_LIVENESS)
    choice = register_version(
        model_registry_engine,
        scratch_cache,
        model_file(scratch_cache, base.name, base.version, base.sha256),
        task="liveness",
        name=base.name,
        version="0.0.2-candidate",
        sha256=base.sha256,
        licence=base.licence,
        signature=signature_of(model_registry_engine, base.ref),
        thresholds=dict(base.thresholds),
    )
    return choice.ref


def test_targets_pass_fail_and_need_enough_samples() -> None:
    target = Target("attacks approved", ("at_accept", "apcer"), 0.05, "attacks", 20)
    met, missed, too_few = (
        check({"attacks": 40, "at_accept": {"apcer": 0.05}}, (target,))[0],
        check({"attacks": 40, "at_accept": {"apcer": 0.075}}, (target,))[0],
        check({"attacks": 19, "at_accept": {"apcer": 0.0}}, (target,))[0],
    )
    assert (met.passed, missed.passed, too_few.passed) == (True, False, False)
    assert "7.50% (target <= 5.00%)" in missed.describe()
    assert "not measurable on 19 attacks" in too_few.describe()
    assert not check({"attacks": 40}, (target,))[0].passed  # no threshold, nothing measured


def test_production_moves_only_to_a_version_whose_evaluation_meets_the_targets(
    model_registry_engine: Engine, scratch_cache: Path, small_liveness_set: Path, candidate: str
) -> None:
    engine = model_registry_engine
    with pytest.raises(PromotionRefused, match="it has no recorded evaluation"):
        set_alias(engine, "liveness", "production", candidate, moved_by="ann")

    # The targets cannot be shown on 2 + 2 presentations: recorded, and not enough.
    first = evaluate(
        engine,
        scratch_cache,
        "liveness",
        small_liveness_set,
        candidate,
        progress=quiet,
        split=False,
    )
    assert not first.passed and first.record is not None and not first.record.passed
    with pytest.raises(PromotionRefused, match="not measurable on 2 attacks_judged"):
        set_alias(engine, "liveness", "production", candidate, moved_by="ann")

    second = evaluate(
        engine,
        scratch_cache,
        "liveness",
        small_liveness_set,
        candidate,
        progress=quiet,
        name="two-and-two",
        evaluated_by="ann",
        targets=SMALL_SET_TARGETS,
        split=False,
    )
    assert second.passed and second.dataset_digest == first.dataset_digest  # same content
    moved = set_alias(
        engine, "liveness", "production", candidate, moved_by="ann", targets=SMALL_SET_TARGETS
    )
    assert resolve(engine, "liveness", "production").ref == moved.ref == candidate
    (move,) = alias_history(engine, "liveness", "production")[1:]
    assert move.note == (
        f"evidence: evaluation #{second.record.id} on two-and-two "
        f"(sha256 {second.dataset_digest[:12]}, 4 items)"
    )

    # Both evaluations are kept, each with its own plot, and the card lists them.
    kept = history(engine, get_version(engine, candidate).id)
    assert [r.id for r in kept] == [first.record.id, second.record.id]
    assert [r.dataset for r in kept] == ["liveness", "two-and-two"]
    assert first.plot != second.plot and first.plot.exists() and second.plot.exists()
    card = card_path(scratch_cache, candidate).read_text()
    assert f"[plot]({first.plot.name})" in card and f"[plot]({second.plot.name})" in card
    assert "| liveness |" in card and "| two-and-two |" in card
    assert "missed: attacks approved" in card  # both, against the targets in force


def test_an_override_needs_a_reason_and_is_in_the_alias_history(
    model_registry_engine: Engine, candidate: str
) -> None:
    engine = model_registry_engine
    with pytest.raises(InvalidRegistration, match="needs --reason"):
        set_alias(engine, "liveness", "canary", candidate, moved_by="bo", force=True)
    set_alias(
        engine,
        "liveness",
        "canary",
        candidate,
        moved_by="bo",
        force=True,
        reason="incident 42: old model down",
    )
    (move,) = alias_history(engine, "liveness", "canary")
    assert (move.target, move.moved_by) == (candidate, "bo")
    assert move.note == "OVERRIDE without a passing evaluation: incident 42: old model down"
    # Aliases that decide nothing are not gated; tasks without targets neither.
    set_alias(engine, "liveness", "shadow", candidate, moved_by="bo")
    set_alias(engine, "detect", "production", "blazeface-back-256@1.2.0", moved_by="bo")


def test_the_evaluation_history_cannot_be_rewritten(
    model_registry_engine: Engine, scratch_cache: Path, small_liveness_set: Path
) -> None:
    evaluate(
        model_registry_engine,
        scratch_cache,
        "liveness",
        small_liveness_set,
        progress=quiet,
        split=False,
    )
    for statement in ("UPDATE model_evaluations SET passed = 1", "DELETE FROM model_evaluations"):
        with (
            pytest.raises(DBAPIError, match="model_evaluations is append-only"),
            model_registry_engine.begin() as connection,
        ):
            connection.execute(text(statement))


@pytest.fixture
def cli_registry(
    model_registry_engine: Engine, scratch_cache: Path, tmp_path: Path, monkeypatch
) -> Engine:
    monkeypatch.setenv("IDFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("IDFLOW_MODEL_CACHE", str(scratch_cache))
    monkeypatch.setenv("IDFLOW_DATABASE_URL", str(model_registry_engine.url))
    return model_registry_engine


def test_cli_refuses_promotion_in_one_line_and_records_an_override(
    cli_registry: Engine, candidate: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert idflow(["models", "alias", "liveness", "production", candidate, "--by", "cy"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("idflow models alias: liveness@production cannot move to")
    assert "--force --reason" in line

    argv = ["models", "alias", "liveness", "production", candidate, "--by", "cy", "--force"]
    assert idflow([*argv, "--reason", "vendor hotfix, evaluation due Monday"]) == 0
    out = capsys.readouterr().out
    assert f"liveness@production -> {candidate}" in out
    assert "by cy  (OVERRIDE without a passing evaluation: vendor hotfix" in out


def test_cli_import_as_production_is_refused_before_anything_is_stored(
    cli_registry: Engine, scratch_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = get_version(cli_registry, PRODUCTION_LIVENESS)
    file = model_file(scratch_cache, base.name, base.version, base.sha256)
    argv = ["models", "import", str(file), "--task", "liveness", "--name", base.name]
    argv += ["--version", "9", "--sha256", base.sha256, "--licence", "MIT"]
    signature = tmp_path / "signature.toml"
    signature.write_text(signature_of(cli_registry, base.ref).to_toml())
    argv += ["--signature", str(signature), "--accept", "0.9", "--reject", "0.5"]
    assert idflow([*argv, "--alias", "production"]) == 1
    assert "a new version has no evaluation yet" in capsys.readouterr().err
    with pytest.raises(Exception, match="not registered"):
        get_version(cli_registry, f"{base.name}@9")


def test_evaluate_help_states_the_formats_and_targets(capsys) -> None:
    with pytest.raises(SystemExit):
        idflow(["models", "evaluate", "--help"])
    out = capsys.readouterr().out
    for expected in ("a,b,same", "image,label", "live/ and attack/", "one sub-folder per person"):
        assert expected in out
    assert "attacks approved (of those the quality check lets through) <= 5.00%" in out
    assert "split in two by source photo / subject" in out
    assert "FNMR at FMR 0.1% <= 1.00% (needs >= 1000 impostor_pairs)" in out


def test_bad_sets_and_models_give_one_line(
    cli_registry: Engine,
    scratch_cache: Path,
    small_liveness_set: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "empty"
    (empty / "live").mkdir(parents=True)
    (empty / "attack").mkdir()
    listing = tmp_path / "set.csv"
    listing.write_text("image,label\nmissing.jpg,live\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("image,label\nx.jpg,maybe\n")
    only_live = tmp_path / "only-live"
    (only_live / "attack").mkdir(parents=True)
    (only_live / "live").symlink_to(small_liveness_set / "live")

    # The embedding model registered as a liveness model whose signature fits its graph but
    # asks for a crop the liveness stage cannot make (an eye box): it fails when it runs.
    embed = get_version(cli_registry, "faceplugin-fr-feature@0.0.1")
    eye_crop = ModelSignature.parse(
        '[input]\ntensor = "input"\nregion = "eye-box"\nsize = [112, 112]\ncolour = "BGR"\n'
        'mean = 127\nstd = 128\n[output]\ntensor = "output"\nkind = "probabilities"\n'
        "positive_class = 0\n"
    )
    wrong = register_version(
        cli_registry,
        scratch_cache,
        model_file(scratch_cache, embed.name, embed.version, embed.sha256),
        task="liveness",
        name="wrong-input-liveness",
        version="1",
        sha256=embed.sha256,
        licence="MIT",
        signature=eye_crop,
        thresholds={"accept": 0.9, "reject": 0.5},
    )
    cases = {
        (str(empty),): "holds no images",
        (str(listing),): "cannot read",
        (str(labels),): "label must be live or attack",
        (str(only_live),): "has no attack presentations with a usable face",
        (str(small_liveness_set), "--model", wrong.ref): f"{wrong.ref} cannot run on this set",
        (str(tmp_path / "nowhere"),): "does not exist",
    }
    for args, expected in cases.items():
        assert idflow(["models", "evaluate", "liveness", *args]) == 1, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and expected in err, err
