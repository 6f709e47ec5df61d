"""Fixtures: the pulled model cache and a model registry over it.

The cache is the configured one (``Settings.from_env().model_cache``, by default
``<repo>/.idflow/models``), so repeated test runs do not download again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from models.lifecycle.pull import pull
from models.lifecycle.registry import register_pulled
from settings import Settings
from store.engine import get_engine


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Root of a model cache holding every manifest model, verified."""
    return pull(Settings.from_env()).cache_root


@pytest.fixture
def private_cache(tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings pointing at a fresh database and a private copy of the pulled models."""
    cache = tmp_path / "models"
    shutil.copytree(model_cache, cache, ignore=shutil.ignore_patterns("downloads", "cards"))
    monkeypatch.setenv("IDFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IDFLOW_MODEL_CACHE", str(cache))
    monkeypatch.delenv("IDFLOW_DATABASE_URL", raising=False)
    return cache


@pytest.fixture(scope="session")
def checkpoint_mirror() -> Path:
    """The mirror directory of the checkpoints outside the registries (MiniFASNet): the
    read-only steering data ``../shared/models`` beside the checkout, or
    ``IDFLOW_TEST_MODEL_MIRROR``. Tests that need it skip, saying so, when it is absent."""
    mirror = Path(
        os.environ.get(
            "IDFLOW_TEST_MODEL_MIRROR", Path(__file__).parents[2].parent / "shared/models"
        )
    )
    if not (mirror / "minifasnet").is_dir():
        pytest.skip(
            f"no MiniFASNet checkpoints in {mirror}/minifasnet (set IDFLOW_TEST_MODEL_MIRROR "
            f"to a mirror directory holding them)"
        )
    return mirror


@pytest.fixture
def model_registry_engine(model_cache: Path, tmp_path: Path) -> Iterator[Engine]:
    """A fresh SQLite database with every pulled model registered (production aliases set)."""
    engine = get_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    register_pulled(engine, model_cache)
    yield engine
    engine.dispose()


def link(source: Path, target: Path) -> Path:
    """A symlink at ``target`` to ``source`` (folders made as needed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source)
    return target
