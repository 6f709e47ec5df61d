"""`idflow models ...` run in-process, and the model cards it renders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from cli.main import run
from models.lifecycle.cards import card_path, write_cards
from models.lifecycle.registry import record_metrics, set_alias
from models.lifecycle.sources import SOURCES, model_path

FACEPLUGIN, BLAZEFACE = SOURCES
LIVENESS = FACEPLUGIN.files[3]


def listed(capsys: pytest.CaptureFixture[str]) -> dict[str, list[str]]:
    """`idflow models list` as {name@version: row cells}."""
    assert run(["models", "list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["TASK", "MODEL", "ALIASES"]
    return {cells[1]: cells for cells in (row.split() for row in rows)}


def test_models_commands(
    private_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["models", "list"]) == 0
    assert "run `idflow models pull`" in capsys.readouterr().out

    assert run(["models", "pull"]) == 0
    out = capsys.readouterr().out
    assert "0 archives downloaded" in out and "registered 7 new model version(s)" in out

    rows = listed(capsys)
    assert rows["faceplugin-fr-detect@0.0.1"][:3] == [
        "detect",
        "faceplugin-fr-detect@0.0.1",
        "production",
    ]
    assert rows["blazeface-back-256@1.2.0"][2] == "-"
    assert rows["faceplugin-fr-feature@0.0.1"][5:7] == ["0.45", "0.35"]
    assert len(rows) == 7

    assert (
        run(
            [
                "models",
                "alias",
                "detect",
                "production",
                "blazeface-back-256@1.2.0",
                "--by",
                "erin",
                "--note",
                "small faces",
            ]
        )
        == 0
    )
    history = capsys.readouterr().out
    assert (
        "faceplugin-fr-detect@0.0.1 -> blazeface-back-256@1.2.0  by erin  (small faces)" in history
    )
    rows = listed(capsys)
    assert rows["blazeface-back-256@1.2.0"][2] == "production"
    assert rows["faceplugin-fr-detect@0.0.1"][2] == "-"

    copy = tmp_path / "liveness-v2.onnx"
    shutil.copyfile(model_path(private_cache, FACEPLUGIN, LIVENESS), copy)
    # The signature of the production version, printed as TOML, is a template for imports.
    assert run(["models", "signature", "faceplugin-fr-liveness@0.0.1"]) == 0
    template = capsys.readouterr().out
    assert 'region = "face-box"' in template and "scale = 2.7" in template
    signature = tmp_path / "liveness.toml"
    signature.write_text(template.replace("size = [128, 128]", "size = [80, 80]"))
    importing = [
        "models",
        "import",
        str(copy),
        "--task",
        "liveness",
        "--name",
        "faceplugin-fr-liveness",
        "--version",
        "0.0.2",
        "--sha256",
        LIVENESS.sha256,
        "--licence",
        "MIT",
        "--signature",
        str(signature),
    ]
    assert run(importing) == 1
    (error,) = capsys.readouterr().err.splitlines()
    assert error == (
        "idflow models import: liveness-v2.onnx: input tensor 'input' has shape "
        "[1, 3, 128, 128] in the ONNX graph; the signature needs [N, 3, 80, 80]"
    )
    signature.write_text(template)
    assert (
        run(
            [
                "models",
                "import",
                str(copy),
                "--task",
                "liveness",
                "--name",
                "faceplugin-fr-liveness",
                "--version",
                "0.0.2",
                "--sha256",
                LIVENESS.sha256,
                "--licence",
                "MIT",
                "--signature",
                str(signature),
                "--accept",
                "0.9",
                "--reject",
                "0.6",
                "--alias",
                "candidate",
                "--by",
                "erin",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert listed(capsys)["faceplugin-fr-liveness@0.0.2"][2] == "candidate"

    assert run(["models", "card", "blazeface-back-256@1.2.0", "--print"]) == 0
    card = capsys.readouterr().out
    assert "aliases now: production" in card and "Apache-2.0" in card

    assert run(["models", "alias", "embed", "production", "nope@1"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("idflow models alias: ") and "model nope@1 is not registered" in error


def test_card_shows_provenance_thresholds_metrics_and_plot(
    model_registry_engine: Engine, tmp_path: Path
) -> None:
    ref = "faceplugin-fr-feature@0.0.1"
    (path,) = write_cards(model_registry_engine, tmp_path, [ref])
    assert path == card_path(tmp_path, ref)
    card = path.read_text()
    for expected in (
        "npm `faceplugin-face-recognition-js@0.0.1`",
        FACEPLUGIN.files[2].sha256,
        "names no author of the weights",
        "input float[1, 3, 112, 112]",
        "the five landmarks, similarity-aligned to the ArcFace template, 112x112 BGR",
        "score >= 0.45 passes, score < 0.35 fails",
        "aliases now: production",
        "None yet",
    ):
        assert expected in card
    assert "## Evaluations\n\nNone yet" in card

    record_metrics(
        model_registry_engine,
        "faceplugin-fr-feature",
        "0.0.1",
        {"lfw_pairs": {"fnmr_at_fmr_1e-3": 0.123456, "pairs": 200}},
    )
    set_alias(model_registry_engine, "embed", "shadow", ref, moved_by="erin")
    card = write_cards(model_registry_engine, tmp_path, [ref])[0].read_text()
    assert "- lfw_pairs:\n  - fnmr_at_fmr_1e-3: 0.1235\n  - pairs: 200" in card
    assert "aliases now: production, shadow" in card
