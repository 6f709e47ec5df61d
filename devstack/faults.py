"""Real faults and grey zones on demand, for the tests and the benchmarks.

Nothing here fakes a part: a stricter model version is registered like any
other, a corrupted model file is really corrupted in the cache, the issuer's
key store really goes away.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from domain.contracts import ModelChoice
from domain.enums import ModelTask
from mdoc.keystore import keys_dir
from models.cache import model_file, version_dir, visible_files
from models.lifecycle.registry import PRODUCTION, get_version, register_version, signature_of
from models.lifecycle.registry import resolve as registry_resolve
from settings import Settings
from store.engine import get_engine


def take_issuer_keys_away(settings: Settings) -> Callable[[], Path]:
    """Move the issuer's key store state aside; returns the function that puts it back.

    The issuer re-reads that file on every issuance: until it is back, credential
    binding fails with ``KeyStoreError``, a real, unexpected, retryable error.
    """
    state = keys_dir(settings.home) / "keystore.json"
    away = state.rename(state.with_name("keystore.json.away"))
    return lambda: away.rename(state)


GREY_ZONE_EMBED_VERSION = "0.0.1-strict"


def register_production_copy(
    settings: Settings,
    task: ModelTask,
    version: str,
    caveats: str,
    thresholds: dict[str, float] | None = None,
) -> ModelChoice:
    """Register the production model of ``task`` again, as ``version`` (same file)."""
    engine = get_engine(settings.database_url)
    base = get_version(engine, registry_resolve(engine, task, PRODUCTION).ref)
    return register_version(
        engine,
        settings.model_cache,
        model_file(settings.model_cache, base.name, base.version, base.sha256),
        task=task,
        name=base.name,
        version=version,
        sha256=base.sha256,
        licence=base.licence,
        signature=signature_of(engine, base.ref),
        caveats=caveats,
        thresholds=thresholds if thresholds is not None else dict(base.thresholds),
    )


def grey_zone_pins(settings: Settings) -> dict[str, str]:
    """Model pins that send a real same-person pair to review.

    Registers the production embedding model again as a new version with
    stricter thresholds (accept 0.8, reject 0.6): the Obama photos' cosine of
    about 0.73 falls in between, in the grey zone.
    """
    choice = register_production_copy(
        settings,
        ModelTask.EMBED,
        GREY_ZONE_EMBED_VERSION,
        caveats="test version: stricter thresholds, for the review path",
        thresholds={"accept": 0.8, "reject": 0.6},
    )
    return {ModelTask.EMBED: choice.ref}


@contextlib.contextmanager
def corrupted_model_pins(settings: Settings, task: ModelTask) -> Iterator[dict[str, str]]:
    """Pins for a registered model version whose cached file is corrupted after registration.

    Registration checks the file; resolving a pin only reads the registry. So
    the verification resolves the version, and the worker that loads it meets
    ``CachedFileTampered`` on every attempt: a real, unexpected, retryable
    failure. The version's files leave the shared model cache afterwards.
    """
    version = f"0.0.1-corrupt-{uuid.uuid4().hex[:8]}"
    choice = register_production_copy(
        settings, task, version, caveats="test version: its cached file is corrupted on purpose"
    )
    folder = version_dir(settings.model_cache, choice.name, choice.version)
    try:
        for file in visible_files(folder):  # installed read-only: replace, as a tamperer would
            file.unlink()
            file.write_bytes(b"not an ONNX model any more")
        yield {task: choice.ref}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
