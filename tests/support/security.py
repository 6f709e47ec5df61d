"""Fixtures: the test run's encryption keys, configured the way production does it.

``test_keys`` (session, autouse) puts a fresh payload key ring and blob master
key ring into ``IDFLOW_PAYLOAD_KEYS`` / ``IDFLOW_BLOB_KEYS`` for the whole run,
so that every client, worker subprocess and codec server of the run shares
them. Tests that need other keys override the variables with ``monkeypatch``.

``hostile_image_corpus`` (session): the corpus of ``tests.support.hostile_images``
(each image with the reason code it must end in, or None: decodes cleanly);
``malformed_image_corpus`` (session): its images that must be refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from domain.reasons import ReasonCode
from security.keys import new_key

from .hostile_images import HostileImage, hostile_images

TEST_KEY_VARIABLES = {
    "IDFLOW_PAYLOAD_KEYS": f"test-payload-1:{new_key()}",
    "IDFLOW_BLOB_KEYS": f"test-blob-1:{new_key()}",
}


@pytest.fixture(scope="session", autouse=True)
def test_keys() -> Iterator[dict[str, str]]:
    saved = {name: os.environ.get(name) for name in TEST_KEY_VARIABLES}
    os.environ.update(TEST_KEY_VARIABLES)
    try:
        yield dict(TEST_KEY_VARIABLES)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- Hostile images ------------------------------------------------------------------


@pytest.fixture(scope="session")
def hostile_image_corpus(photo: Callable[[str], bytes]) -> list[HostileImage]:
    """The hostile-image corpus (``tests.support.hostile_images``): 60+ files, each expected
    to end in its reason code or to decode cleanly within the decoding budget."""
    return hostile_images(photo)


@pytest.fixture(scope="session")
def malformed_image_corpus(
    hostile_image_corpus: list[HostileImage],
) -> dict[str, tuple[bytes, ReasonCode]]:
    """The corpus's images that must be refused: name -> (bytes, reason code)."""
    return {
        item.name: (item.data, item.expected)
        for item in hostile_image_corpus
        if item.expected is not None
    }
