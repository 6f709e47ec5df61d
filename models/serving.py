"""Serving: one onnxruntime session per model version per process.

A worker builds one ``ModelServer`` and asks it for a ``Runner`` per
``ModelChoice`` (the exact model version the workflow resolved). The first ask
loads the verified model file, creates the session on the best available
execution provider (CUDA first when onnxruntime-gpu is installed, then CPU)
and warms it up; later asks get the same runner.

With a ``BatchPolicy`` each runner whose session runs on one of the policy's
providers (CUDA by default) batches concurrent ``run`` calls (see
models/batching.py); elsewhere it runs each call as it comes, which is faster
on CPU. The face models all have a batch axis fixed at 1; the
server re-exports them with a free batch axis and keeps that only if a batch
gives the same numbers as single items, otherwise it runs the batch item by
item behind the same interface.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from domain.contracts import ModelChoice
from domain.errors import ModelUnavailable
from domain.signatures import ModelSignature
from models.cache import model_file

from . import metrics, usage
from .batching import Batcher, BatchPolicy, make_batch_dynamic
from .errors import CachedFileTampered

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PREFERRED_PROVIDERS: tuple[str, ...] = (CUDA, CPU)
_ORT_ERRORS_ONLY = 3  # onnxruntime log severity: warnings about unused initialisers are noise
_BATCH_TOLERANCE = 1e-4


def select_providers(
    requested: Sequence[str] | None = None, available: Sequence[str] | None = None
) -> list[str]:
    """The requested (default: CUDA, CPU) providers that this onnxruntime has, CPU always last."""
    have = ort.get_available_providers() if available is None else list(available)
    chosen = [p for p in (requested or PREFERRED_PROVIDERS) if p in have and p != CPU]
    return [*chosen, CPU]


def default_threads() -> int:
    """Threads per session: the cores this process may use, at most 2 (measured, bench/)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(2, cores or 1))


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_ERRORS_ONLY
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle intra-op threads sleep instead of spinning. Each session has its own pool, and
    # a pipeline alternates models with Python pre-processing: spinning pools of the other
    # sessions steal the cores (measured: whole chain 3x slower on 2 cores with spinning).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def required_signature(choice: ModelChoice) -> ModelSignature:
    """What the model takes and gives; a version registered without one cannot run."""
    if choice.signature is None:
        raise ModelUnavailable(f"{choice.ref} has no signature: import it again with --signature")
    return choice.signature


