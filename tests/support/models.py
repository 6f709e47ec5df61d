"""Fixtures: the pulled model cache and a model registry over it.

The cache is the configured one (``Settings.from_env().model_cache``, by default
``<repo>/.idflow/models``), so repeated test runs do not download again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from models.pull import pull
from settings import Settings


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Root of a model cache holding every manifest model, verified."""
    return pull(Settings.from_env()).cache_root
