"""Where pulled model files live: ``<model_cache>/<name>/<version>/<file>``."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from .sources import SOURCES, ModelFile, Source


def model_path(cache_root: Path, source: Source, model: ModelFile) -> Path:
    return cache_root / model.name / source.version / PurePosixPath(model.member).name


def find_model(name: str, version: str | None = None) -> tuple[Source, ModelFile]:
    """The manifest entry for a model name (and version, if given)."""
    for source in SOURCES:
        for model in source.files:
            if model.name == name and (version is None or source.version == version):
                return source, model
    wanted = f"{name}@{version}" if version else name
    raise KeyError(f"model {wanted} is not in the manifest (models/sources.py)")
