"""What a pool reports about itself for the benchmark: CPU use by kind, and an optional profile.

- ``write_usage`` (on SIGUSR1): ``models.usage.snapshot()`` plus peak RSS, as
  JSON in ``<IDFLOW_HOME>/usage/<pool>.json``.
- ``IDFLOW_PROFILE_DIR`` set: the pool profiles itself with pyinstrument
  (``pip install '.[bench]'``): the event-loop thread for the pool's whole
  life, and every activity and workflow task in the executor threads that run
  them. The combined profile is written to ``<dir>/<pool>.txt`` when the pool
  stops. Sampling every millisecond slows the pool down: profile runs are for
  reading where time goes, not for the benchmark's numbers.
"""

from __future__ import annotations

import json
import os
import resource
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from models import usage

PROFILE_DIR_VARIABLE = "IDFLOW_PROFILE_DIR"
_INTERVAL_S = 0.001


def write_usage(home: Path, pool: str) -> None:
    """This process's CPU use by kind and peak RSS, for the benchmark (written atomically)."""
    folder = home / "usage"
    folder.mkdir(parents=True, exist_ok=True)
    report = {
        **usage.snapshot(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    tmp = folder / f".{pool}.json.tmp"
    tmp.write_text(json.dumps(report))
    os.replace(tmp, folder / f"{pool}.json")


class Profiles:
    """pyinstrument sessions of the threads of one pool, combined into one report."""

    def __init__(self, out_dir: Path, pool: str) -> None:
        from pyinstrument import Profiler

        self._profiler_type = Profiler
        self._path = out_dir / f"{pool}.txt"
        self._sessions: list[Any] = []
        self._lock = threading.Lock()
        self._main = Profiler(interval=_INTERVAL_S, async_mode="disabled")

    @classmethod
    def from_env(cls, pool: str) -> Profiles | None:
        out_dir = os.environ.get(PROFILE_DIR_VARIABLE)
        return cls(Path(out_dir), pool) if out_dir else None

    def start(self) -> None:
        self._main.start()

    def executor(self, workers: int, prefix: str) -> ThreadPoolExecutor:
        return _ProfiledExecutor(self, workers, thread_name_prefix=prefix)

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        profiler = self._profiler_type(interval=_INTERVAL_S, async_mode="disabled")
        profiler.start()
        try:
            return fn(*args, **kwargs)
        finally:
            session = profiler.stop()
            with self._lock:
                self._sessions.append(session)

    def write(self) -> Path:
        from pyinstrument.renderers import ConsoleRenderer
        from pyinstrument.session import Session

        combined = self._main.stop()
        for session in self._sessions:
            combined = Session.combine(combined, session)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._path.write_text(ConsoleRenderer(unicode=False, color=False).render(combined))
        return self._path


class _ProfiledExecutor(ThreadPoolExecutor):
    def __init__(self, profiles: Profiles, workers: int, thread_name_prefix: str) -> None:
        super().__init__(workers, thread_name_prefix=thread_name_prefix)
        self._profiles = profiles

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return super().submit(self._profiles.run, fn, *args, **kwargs)
