"""The timer the benchmark scripts share: the median of repeated calls."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(step: Callable[[], object], repeat: int, warm_up: bool = False) -> float:
    """Median wall time of ``repeat`` calls of ``step`` in milliseconds.

    ``warm_up`` makes one untimed call first (caches, lazy initialisation).
    """
    if warm_up:
        step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