class Runner:
    """One loaded model version. ``run`` takes one item and returns its outputs.

    Items and outputs have no batch axis: ``run(x)`` with ``x.shape ==
    input_shape`` returns one array per model output. Thread-safe.
    """

    def __init__(
        self,
        choice: ModelChoice,
        session: ort.InferenceSession,
        dynamic_batch: bool,
        policy: BatchPolicy | None,
    ) -> None:
        self.choice = choice
        self._session = session
        model_input = session.get_inputs()[0]
        self._input_name = model_input.name
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in model_input.shape[1:])
        self.output_names: list[str] = [output.name for output in session.get_outputs()]
        self.provider: str = session.get_providers()[0]
        self.batching = "dynamic" if dynamic_batch else "per-item"
        self._batcher = Batcher(self.run_batch, policy, choice.ref) if policy else None

    @property
    def batcher_on(self) -> bool:
        return self._batcher is not None

    @property
    def batch_sizes(self) -> Counter[int]:
        """Observed batch size -> number of batches run (empty without a batch policy)."""
        return self._batcher.batch_sizes if self._batcher else Counter()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        item = np.ascontiguousarray(x, dtype=np.float32)
        if item.shape != self.input_shape:
            raise ValueError(
                f"{self.choice.ref} takes items of shape {self.input_shape}, got {item.shape}"
            )
        if self._batcher is not None:
            return self._batcher.submit(item)
        started = time.perf_counter()
        with usage.measure(usage.INFERENCE):
            outputs = self._session.run(None, {self._input_name: item[None]})
        metrics.observe_inference(self.choice.ref, time.perf_counter() - started, 1)
        return [output[0] for output in outputs]

    @property
    def signature(self) -> ModelSignature:
        return required_signature(self.choice)

    def run_named(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """``run``, with each output under its tensor name."""
        return dict(zip(self.output_names, self.run(x), strict=True))

    def run_batch(self, items: np.ndarray) -> list[np.ndarray]:
        """Run N stacked items now (no waiting): one array per output, N rows each."""
        started = time.perf_counter()
        with usage.measure(usage.INFERENCE):
            if self.batching == "dynamic":
                outputs = self._session.run(None, {self._input_name: items})
            else:
                rows = [self._session.run(None, {self._input_name: item[None]}) for item in items]
                outputs = [np.concatenate(output) for output in zip(*rows, strict=True)]
        metrics.observe_inference(self.choice.ref, time.perf_counter() - started, len(items))
        return outputs

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()


class ModelServer:
    """The runners of one worker process, one per model version, created on first use."""

    def __init__(
        self,
        cache_root: Path,
        providers: Sequence[str] | None = None,
        batch_policy: BatchPolicy | None = None,
        threads: int | None = None,
    ) -> None:
        self.cache_root = Path(cache_root)
        self.providers = select_providers(providers)
        self.batch_policy = batch_policy
        self.threads = threads or default_threads()
        self._runners: dict[tuple[str, str], Runner] = {}
        self._lock = threading.Lock()

    @property
    def batching(self) -> bool:
        """Whether any loaded runner batches concurrent calls."""
        return any(runner.batcher_on for runner in list(self._runners.values()))

    @property
    def provider(self) -> str:
        """The execution provider sessions run on (the first the loaded sessions accepted)."""
        for runner in list(self._runners.values()):
            return runner.provider
        return self.providers[0]

    def runner(self, choice: ModelChoice) -> Runner:
        key = (choice.name, choice.version)
        with self._lock:  # one session per version, even when activities race to load it
            runner = self._runners.get(key)
            if runner is None:
                runner = self._runners[key] = self._load(choice)
        if runner.choice.sha256 != choice.sha256:
            raise ValueError(
                f"{choice.ref} was loaded with sha256 {runner.choice.sha256}, "
                f"now asked for {choice.sha256}"
            )
        return runner

    def close(self) -> None:
        with self._lock:
            runners, self._runners = list(self._runners.values()), {}
        for runner in runners:
            runner.close()

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self, choice: ModelChoice) -> Runner:
        path = model_file(self.cache_root, choice.name, choice.version, choice.sha256)
        model_bytes = path.read_bytes()
        actual = hashlib.sha256(model_bytes).hexdigest()
        if actual != choice.sha256:  # the bytes loaded are the bytes verified
            raise CachedFileTampered(path, choice.sha256, actual)
        policy = self.batch_policy
        if policy is not None and self.providers[0] not in policy.providers:
            policy = None  # per-item runs are faster on this provider
        session, dynamic = None, False
        if policy is not None and policy.max_batch_size > 1:
            session = self._dynamic_session(choice, model_bytes)
            dynamic = session is not None
        if session is None:
            session = self._session(model_bytes)
        if policy is not None and session.get_providers()[0] not in policy.providers:
            policy = None  # the preferred provider failed to load: CPU, unbatched
        _warm_up(session)
        runner = Runner(choice, session, dynamic, policy)
        log.info(
            "loaded %s (%s) on %s, batching %s",
            choice.ref,
            choice.task,
            runner.provider,
            runner.batching if policy else "off",
        )
        return runner

    def _session(self, model_bytes: bytes) -> ort.InferenceSession:
        before = usage.thread_ids()
        session = ort.InferenceSession(
            model_bytes, session_options(self.threads), providers=self.providers
        )
        usage.adopt_threads_since(before)  # the session's intra-op threads only ever infer
        return session

    def _dynamic_session(
        self, choice: ModelChoice, model_bytes: bytes
    ) -> ort.InferenceSession | None:
        """A session with a free batch axis, or None when the re-export changes the numbers."""
        try:
            session = self._session(make_batch_dynamic(model_bytes))
            if _batch_matches_items(session):
                return session
        except Exception as error:  # an unusual graph: fall back to item-by-item batches
            log.warning(
                "%s: free batch axis failed (%s); running batches per item",
                choice.ref,
                type(error).__name__,
            )
            return None
        log.warning("%s: a batch differs from single items; running batches per item", choice.ref)
        return None


def _feed(session: ort.InferenceSession, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    model_input = session.get_inputs()[0]
    shape = (batch, *(int(d) for d in model_input.shape[1:]))
    return {model_input.name: np.random.default_rng(seed).random(shape, dtype=np.float32)}


def _warm_up(session: ort.InferenceSession) -> None:
    session.run(None, _feed(session, 1))


def _batch_matches_items(session: ort.InferenceSession) -> bool:
    ((name, pair),) = _feed(session, 2).items()
    batched = session.run(None, {name: pair})
    singles = [session.run(None, {name: pair[i : i + 1]}) for i in range(2)]
    return all(
        np.allclose(batched[k][i], singles[i][k][0], atol=_BATCH_TOLERANCE)
        for i in range(2)
        for k in range(len(batched))
    )
