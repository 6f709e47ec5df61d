"""A child process's output, read on a thread: waiting for a line never blocks past its deadline.

``readline()`` on a pipe blocks until the child prints or exits, so a loop that
checks its deadline between lines hangs as long as a silent child does. Here a
daemon thread reads every line into a queue, and ``wait_for`` waits on the queue
with the time that is left.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from pathlib import Path

_EOF = None


class ProcessOutput:
    """Every line ``process`` prints (it needs ``stdout=PIPE``, ``text=True``)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.process = process
        self.lines: list[str] = []
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._ended = False
        self._reader = threading.Thread(
            target=self._read, args=(process.stdout,), name="child-output", daemon=True
        )
        self._reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(_EOF)

    def wait_for(self, text: str, timeout_s: float = 180) -> list[str]:
        """The lines printed so far, once one contains ``text``; fails at the deadline or exit."""
        deadline = time.monotonic() + timeout_s
        while not self._ended:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is _EOF:
                self._ended = True
                break
            self.lines.append(line)
            if text in line:
                return list(self.lines)
        why = "exited" if self._ended else f"still silent after {timeout_s:.0f} s"
        raise AssertionError(f"{text!r} never printed ({why}); output:\n{''.join(self.lines)}")

    def rest(self, timeout_s: float = 90) -> str:
        """Everything printed after what was waited for, once the process has exited."""
        self.process.wait(timeout_s)
        self._reader.join(timeout_s)
        start = len(self.lines)
        while not self._ended:
            line = self._queue.get(timeout=timeout_s)
            if line is _EOF:
                self._ended = True
            else:
                self.lines.append(line)
        return "".join(self.lines[start:])


def wait_until_ready(
    process: subprocess.Popen[str], ready_file: Path, timeout_s: float = 180
) -> None:
    """Wait for ``process`` to create its ``--ready-file``; fail if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while not ready_file.exists():
        if process.poll() is not None:
            raise AssertionError(f"exited with status {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready after {timeout_s:.0f} s (no {ready_file})")
        time.sleep(0.2)
