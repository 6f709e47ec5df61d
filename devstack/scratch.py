"""Stacks in a scratch data dir on free ports, driven from synchronous code.

The tests (``tests/support/temporal.py``), the history regeneration and the
soak benchmark start their stacks here: a dev server on free ports
(``dev_server``), both pools on private task queues (``start_pools``), or both
at once (``scratch_stack``). Everything runs through ``DevStack``; one event
loop on a thread (``LoopThread``) serves the Temporal client, so callers stay
plain functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import shutil
import tempfile
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from cli.replay import replay
from devstack.processes import WorkerProcess
from devstack.stack import DevStack, free_port, free_port_settings
from domain.contracts import VerificationResult
from domain.reasons import Decision
from mdoc.keystore import ensure_keys, keys_dir
from models.lifecycle.pull import pull
from models.lifecycle.registry import register_pulled
from security.keys import read_private_json, write_private_json
from security.staff_tokens import DECODE, ROLES, dev_token_file, ensure_dev_tokens
from settings import Settings
from starter.client import VerificationClient
from store.engine import get_engine

T = TypeVar("T")


class LoopThread:
    """One event loop on a daemon thread, shared by every caller."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="devstack-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@dataclasses.dataclass
class DevServer:
    """A Temporal dev server on free ports (no codec server, no pools)."""

    loop: LoopThread
    stack: DevStack

    @property
    def target(self) -> str:
        return self.stack.settings.temporal_address

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300.0) -> T:
        return self.loop.run(coro, timeout)

    def stop(self) -> None:
        self.stack.stop()


def dev_server(
    home: Path, loop: LoopThread, ui_port: int | None = None, codec_endpoint: str | None = None
) -> DevServer:
    """Start a dev server whose state lives in ``home``, on free ports (or the UI on
    ``ui_port``), its Web UI decoding through ``codec_endpoint`` if given."""
    stack = DevStack(free_port_settings(home, ui_port), log_dir=home, codec_endpoint=codec_endpoint)
    loop.run(stack.start(with_codec=False, pools=()))
    return DevServer(loop, stack)


def stack_settings(home: Path, target: str, model_cache: Path, **overrides: Any) -> Settings:
    """Settings of a private stack: its own data dir, database and task queues."""
    suffix = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "home": home,
        "model_cache": model_cache,
        "blob_dir": home / "blobs",
        "database_url": f"sqlite:///{home / 'idflow.db'}",
        "temporal_address": target,
        "cpu_task_queue": f"idflow-cpu-{suffix}",
        "gpu_task_queue": f"idflow-gpu-{suffix}",
        "cpu_concurrency": 2,
        "gpu_concurrency": 8,
        "cpu_metrics_port": free_port(),
        "gpu_metrics_port": free_port(),
        "metrics_host": "127.0.0.1",
    }
    return Settings(**(values | overrides))


@dataclasses.dataclass
class PoolStack:
    """Both pools of one ``Settings`` on a running server, and a client for them."""

    server: DevServer
    settings: Settings
    stack: DevStack
    client: VerificationClient

    @property
    def workers(self) -> dict[str, WorkerProcess]:
        return self.stack.workers

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 300.0) -> T:
        return self.server.run(coro, timeout)

    def replace_worker(self, pool: str, kill: bool = False) -> WorkerProcess:
        """Stop (or SIGKILL) a pool's process and start a fresh one."""
        return self.stack.replace_worker(pool, kill)

    def verify(self, selfie: bytes, document: bytes, **start: Any) -> VerificationResult:
        """Create, start and wait for one verification."""

        async def verify() -> VerificationResult:
            draft = await self.client.create(selfie, document, subject_ref="test-subject")
            await self.client.start(draft, **start)
            return await self.client.result(draft.verification_id)

        return self.run(verify())

    def staff_token(self, staff_id: str) -> str:
        """The token of ``staff_id``; a new reviewer is added to the stack's token file
        (the CPU worker reads it on every review)."""
        tokens = ensure_dev_tokens(self.settings)
        if staff_id not in tokens:
            path = dev_token_file(self.settings)
            document = read_private_json(path, "staff token")
            document[staff_id] = {"token": secrets.token_urlsafe(32), "roles": list(ROLES)}
            write_private_json(path, document)
            tokens = ensure_dev_tokens(self.settings)
        return tokens[staff_id]

    async def review(
        self, verification_id: str, staff_id: str, approve: bool, reason: str
    ) -> Decision:
        """Review as ``staff_id``, signed with their token."""
        return await self.client.review(
            verification_id, approve, reason, staff_id, self.staff_token(staff_id)
        )

    def replay_finished(self) -> int:
        """Replay every finished verification of this stack with ``cli.replay``.

        Each history produced here, under whatever timing it met (retries,
        reviews, worker crashes, slow local activities), must replay with the
        current code. Raises ``ReplayFailed`` naming the first that does not;
        returns how many replayed.
        """
        query = (
            "WorkflowType = 'IdentityVerification'"
            f" AND TaskQueue = '{self.settings.cpu_task_queue}'"
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
        self.stack.stop()


# Staff of the scratch stacks: reviewers, and one who may only decode.
STAFF = {"dev-staff": ROLES, "staff-42": ROLES, "staff-43": ROLES, "staff-9": ROLES}
DECODE_ONLY_STAFF = "staff-decode-only"


def write_staff_tokens(settings: Settings) -> None:
    """The stack's staff token file (its dev token file, which the CPU worker reads)."""
    staff = {**STAFF, DECODE_ONLY_STAFF: (DECODE,)}
    document = {
        staff_id: {"token": secrets.token_urlsafe(32), "roles": list(roles)}
        for staff_id, roles in staff.items()
    }
    write_private_json(dev_token_file(settings), document)


def start_pools(server: DevServer, settings: Settings) -> PoolStack:
    """Register the pulled models, create the issuer's keys, start both pools and wait until
    they poll.

    Payload and blob keys come from the environment.
    """
    settings.home.mkdir(parents=True, exist_ok=True)
    write_staff_tokens(settings)
    register_pulled(get_engine(settings.database_url), settings.model_cache)
    ensure_keys(keys_dir(settings.home), settings.issuer_id)
    client = server.run(VerificationClient.connect(settings))
    stack = DevStack(settings, log_dir=settings.home)
    try:
        server.run(stack.start(with_server=False))
        stack.wait_ready()
    except BaseException:
        stack.stop()
        raise
    return PoolStack(server, settings, stack, client)


@contextlib.contextmanager
def scratch_stack(prefix: str) -> Iterator[PoolStack]:
    """A dev server on free ports and both pools in a temporary data dir, for scripts.

    Payload and blob keys come from the environment, as for ``start_pools``.
    """
    cache = pull(Settings.from_env()).cache_root
    home = Path(tempfile.mkdtemp(prefix=prefix))
    loop = LoopThread()
    try:
        server = dev_server(home / "server", loop)
        try:
            stack = start_pools(server, stack_settings(home / "stack", server.target, cache))
            try:
                yield stack
            finally:
                stack.stop()
        finally:
            server.stop()
    finally:
        loop.close()
        shutil.rmtree(home, ignore_errors=True)
