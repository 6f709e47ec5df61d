"""The two worker pools, one process each: ``idflow worker --pool cpu|gpu``.

- cpu: the workflows and the CPU activities (model resolution, quality check,
  credential binding, records, retention) on ``settings.cpu_task_queue``;
  activities on the workflow's own queue are dispatched eagerly.
- gpu: liveness and face match (one activity) on ``settings.gpu_task_queue``, through the
  model server's dynamic batcher (concurrent activities share one
  ``session.run``).

Each pool loads and warms its production models before it polls, so the
first verification does not pay for loading; ``--ready-file`` is created once
Temporal lists the pool's pollers on all its queues (what ``devstack`` waits
for). On SIGTERM or SIGINT a pool stops
polling, lets in-flight activities finish for ``GRACEFUL_SHUTDOWN`` and then
cancels them; Temporal retries whatever did not finish on another worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from prometheus_client import REGISTRY
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.backtest import BacktestActivities
from activities.biometrics import BiometricActivities
from activities.credential import CredentialActivities
from activities.models import ModelActivities
from activities.quality import QualityActivities
from activities.records import RecordActivities
from activities.retention import RetentionActivities
from activities.review import ReviewActivities
from activities.webhooks import WebhookActivities
from domain.enums import DECIDING_TASKS, QUALITY_TASKS, ModelTask
from mdoc.keystore import KeyStore, keys_dir
from models.batching import BatchPolicy
from models.lifecycle.registry import resolve_all
from models.serving import ModelServer
from security.config import SecurityConfig
from security.keys import BLOB, load_key_ring
from settings import Settings
from starter.connection import connect
from store.blobs import open_blob_store
from store.engine import get_engine
from workers.schedules import ensure_retention_schedule
from workers.telemetry import StageTimer, Telemetry, VerificationsByStatus
from workflows.backtest import Backtest, BacktestVerification
from workflows.identity_verification import IdentityVerification
from workflows.retention import PurgeVerification, RetentionSweep
from workflows.webhooks import WebhookDelivery

from .profiling import Profiles, write_usage

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN = timedelta(seconds=10)
# The workflow code's own imports that are deterministic and stdlib-only: shared by every
# run instead of re-imported into each run's sandbox (about a quarter of the CPU a
# workflow run costs, measured by replaying a recorded history).
SANDBOX_PASSTHROUGH = ("domain", "activities.names", "workflows.search_attributes")
WORKFLOW_TASK_THREADS = 100  # the SDK's default number of concurrent workflow tasks


@dataclass
class Pool:
    """A configured worker plus what it must release when it stops."""

    worker: Worker
    description: str
    queues: list[tuple[str, TaskQueueType.ValueType]]  # what it polls: (queue, kind)
    timer: StageTimer  # the worker's interceptor: times attempts, knows which are running
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()


def _warm_server(settings: Settings, tasks: tuple[ModelTask, ...], batching: bool) -> ModelServer:
    """A model server with the production models of ``tasks`` loaded and warmed."""
    policy = BatchPolicy(settings.batch_max_size, settings.batch_max_wait_ms) if batching else None
    server = ModelServer(settings.model_cache, batch_policy=policy)
    production = resolve_all(get_engine(settings.database_url), {})
    for task in tasks:
        server.runner(production[task])
    return server


def _executor(profiles: Profiles | None, workers: int, prefix: str) -> ThreadPoolExecutor:
    if profiles is not None:
        return profiles.executor(workers, prefix)
    return ThreadPoolExecutor(workers, thread_name_prefix=prefix)


def cpu_pool(client: Client, settings: Settings, profiles: Profiles | None = None) -> Pool:
    engine = get_engine(settings.database_url)
    server = _warm_server(settings, QUALITY_TASKS, batching=False)
    blobs = open_blob_store(settings)
    quality = QualityActivities(server, blobs, settings.cpu_concurrency)
    models = ModelActivities(engine)
    records = RecordActivities(engine)
    reviews = ReviewActivities(engine, settings)
    retention = RetentionActivities(engine, blobs)
    backtest = BacktestActivities(engine)
    webhooks = WebhookActivities(engine, load_key_ring(settings, BLOB))
    credential = CredentialActivities(
        engine, blobs, KeyStore.open(keys_dir(settings.home)), settings.issuer_id
    )
    executor = _executor(profiles, settings.cpu_concurrency, "cpu-activity")
    timer = StageTimer()
    # Profiled runs time workflow tasks too; otherwise the SDK sizes their threads.
    workflows = profiles.executor(WORKFLOW_TASK_THREADS, "cpu-workflow") if profiles else None
    worker = Worker(
        client,
        task_queue=settings.cpu_task_queue,
        workflows=[
            IdentityVerification,
            RetentionSweep,
            PurgeVerification,
            Backtest,
            BacktestVerification,
            WebhookDelivery,
        ],
        activities=[
            models.resolve_verification_models,
            quality.check_quality,
            credential.issue_credential,
            records.record_verification,
            reviews.authorize_review,
            retention.find_expired,
            retention.purge_verification,
            backtest.select_backtest_cases,
            backtest.load_backtest_inputs,
            backtest.record_backtest,
            webhooks.queue_decision_event,
            webhooks.deliver_webhook,
            webhooks.fail_webhook_delivery,
        ],
        activity_executor=executor,
        max_concurrent_activities=settings.cpu_concurrency,
        workflow_task_executor=workflows,
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH)
        ),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        interceptors=[timer],
    )
    return Pool(
        worker,
        f"cpu pool on {settings.cpu_task_queue} ({server.provider})",
        [
            (settings.cpu_task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
            (settings.cpu_task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
        ],
        timer,
        [executor.shutdown, quality.close, server.close],
    )


def gpu_pool(client: Client, settings: Settings, profiles: Profiles | None = None) -> Pool:
    server = _warm_server(settings, DECIDING_TASKS, batching=True)
    biometrics = BiometricActivities(server, open_blob_store(settings))
    # One thread per concurrent activity: the batcher gathers their requests.
    executor = _executor(profiles, settings.gpu_concurrency, "gpu-activity")
    timer = StageTimer()
    worker = Worker(
        client,
        task_queue=settings.gpu_task_queue,
        activities=[biometrics.check_biometrics],
        activity_executor=executor,
        max_concurrent_activities=settings.gpu_concurrency,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        interceptors=[timer],
    )
    batching = (
        f"batches of up to {settings.batch_max_size} within {settings.batch_max_wait_ms} ms"
        if server.batching
        else "no batching: concurrent single runs are faster on this provider"
    )
    return Pool(
        worker,
        f"gpu pool on {settings.gpu_task_queue} ({server.provider}, {batching})",
        [(settings.gpu_task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)],
        timer,
        [executor.shutdown, server.close],
    )


POOLS = {"cpu": cpu_pool, "gpu": gpu_pool}


async def run_pool(name: str, settings: Settings, ready_file: Path | None = None) -> None:
    """Run one pool until SIGTERM or SIGINT, then shut it down gracefully.

    ``ready_file`` is created once the pool polls all its queues; ``/readyz`` answers 200
    from then until it stops.
    """
    polling = asyncio.Event()
    port = settings.cpu_metrics_port if name == "cpu" else settings.gpu_metrics_port
    telemetry = Telemetry(settings.metrics_host, port, polling.is_set)
    endpoint = await telemetry.start()  # /healthz answers while the models load
    if endpoint:
        print(f"metrics: {endpoint}/metrics (health: /healthz, /readyz)", flush=True)
    try:
        await _run(name, settings, ready_file, telemetry, polling)
    finally:
        await telemetry.stop()


async def _run(
    name: str,
    settings: Settings,
    ready_file: Path | None,
    telemetry: Telemetry,
    polling: asyncio.Event,
) -> None:
    client = await connect(settings, runtime=telemetry.runtime)
    profiles = Profiles.from_env(name)
    pool = POOLS[name](client, settings, profiles)
    if name == "cpu":  # the pool that runs the sweep keeps its schedule in place
        REGISTRY.register(VerificationsByStatus(get_engine(settings.database_url)))
        every = timedelta(seconds=SecurityConfig.from_env(settings).retention_sweep_seconds)
        await ensure_retention_schedule(client, settings, every)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The benchmark reads each pool's CPU use by kind (bench/bench_verification.py).
    loop.add_signal_handler(signal.SIGUSR1, write_usage, settings.home, name)
    if profiles is not None:
        profiles.start()
    running = asyncio.create_task(pool.worker.run())
    stopping = asyncio.create_task(stop.wait())
    try:
        if await _until_polling(client, settings, pool.queues, running, stop):
            polling.set()
            if ready_file is not None:
                _create_ready_file(ready_file)
            print(f"ready: {pool.description}", flush=True)
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        polling.clear()
        if not running.done():
            unfinished = pool.timer.running()
            print(
                f"stopping: {pool.description}; finishing {len(unfinished)} task(s)"
                + "".join(f" {task}" for task in unfinished),
                flush=True,
            )
            await pool.worker.shutdown()
        await running  # raises if the worker failed on its own
    finally:
        stopping.cancel()
        pool.close()
        if profiles is not None:
            print(f"profile: {profiles.write()}", flush=True)
    print("stopped", flush=True)


async def _until_polling(
    client: Client,
    settings: Settings,
    queues: list[tuple[str, TaskQueueType.ValueType]],
    running: asyncio.Task,
    stop: asyncio.Event,
) -> bool:
    """Until Temporal lists this process's pollers on every queue; False if it stopped first."""
    waiting = list(queues)
    while waiting and not running.done() and not stop.is_set():
        name, kind = waiting[0]
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=name),
                task_queue_type=kind,
            )
        )
        if any(poller.identity == client.identity for poller in described.pollers):
            waiting.pop(0)
        else:
            await asyncio.sleep(0.1)
    return not waiting


def _create_ready_file(path: Path) -> None:
    """Atomically, so a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(f"{os.getpid()}\n")
    os.replace(partial, path)
