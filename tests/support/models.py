"""Fixtures: the pulled model cache and a model registry over it.

The cache is the configured one (``Settings.from_env().model_cache``, by default
``<repo>/.idflow/models``), so repeated test runs do not download again.
"""

from __future__ import annotations

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
