"""Fixtures: a real Temporal dev server and real idflow worker processes.

Both are started the way ``idflow dev`` starts them, through ``devstack``:

- ``temporal_server`` (session): one dev server for the whole run, on free
  ports, with idflow's search attributes registered. Its client runs on an
  event-loop thread: tests stay plain functions and run coroutines with
  ``temporal_server.run(coro)``.
- ``idflow_stack`` (module): a private data dir, database (with the pulled
  models registered) and task queues, and both pools as real subprocesses
  (``python -m cli worker --pool cpu|gpu``), plus a ``VerificationClient``.
  ``start_stack`` builds one with other settings (e.g. a PostgreSQL URL).
  When the module is done, every verification it finished is replayed with
  the current workflow code (``IdflowStack.replay_finished``).
- Real faults and grey zones on demand (``devstack.faults``): ``grey_zone_pins``
  (a stricter model version), ``corrupted_model_pins`` (a model file corrupted
  after registration), ``take_issuer_keys_away`` (the issuer cannot sign).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.faults import (
    GREY_ZONE_EMBED_VERSION,
    corrupted_model_pins,
    grey_zone_pins,
    register_production_copy,
    take_issuer_keys_away,
)
from devstack.scratch import DECODE_ONLY_STAFF, DevServer, LoopThread, dev_server, stack_settings
from devstack.scratch import PoolStack as IdflowStack
from devstack.scratch import start_pools as start_stack

TemporalServer = DevServer

__all__ = [
    "DECODE_ONLY_STAFF",
    "GREY_ZONE_EMBED_VERSION",
    "IdflowStack",
    "LoopThread",
    "TemporalServer",
    "corrupted_model_pins",
    "grey_zone_pins",
    "register_production_copy",
    "stack_settings",
    "start_stack",
    "take_issuer_keys_away",
]


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    loop = LoopThread()
    try:
        server = dev_server(tmp_path_factory.mktemp("temporal"), loop)
        try:
            yield server
        finally:
            server.stop()
    finally:
        loop.close()


@pytest.fixture(scope="module")
def idflow_stack(
    temporal_server: TemporalServer,
    model_cache: Path,
    test_keys: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[IdflowStack]:
    settings = stack_settings(
        tmp_path_factory.mktemp("idflow"), temporal_server.target, model_cache
    )
    stack = start_stack(temporal_server, settings)
    try:
        yield stack
        stack.replay_finished()  # every verification the module's tests ran replays
    finally:
        stack.stop()
