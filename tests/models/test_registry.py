"""The model registry: versions of the pulled models, aliases, imports; SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from domain.enums import ModelTask
from domain.errors import ModelUnavailable
from domain.reasons import ReasonCode
from models.cache import model_file, sha256_of
from models.errors import ModelHashMismatch
from models.lifecycle.registry import (
    InvalidRegistration,
    VersionConflict,
    alias_history,
    current_aliases,
    get_version,
    list_versions,
    record_metrics,
    register_pulled,
    register_version,
    resolve,
    resolve_all,
    set_alias,
)
from models.lifecycle.sources import SIGNATURES, SOURCES, model_path
from store.engine import get_engine

FACEPLUGIN, BLAZEFACE = SOURCES
LIVENESS = FACEPLUGIN.files[3]
BLAZEFACE_REF = "blazeface-back-256@1.2.0"


def test_pulled_models_get_production_for_every_task(model_registry_engine: Engine) -> None:
    choices = resolve_all(model_registry_engine, {})
    assert set(choices) == set(ModelTask)
    for model in FACEPLUGIN.files:
        choice = choices[model.task]
        assert (choice.name, choice.version, choice.sha256) == (model.name, "0.0.1", model.sha256)
        assert choice.alias == "production"
    assert (choices["embed"].accept, choices["embed"].reject) == (0.45, 0.35)
    assert choices["liveness"].accept is not None and choices["liveness"].reject is not None
    # The second detector is registered, but production stays with the first.
    assert BLAZEFACE_REF in {v.ref for v in list_versions(model_registry_engine, "detect")}
    assert "production" not in current_aliases(model_registry_engine).get(BLAZEFACE_REF, [])


def test_registering_again_changes_nothing(
    model_registry_engine: Engine, model_cache: Path
) -> None:
    set_alias(model_registry_engine, "detect", "production", BLAZEFACE_REF, moved_by="alice")
    history = alias_history(model_registry_engine)
    assert register_pulled(model_registry_engine, model_cache) == []
    assert len(list_versions(model_registry_engine)) == 7
    assert alias_history(model_registry_engine) == history
    assert resolve(model_registry_engine, "detect", "production").ref == BLAZEFACE_REF


def test_exact_pin_resolves_to_that_version(model_registry_engine: Engine) -> None:
    choice = resolve(model_registry_engine, "detect", BLAZEFACE_REF)
    assert choice.ref == BLAZEFACE_REF and choice.alias is None
    assert choice.sha256 == BLAZEFACE.files[0].sha256


@pytest.mark.parametrize(
    "task, pin, says",
    [
        ("liveness", "staging", "no alias 'staging' for task 'liveness'"),
        (
            "liveness",
            "faceplugin-fr-liveness@9.9.9",
            "faceplugin-fr-liveness@9.9.9 is not registered",
        ),
        ("liveness", "faceplugin-fr-feature@0.0.1", "is a embed model, not a liveness model"),
        ("gender", "production", "unknown model task 'gender'"),
    ],
)
def test_unknown_pin_is_model_unavailable(
    model_registry_engine: Engine, task: str, pin: str, says: str
) -> None:
    with pytest.raises(ModelUnavailable, match=says) as caught:
        resolve(model_registry_engine, task, pin)
    assert caught.value.reason is ReasonCode.MODEL_UNAVAILABLE


def test_pins_for_unknown_tasks_are_refused(model_registry_engine: Engine) -> None:
    with pytest.raises(ModelUnavailable, match="unknown tasks"):
        resolve_all(model_registry_engine, {"gender": "production"})


def test_alias_moves_are_appended_to_history(model_registry_engine: Engine) -> None:
    engine = model_registry_engine
    seeded = "faceplugin-fr-detect@0.0.1"
    set_alias(engine, "detect", "production", BLAZEFACE_REF, moved_by="alice", note="small faces")
    assert resolve(engine, "detect", "production").ref == BLAZEFACE_REF
    assert resolve_all(engine, {})["detect"].ref == BLAZEFACE_REF
    assert resolve_all(engine, {"detect": seeded})["detect"].ref == seeded
    set_alias(engine, "detect", "production", seeded, moved_by="bob")
    set_alias(engine, "detect", "production", seeded, moved_by="bob")  # no move: no entry

    moves = [
        (m.target, m.previous, m.moved_by) for m in alias_history(engine, "detect", "production")
    ]
    assert moves == [
        (seeded, None, "manifest"),
        (BLAZEFACE_REF, seeded, "alice"),
        (seeded, BLAZEFACE_REF, "bob"),
    ]
    with pytest.raises(ModelUnavailable, match="is a detect model"):
        set_alias(engine, "embed", "production", BLAZEFACE_REF, moved_by="alice")
    with pytest.raises(InvalidRegistration, match="exact name@version"):
        set_alias(engine, "detect", "candidate", "production", moved_by="alice")


def test_imported_version_can_become_production(
    model_registry_engine: Engine, model_cache: Path, tmp_path: Path
) -> None:
    engine, cache = model_registry_engine, tmp_path / "cache"
    source_file = tmp_path / "liveness-v2.onnx"
    shutil.copyfile(model_path(model_cache, FACEPLUGIN, LIVENESS), source_file)
    candidate = register_version(
        engine,
        cache,
        source_file,
        task="liveness",
        name="faceplugin-fr-liveness",
        version="0.0.2",
        sha256=LIVENESS.sha256,
        licence="MIT",
        caveats="a copy, for the test",
        signature=SIGNATURES["faceplugin-fr-liveness"],
        thresholds={"accept": 0.9, "reject": 0.6},
        alias="candidate",
        moved_by="carol",
    )
    assert (candidate.ref, candidate.alias, candidate.accept) == (
        "faceplugin-fr-liveness@0.0.2",
        "candidate",
        0.9,
    )
    assert (
        model_file(cache, "faceplugin-fr-liveness", "0.0.2", LIVENESS.sha256).name
        == source_file.name
    )
    assert "input float[1, 3, 128, 128]" in get_version(engine, candidate.ref).input_spec
    assert resolve(engine, "liveness", "production").version == "0.0.1"

    set_alias(
        engine,
        "liveness",
        "production",
        candidate.ref,
        moved_by="carol",
        force=True,
        reason="a copy of production, for the test",
    )
    assert resolve_all(engine, {})["liveness"].ref == candidate.ref
    assert current_aliases(engine)[candidate.ref] == ["candidate", "production"]


def test_import_checks_the_file(
    model_registry_engine: Engine, model_cache: Path, tmp_path: Path
) -> None:
    engine, cache = model_registry_engine, tmp_path / "cache"
    liveness_file = model_path(model_cache, FACEPLUGIN, LIVENESS)
    common = {
        "task": "liveness",
        "licence": "MIT",
        "signature": SIGNATURES["faceplugin-fr-liveness"],
    }
    with pytest.raises(
        ModelHashMismatch, match=f"has sha256 {LIVENESS.sha256}, expected {'a' * 64}"
    ):
        register_version(
            engine, cache, liveness_file, name="live", version="2", sha256="a" * 64, **common
        )
    with pytest.raises(VersionConflict, match="registered with sha256"):
        blaze = model_path(model_cache, BLAZEFACE, BLAZEFACE.files[0])
        register_version(
            engine,
            cache,
            blaze,
            name="faceplugin-fr-liveness",
            version="0.0.1",
            sha256=BLAZEFACE.files[0].sha256,
            **common,
        )
    assert not (cache / "faceplugin-fr-liveness").exists(), "a refused import must leave no file"
    with pytest.raises(VersionConflict, match="belongs to task 'detect'"):
        register_version(
            engine,
            cache,
            liveness_file,
            name="blazeface-back-256",
            version="2",
            sha256=LIVENESS.sha256,
            **common,
        )
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_bytes(b"not a model")
    with pytest.raises(InvalidRegistration, match="not a loadable ONNX model"):
        register_version(
            engine, cache, not_onnx, name="live", version="2", sha256=sha256_of(not_onnx), **common
        )
    # An 80x80 signature on the 128x128 model: refused, naming the tensor and both shapes.
    live = SIGNATURES["faceplugin-fr-liveness"]
    small = replace(live, inputs=[replace(live.inputs[0], size=[80, 80])])
    with pytest.raises(
        InvalidRegistration,
        match=re.escape(
            "fr_liveness.onnx: input tensor 'input' has shape [1, 3, 128, 128] in the ONNX "
            "graph; the signature needs [N, 3, 80, 80]"
        ),
    ):
        register_version(
            engine,
            cache,
            liveness_file,
            name="live",
            version="2",
            sha256=LIVENESS.sha256,
            task="liveness",
            licence="MIT",
            signature=small,
        )
    wrong_class = replace(live, output=replace(live.output, positive_class=3))
    with pytest.raises(InvalidRegistration, match=re.escape("'output' has shape [1, 3]")):
        register_version(
            engine,
            cache,
            liveness_file,
            name="live",
            version="2",
            sha256=LIVENESS.sha256,
            task="liveness",
            licence="MIT",
            signature=wrong_class,
        )
    assert not (cache / "live").exists(), "a refused import must leave no file"
    assert [v.ref for v in list_versions(engine, "liveness")] == ["faceplugin-fr-liveness@0.0.1"]


def test_metrics_are_merged(model_registry_engine: Engine) -> None:
    record_metrics(model_registry_engine, "faceplugin-fr-feature", "0.0.1", {"lfw": {"fnmr": 0.1}})
    merged = record_metrics(
        model_registry_engine, "faceplugin-fr-feature", "0.0.1", {"obama": {"pairs": 10}}
    )
    assert merged == {"lfw": {"fnmr": 0.1}, "obama": {"pairs": 10}}
    assert get_version(model_registry_engine, "faceplugin-fr-feature@0.0.1").metrics == merged
    with pytest.raises(ModelUnavailable):
        record_metrics(model_registry_engine, "nope", "1", {})


@pytest.fixture
def postgres_engine() -> Engine:
    """An engine on a PostgreSQL schema of its own, dropped afterwards."""
    url = os.environ.get("IDFLOW_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(
            "IDFLOW_TEST_POSTGRES_URL is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        )
    schema = f"idflow_models_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = get_engine(f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.postgres
def test_registry_on_postgres(postgres_engine: Engine, model_cache: Path, tmp_path: Path) -> None:
    engine = postgres_engine
    with engine.connect() as connection:
        schema = connection.execute(text("SELECT current_schema()")).scalar_one()
    assert schema.startswith("idflow_models_")
    assert len(register_pulled(engine, model_cache)) == 7
    assert register_pulled(engine, model_cache) == []
    assert resolve_all(engine, {})["embed"].ref == "faceplugin-fr-feature@0.0.1"

    source_file = tmp_path / "liveness-v2.onnx"
    shutil.copyfile(model_path(model_cache, FACEPLUGIN, LIVENESS), source_file)
    register_version(
        engine,
        tmp_path / "cache",
        source_file,
        task="liveness",
        name="faceplugin-fr-liveness",
        version="0.0.2",
        sha256=LIVENESS.sha256,
        licence="MIT",
        signature=SIGNATURES["faceplugin-fr-liveness"],
        thresholds={"accept": 0.9, "reject": 0.6},
    )
    set_alias(
        engine,
        "liveness",
        "production",
        "faceplugin-fr-liveness@0.0.2",
        moved_by="dave",
        force=True,
        reason="same file, new thresholds",
    )
    assert resolve(engine, "liveness", "production").accept == 0.9
    assert [m.moved_by for m in alias_history(engine, "liveness")] == ["manifest", "dave"]
    assert record_metrics(engine, "faceplugin-fr-liveness", "0.0.2", {"apcer": 0.1}) == {
        "apcer": 0.1
    }
    with pytest.raises(ModelUnavailable):
        resolve(engine, "liveness", "shadow")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def registry_engine(request: pytest.FixtureRequest, model_cache: Path) -> Engine:
    """A registry with the pulled models (and their seeded alias history), on each database."""
    if request.param == "sqlite":
        return request.getfixturevalue("model_registry_engine")
    engine = request.getfixturevalue("postgres_engine")
    register_pulled(engine, model_cache)
    return engine


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE model_alias_history SET target = 'forged@1', moved_by = 'mallory'",
        "DELETE FROM model_alias_history",
    ],
)
def test_alias_history_cannot_be_rewritten_through_sql(
    registry_engine: Engine, statement: str
) -> None:
    engine = registry_engine
    history = alias_history(engine)
    assert history  # the seeded production aliases
    with (
        pytest.raises(DBAPIError, match="model_alias_history is append-only"),
        engine.begin() as connection,
    ):
        connection.execute(text(statement))
    assert alias_history(engine) == history
    set_alias(
        engine, "detect", "production", BLAZEFACE_REF, moved_by="alice"
    )  # appending still works
    assert [m.moved_by for m in alias_history(engine)] == [m.moved_by for m in history] + ["alice"]
