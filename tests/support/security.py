"""Fixtures: the test run's encryption keys, configured the way production does it.

``test_keys`` (session, autouse) puts a fresh payload key ring and blob master
key ring into ``IDFLOW_PAYLOAD_KEYS`` / ``IDFLOW_BLOB_KEYS`` for the whole run,
so that every client, worker subprocess and codec server of the run shares
them. Tests that need other keys override the variables with ``monkeypatch``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from security.keys import new_key

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
