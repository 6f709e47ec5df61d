"""Where this process's CPU time goes: model inference, image decoding, the face pipeline, the rest.

Code that does one of these kinds of work runs inside ``measure(kind)``
(a context manager and a decorator): the calling thread's CPU time is charged
to that kind, exclusively (inference inside the face pipeline counts as
inference only). onnxruntime's own intra-op threads do nothing but
inference: the model server hands them to ``adopt_threads_since`` when it
creates a session, and all their CPU time counts as inference.

Images are decoded in child processes (``imaging.bounded``): a pool's only
children, so their CPU time counts as decoding, and as the pool's.

``snapshot()`` adds what the threads of the process used and what is left:
Python threads outside every kind (Temporal's Python side, payload codec,
blob store, workflow code) and native threads that are not onnxruntime's
(Temporal's Rust core, gRPC). The worker pools write it to a file on SIGUSR1,
for the benchmark; measuring costs two clock reads per call.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INFERENCE = "inference"
DECODE = "decode"
FACE_PIPELINE = "face_pipeline"  # resizing, crops, alignment, reading outputs

_TASKS = Path("/proc/self/task")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_totals: Counter[str] = Counter()  # kind -> CPU seconds charged by measure()
_lock = threading.Lock()
_inference_threads: set[int] = set()
_current = threading.local()  # .kind and .since of the innermost measure() of this thread


@contextmanager
def measure(kind: str) -> Iterator[None]:
    """Charge this thread's CPU time inside the block to ``kind`` (not to an outer block)."""
    now = time.thread_time()
    outer, since = getattr(_current, "kind", None), getattr(_current, "since", now)
    if outer is not None:
        _charge(outer, now - since)
    _current.kind, _current.since = kind, now
    try:
        yield
    finally:
        now = time.thread_time()
        _charge(kind, now - _current.since)
        _current.kind, _current.since = outer, now


def _charge(kind: str, seconds: float) -> None:
    with _lock:
        _totals[kind] += seconds


def thread_ids() -> set[int]:
    """Native ids of this process's threads (empty where /proc is missing)."""
    try:
        return {int(name) for name in os.listdir(_TASKS)}
    except OSError:
        return set()


def adopt_threads_since(before: set[int]) -> None:
    """Count threads started since ``before`` (by a new inference session) as inference."""
    python = {thread.native_id for thread in threading.enumerate()}
    with _lock:
        _inference_threads.update(thread_ids() - before - python)


def _thread_cpu(tid: int) -> float:
    try:  # first field: nanoseconds on a CPU
        return int((_TASKS / str(tid) / "schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _children_cpu() -> float:
    """CPU seconds of this process's live child processes (the decoding processes)."""
    children: set[str] = set()
    for tid in thread_ids():
        try:
            children.update((_TASKS / str(tid) / "children").read_text().split())
        except OSError:
            continue
    total = 0.0
    for pid in children:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return total


def snapshot() -> dict[str, float]:
    """CPU seconds of this process and its children so far: ``process``, and how it splits."""
    children = _children_cpu()
    python = {thread.native_id for thread in threading.enumerate()}
    with _lock:
        totals, onnx = dict(_totals), set(_inference_threads)
    native = thread_ids() - python
    onnx_cpu = sum(_thread_cpu(tid) for tid in native & onnx)
    native_cpu = sum(_thread_cpu(tid) for tid in native - onnx)
    return {
        "process": time.process_time() + children,
        INFERENCE: totals.get(INFERENCE, 0.0) + onnx_cpu,
        DECODE: totals.get(DECODE, 0.0) + children,
        FACE_PIPELINE: totals.get(FACE_PIPELINE, 0.0),
        "native_other": native_cpu,  # Temporal's core and gRPC threads
    }
