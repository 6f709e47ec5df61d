"""Session fixtures of the face tests: production models served once for all tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from domain.contracts import FaceObservation, ModelChoice, QualityMeasures
from models.face import FaceModels, decode_image, observe_faces
from models.lifecycle.labelled_sets import ATTACKS
from models.lifecycle.registry import register_pulled, resolve_all
from models.serving import ModelServer
from store.engine import get_engine
from tests.support.models import link


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


@pytest.fixture
def scratch_cache(model_cache: Path, tmp_path: Path) -> Path:
    """The pulled models seen through a private cache root: cards and plots stay in tmp."""
    root = tmp_path / "models"
    for entry in model_cache.iterdir():
        if entry.is_dir() and entry.name not in ("cards", "downloads"):
            link(entry, root / entry.name)
    return root


@pytest.fixture
def small_liveness_set(photo_dir: Path, tmp_path: Path) -> Path:
    """Two genuine photos and two strong attacks (printed, then held up to the camera)."""
    root = tmp_path / "liveness"
    for name in ("obama.jpg", "biden.jpg"):
        link(photo_dir / name, root / "live" / name)
    for name in ("astronaut.png", "obama2.jpg"):
        with Image.open(photo_dir / name) as photo:
            attack = root / "attack" / "print-held-up" / f"{Path(name).stem}.png"
            attack.parent.mkdir(parents=True, exist_ok=True)
            ATTACKS["print-held-up"](photo.convert("RGB")).save(attack)
    return root
