"""Prometheus metrics of model serving: inference latency and batch size per model version.

Recorded by ``models.serving.Runner`` for every ``session.run`` (a dynamic
batch counts once, with its size); exposed by the worker's ``/metrics``
(``workers/telemetry.py``). The ``model`` label is the version's ref
(``name@version``): a few per task, so the label set stays small.
"""

from __future__ import annotations

from prometheus_client import Histogram

INFERENCE_SECONDS = Histogram(
    "idflow_model_inference_seconds",
    "Wall time of one onnxruntime session.run, per model version",
    ["model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BATCH_SIZE = Histogram(
    "idflow_model_batch_size",
    "Items per session.run, per model version (1 without the dynamic batcher)",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)


def observe_inference(model: str, seconds: float, items: int) -> None:
    INFERENCE_SECONDS.labels(model).observe(seconds)
    BATCH_SIZE.labels(model).observe(items)
