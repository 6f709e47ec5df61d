"""Dynamic batching: many threads ask for one item each, one thread runs batches.

Activities run in a thread pool and each calls ``runner.run(x)`` for one item.
A ``Batcher`` gathers the requests that arrive for the same model within
``max_wait_ms`` (up to ``max_batch_size``), runs them as one batch and hands
each caller its own slice of the result. If a batch fails, its items are run
one by one so that an error reaches only the caller whose item caused it.

``make_batch_dynamic`` re-exports a model whose batch axis is fixed at 1 so
that a batch runs as a single ``session.run``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

RunBatch = Callable[[np.ndarray], list[np.ndarray]]


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 16
    max_wait_ms: float = 5.0
    # Where the batcher runs. On CPU, concurrent single runs already keep every core busy
    # and the batcher only adds waiting: per-item runs are as fast or faster there
    # (bench/bench_models.py measures both); on CUDA one launch per batch is the point.
    providers: tuple[str, ...] = ("CUDAExecutionProvider",)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")


class BatcherClosed(RuntimeError):
    """The batcher was closed before (or while) the request could run."""


@dataclass
class _Request:
    item: np.ndarray
    result: Future


_STOP = object()


class Batcher:
    """Runs ``run_batch`` (N items in, a list of N-row outputs out) for concurrent callers."""

    def __init__(self, run_batch: RunBatch, policy: BatchPolicy, name: str = "model") -> None:
        self._run_batch = run_batch
        self._policy = policy
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self.batch_sizes: Counter[int] = Counter()  # observed batch size -> how many batches
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, item: np.ndarray) -> list[np.ndarray]:
        """Run one item (no batch axis) and return its outputs (no batch axis)."""
        request = _Request(item, Future())
        with self._close_lock:
            if self._closed:
                raise BatcherClosed("the model runner is closed")
            self._queue.put(request)
        return request.result.result()

    def close(self) -> None:
        """Finish the requests already queued, then stop the thread."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            deadline = time.monotonic() + self._policy.max_wait_ms / 1000
            while len(batch) < self._policy.max_batch_size:
                try:
                    request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if request is _STOP:
                    stopping = True
                    break
                batch.append(request)
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        self.batch_sizes[len(batch)] += 1
        try:
            outputs = self._run_batch(np.stack([request.item for request in batch]))
        except Exception as error:
            if len(batch) == 1:
                batch[0].result.set_exception(error)
            else:  # isolate the failing item: only its caller gets the error
                for request in batch:
                    self._run([request])
            return
        for row, request in enumerate(batch):
            request.result.set_result([output[row] for output in outputs])


def make_batch_dynamic(model_bytes: bytes) -> bytes:
    """The same ONNX model with a free batch axis instead of a fixed 1.

    Graph inputs and outputs get a symbolic first dimension, and every Reshape
    whose constant target shape starts with 1 gets 0 there ("copy the input's
    dimension"), which is the same for one item and follows the batch for more.
    The caller checks that a batch gives the same numbers as single items.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    tensors = {init.name: init for init in graph.initializer}
    tensors.update(
        {
            node.output[0]: node.attribute[0].t
            for node in graph.node
            if node.op_type == "Constant" and node.attribute[0].name == "value"
        }
    )
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] not in tensors:
            continue
        tensor = tensors[node.input[1]]
        shape = numpy_helper.to_array(tensor).copy()
        if shape.size and shape[0] == 1:
            shape[0] = 0
            tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
    for value in (*graph.input, *graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del graph.value_info[:]  # stale fixed shapes; onnxruntime infers them again
    return model.SerializeToString()
