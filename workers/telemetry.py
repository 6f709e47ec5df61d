"""Metrics and health of a worker process, on one HTTP port per pool.

- ``GET /metrics``: Prometheus text: idflow's own metrics (``activities.metrics``,
  ``models.metrics``, from ``prometheus_client``'s registry) followed by the
  Temporal SDK's runtime telemetry (``temporal_*``: task slots, poll and
  schedule-to-start latencies, workflow/activity outcomes, request failures).
  The SDK's Rust core serves those itself; its exporter listens on a free
  loopback port and ``/metrics`` passes its text through, so Prometheus
  scrapes one target per process.
- ``GET /healthz``: 200 while the process serves (liveness probe).
- ``GET /readyz``: 200 once Temporal lists the pool's pollers on all its
  queues, 503 before and from the moment it starts to stop (readiness probe).

The port is ``IDFLOW_CPU_METRICS_PORT`` / ``IDFLOW_GPU_METRICS_PORT`` (0: no
endpoint, and no SDK exporter either); ``IDFLOW_METRICS_HOST`` is the address
it binds (default all interfaces, for a scraper on another host). A port
already taken is one warning line: the pool runs without the endpoint.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from activities.metrics import STAGE_IN_FLIGHT, STAGE_SECONDS
from store import verifications

log = logging.getLogger(__name__)


class StageTimer(Interceptor):
    """Times every activity attempt of the worker into ``idflow_stage_duration_seconds``.

    It also knows which attempts are running (``idflow_stage_in_flight`` and
    ``running()``), so that a stopping pool can say what it is still finishing.
    """

    def __init__(self) -> None:
        self._running: set[str] = set()

    def running(self) -> list[str]:
        """``verification id/activity id`` of each attempt running now."""
        return sorted(self._running)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TimedActivity(next, self._running)


class _TimedActivity(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, running: set[str]) -> None:
        super().__init__(next)
        self.running = running

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        task = f"{info.workflow_id}/{info.activity_id}"
        started = time.perf_counter()
        outcome = "error"
        self.running.add(task)
        STAGE_IN_FLIGHT.labels(info.activity_type).inc()
        try:
            result = await self.next.execute_activity(input)
            outcome = "ok"
            return result
        finally:
            self.running.discard(task)
            STAGE_IN_FLIGHT.labels(info.activity_type).dec()
            STAGE_SECONDS.labels(info.activity_type, outcome).observe(time.perf_counter() - started)


class VerificationsByStatus(Collector):
    """``idflow_verifications_by_status{status}``, read from the database at each scrape.

    ``status="awaiting_review"`` is the review backlog. Served by the CPU pools
    (each reports the same shared count: aggregate with ``max``, not ``sum``).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Any:
        family = GaugeMetricFamily(
            "idflow_verifications_by_status",
            "Verifications in the database by status (awaiting_review: the review backlog)",
            labels=["status"],
        )
        for status, count in sorted(verifications.count_by_status(self.engine).items()):
            family.add_metric([status], count)
        yield family


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Telemetry:
    """The SDK runtime with its Prometheus exporter, and the pool's HTTP endpoint."""

    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        self.host = host
        self.port = port
        self.ready = ready
        self.sdk_address = f"127.0.0.1:{_free_loopback_port()}" if port else None
        self.runtime = (
            Runtime(
                telemetry=TelemetryConfig(
                    metrics=PrometheusConfig(
                        bind_address=self.sdk_address,
                        counters_total_suffix=True,
                        durations_as_seconds=True,
                    )
                )
            )
            if self.sdk_address
            else Runtime.default()
        )
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> str | None:
        """Serve the endpoint; returns its URL, or None when off or the port is taken."""
        if not self.port:
            return None
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host or None, self.port).start()
        except OSError as error:
            await runner.cleanup()
            log.warning("metrics endpoint off: port %s: %s", self.port, error.strerror)
            return None
        self._runner = runner
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return f"http://{self.host or '0.0.0.0'}:{self.port}"

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest()
        assert self._session is not None and self.sdk_address is not None
        try:
            async with self._session.get(f"http://{self.sdk_address}/metrics") as sdk:
                body += await sdk.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            body += f"# temporal SDK metrics unavailable: {type(error).__name__}\n".encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")
