"""Session fixtures of the face tests: production models served once for all tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from domain.contracts import FaceObservation, ModelChoice, QualityMeasures
from models.face import FaceModels, decode_image, observe_faces
from models.lifecycle.registry import register_pulled, resolve_all
from models.serving import ModelServer
from store.engine import get_engine


@pytest.fixture(scope="session")
def production_models(model_cache: Path, tmp_path_factory) -> dict[str, ModelChoice]:
    """The exact versions (with thresholds) a fresh registry resolves for every task."""
    engine = get_engine(f"sqlite:///{tmp_path_factory.mktemp('registry') / 'registry.db'}")
    register_pulled(engine, model_cache)
    choices = resolve_all(engine, {})
    engine.dispose()
    return choices


@pytest.fixture(scope="session")
def model_server(model_cache: Path) -> Iterator[ModelServer]:
    with ModelServer(model_cache) as server:
        yield server


@pytest.fixture(scope="session")
def face_models(model_server: ModelServer, production_models: dict[str, ModelChoice]) -> FaceModels:
    return FaceModels.load(model_server, production_models)


Observed = tuple[np.ndarray, list[FaceObservation], QualityMeasures]


@pytest.fixture(scope="session")
def observe(photo: Callable[[str], bytes], face_models: FaceModels) -> Callable[[str], Observed]:
    """name -> (decoded image, faces, measures), computed once per photo."""
    seen: dict[str, Observed] = {}

    def run(name: str) -> Observed:
        if name not in seen:
            image = decode_image(photo(name))
            seen[name] = (image, *observe_faces(image, face_models))
        return seen[name]

    return run
