"""Child processes of a stack: spawned in their own session, stopped gracefully.

Worker pools run as ``python -m cli worker --pool NAME --ready-file PATH``. A
worker creates its ready file once Temporal lists its pollers on every queue
it serves (``workers.pools.run_pool``); parents wait for that file, never for
printed text.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from settings import Settings

POOLS = ("cpu", "gpu")
READY_TIMEOUT_S = 180.0  # loading and warming the models on a loaded 2-core machine
STOP_TIMEOUT_S = 30.0


def spawn(command: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own session (a Ctrl-C reaches only us), output appended to
    ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(processes: Iterable[subprocess.Popen[bytes]], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM each running process, then wait; SIGKILL the group of any that overstays."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def worker_command(pool: str, ready_file: Path | None = None) -> list[str]:
    command = [sys.executable, "-m", "cli", "worker", "--pool", pool]
    return command if ready_file is None else [*command, "--ready-file", str(ready_file)]


class WorkerProcess:
    """One worker pool as a child process."""

    def __init__(self, pool: str, settings: Settings, log_dir: Path) -> None:
        self.pool = pool
        self.settings = settings
        self.log_path = log_dir / f"worker-{pool}.log"
        self.ready_file = log_dir / f"worker-{pool}-{uuid.uuid4().hex[:8]}.ready"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.process = spawn(
            worker_command(self.pool, self.ready_file),
            self.log_path,
            os.environ | self.settings.to_env(),
        )
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until the worker polls all its queues (its models are loaded and warm by then)."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        while not self.ready_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.pool} worker exited with {self.process.returncode} before it "
                    f"polled; {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.pool} worker not polling after {timeout_s:.0f}s; "
                    f"{self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, in-flight activities are simply lost."""
        assert self.process is not None, "start() first"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.ready_file.unlink(missing_ok=True)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, so the worker finishes or hands back its in-flight activities."""
        assert self.process is not None, "start() first"
        stop([self.process], timeout_s)
        self.ready_file.unlink(missing_ok=True)
        return self.process.returncode
