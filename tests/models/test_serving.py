"""Serving: sessions per model version, provider choice and the dynamic batcher."""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from models.batching import Batcher, BatcherClosed, BatchPolicy
from models.errors import CachedFileTampered
from models.serving import CPU, CUDA, ModelServer, select_providers


def items(runner, count: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).random((count, *runner.input_shape), dtype=np.float32)


def run_together(function, inputs) -> list:
    """Call ``function`` on every input from its own thread, all released at once."""
    start = threading.Barrier(len(inputs))

    def call(x):
        start.wait()
        return function(x)

    with ThreadPoolExecutor(len(inputs)) as pool:
        return list(pool.map(call, inputs))


def test_providers_prefer_cuda_and_fall_back_to_cpu():
    assert select_providers(available=[CUDA, CPU]) == [CUDA, CPU]
    assert select_providers(available=["AzureExecutionProvider", CPU]) == [CPU]
    assert select_providers([CUDA], available=[CPU]) == [CPU]
    assert select_providers([CPU, CUDA], available=[CUDA, CPU]) == [CUDA, CPU]


@pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="this machine has CUDA")
def test_server_asking_for_cuda_runs_on_cpu_here(model_cache, production_models):
    with ModelServer(model_cache, providers=[CUDA, CPU]) as server:
        runner = server.runner(production_models["eye"])
        assert server.provider == CPU and runner.provider == CPU
        (closed_logits,) = runner.run(np.zeros(runner.input_shape, np.float32))
        assert closed_logits.shape == (2,)


def test_one_runner_per_model_version(model_server, production_models):
    choice = production_models["landmarks"]
    runners = run_together(lambda _: model_server.runner(choice), range(8))
    assert all(runner is runners[0] for runner in runners)


def test_a_choice_whose_hash_differs_from_the_file_is_refused(model_cache, production_models):
    wrong = dataclasses.replace(production_models["eye"], sha256="0" * 64)
    with ModelServer(model_cache) as server, pytest.raises(CachedFileTampered):
        server.runner(wrong)


def test_items_of_the_wrong_shape_are_refused(model_server, production_models):
    runner = model_server.runner(production_models["eye"])
    with pytest.raises(ValueError, match="shape"):
        runner.run(np.zeros((3, 24, 24), np.float32))


@pytest.fixture(scope="module")
def batching_server(model_cache):
    policy = BatchPolicy(max_batch_size=8, max_wait_ms=50, providers=(CPU,))  # batch on CPU too
    with ModelServer(model_cache, batch_policy=policy) as s:
        yield s


def test_the_batcher_runs_only_where_it_pays(model_cache, production_models):
    """By default only CUDA batches: on CPU each call runs at once, never waiting for others."""
    with ModelServer(model_cache, providers=[CPU], batch_policy=BatchPolicy()) as server:
        runner = server.runner(production_models["embed"])
        assert not runner.batcher_on and not server.batching
        run_together(runner.run, list(items(runner, 4)))
        assert not runner.batch_sizes  # no batch was ever gathered


@pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="this onnxruntime has CUDA")
def test_asking_for_cuda_without_it_falls_back_to_cpu_unbatched(model_cache, production_models):
    with ModelServer(model_cache, providers=[CUDA, CPU], batch_policy=BatchPolicy()) as server:
        runner = server.runner(production_models["liveness"])
        assert (server.provider, runner.provider, runner.batcher_on) == (CPU, CPU, False)
        assert len(runner.run(np.zeros(runner.input_shape, np.float32))) >= 1


@pytest.mark.parametrize("task", ["embed", "liveness", "landmarks", "pose", "detect", "eye"])
def test_batched_results_equal_one_at_a_time(
    batching_server, model_server, production_models, task
):
    batched = batching_server.runner(production_models[task])
    single = model_server.runner(production_models[task])
    inputs = items(single, 24)
    expected = [single.run(x) for x in inputs]
    got = run_together(batched.run, list(inputs))
    for mine, reference in zip(got, expected, strict=True):
        for a, b in zip(mine, reference, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert max(batched.batch_sizes) > 1, batched.batch_sizes
    assert max(batched.batch_sizes) <= 8
    assert sum(size * count for size, count in batched.batch_sizes.items()) >= 24


def test_face_models_run_with_a_free_batch_axis(batching_server, production_models):
    for task in ("embed", "liveness", "landmarks", "pose", "eye", "detect"):
        assert batching_server.runner(production_models[task]).batching == "dynamic", task


def test_a_failing_item_fails_only_its_caller():
    def double_positive(batch: np.ndarray) -> list[np.ndarray]:
        if (batch < 0).any():
            raise ArithmeticError("negative input")
        return [batch * 2]

    batcher = Batcher(double_positive, BatchPolicy(max_batch_size=16, max_wait_ms=50))

    def submit(value: float):
        try:
            return float(batcher.submit(np.array([value], np.float32))[0][0])
        except ArithmeticError as error:
            return error

    try:
        results = run_together(submit, [1.0, 2.0, -1.0, 3.0, 4.0])
    finally:
        batcher.close()
    assert results[:2] == [2.0, 4.0] and results[3:] == [6.0, 8.0]
    assert isinstance(results[2], ArithmeticError)
    assert max(batcher.batch_sizes) > 1


def wait_until(condition, timeout_s: float = 30.0) -> None:
    """Poll ``condition`` until it holds; the deadline only bounds a hang."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def test_close_finishes_queued_work_then_refuses_more():
    running, release = threading.Event(), threading.Event()

    def held_identity(batch: np.ndarray) -> list[np.ndarray]:
        running.set()
        release.wait()
        return [batch]

    batcher = Batcher(held_identity, BatchPolicy(max_batch_size=1, max_wait_ms=0))
    queued = batcher._queue  # what waits behind the running batch
    with ThreadPoolExecutor(4) as pool:
        try:
            pending = [pool.submit(batcher.submit, np.full(1, 0, np.float32))]
            assert running.wait(30)  # the first item holds the batcher's thread
            pending += [pool.submit(batcher.submit, np.full(1, i, np.float32)) for i in (1, 2)]
            wait_until(lambda: queued.qsize() == 2)
            closer = pool.submit(batcher.close)
            wait_until(lambda: queued.qsize() == 3)  # close has queued its stop behind them
            assert not closer.done()  # and waits: the batch it must finish is still held
            with pytest.raises(BatcherClosed):  # closing: nothing new is taken
                batcher.submit(np.zeros(1, np.float32))
        finally:
            release.set()
        assert [float(f.result(30)[0][0]) for f in pending] == [0.0, 1.0, 2.0]
        closer.result(30)
    with pytest.raises(BatcherClosed):
        batcher.submit(np.zeros(1, np.float32))
