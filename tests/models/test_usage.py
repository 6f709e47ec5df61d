"""CPU accounting by kind of work (models/usage.py), which the benchmark's overhead figures use."""

from __future__ import annotations

import time

import numpy as np

from models import usage


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_nested_work_is_charged_to_the_innermost_kind_only() -> None:
    before = usage.snapshot()
    with usage.measure("test-outer"):
        _spin(0.05)
        with usage.measure(usage.DECODE):
            _spin(0.1)
        _spin(0.05)
    after = usage.snapshot()
    decoded = after[usage.DECODE] - before[usage.DECODE]
    assert 0.09 <= decoded <= 0.15, decoded
    outer = usage._totals["test-outer"]
    assert 0.09 <= outer <= 0.15, outer  # the decode inside is not charged twice


def test_inference_includes_the_sessions_own_threads(model_server, production_models) -> None:
    runner = model_server.runner(production_models["pose"])
    item = np.random.default_rng(1).random(runner.input_shape, dtype=np.float32)
    before = usage.snapshot()
    for _ in range(20):
        runner.run(item)
    after = usage.snapshot()
    inference = after[usage.INFERENCE] - before[usage.INFERENCE]
    spent = after["process"] - before["process"]
    assert inference > 0.5 * spent > 0, (inference, spent)  # nearly all of it is inference
    assert inference <= spent * 1.05 + 0.01
