"""End-to-end latency and throughput of a verification on the dev stack (not a test).

    .venv/bin/python bench/bench_verification.py [-n 20] [--concurrency 8]

Starts the real dev stack (``temporal server start-dev`` with its persistent
SQLite file in WAL mode, both worker pools as processes) in a temporary data
dir on free ports, then runs, in one process and one run:

1. N verifications one after another through the stack (client: sanitise,
   encrypted blob store, nonce; workflow: models, quality x2, liveness and face
   match on the GPU pool, record): p50/p95 latency.
2. The same N through the bare pipeline: same models, direct calls, no
   Temporal (decode, observe faces, liveness, two embeddings, cosine).
3. Throughput with ``--concurrency`` verifications in flight, both ways.

The ratios orchestrated/bare are the figures to improve. Each workflow's own
history says where its time went (queue hops vs activities): printed for the
median one. Numbers on a shared machine are noisy: the load is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack import stack as devstack
from devstack.samples import SamplePair, sample_pairs
from models.batching import BatchPolicy
from models.face import (
    FaceModels,
    cosine_similarity,
    decode_image,
    face_embedding,
    liveness_score,
    observe_faces,
)
from models.lifecycle.registry import resolve_all
from models.serving import ModelServer
from settings import Settings
from starter.client import VerificationClient
from store.engine import get_engine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_settings(home: Path) -> Settings:
    base = Settings.from_env()
    return dataclasses.replace(
        base,
        home=home,
        blob_dir=home / "blobs",
        database_url=f"sqlite:///{home / 'idflow.db'}",
        temporal_address=f"127.0.0.1:{free_port()}",
        temporal_ui_port=free_port(),
    )


async def verify(client: VerificationClient, pair: SamplePair) -> tuple[float, str]:
    started = time.perf_counter()
    draft = await client.create(pair.selfie, pair.document, subject_ref="bench")
    await client.start(draft)
    result = await client.result(draft.verification_id)
    assert result.decision.value == pair.expected.split()[0], (pair.name, result)
    return (time.perf_counter() - started) * 1000, draft.verification_id


def bare_pipeline(models: FaceModels) -> Callable[[SamplePair], float]:
    def run(pair: SamplePair) -> float:
        started = time.perf_counter()
        selfie, document = decode_image(pair.selfie), decode_image(pair.document)
        (selfie_face, *_), _ = observe_faces(selfie, models)
        (document_face, *_), _ = observe_faces(document, models)
        liveness_score(selfie, selfie_face, models)
        cosine_similarity(
            face_embedding(selfie, selfie_face, models),
            face_embedding(document, document_face, models),
        )
        return (time.perf_counter() - started) * 1000

    return run


async def hop_breakdown(client: VerificationClient, verification_id: str) -> str:
    """Where one verification's time went, from its own history."""
    history = await client.handle(verification_id).fetch_history()
    first = history.events[0].event_time.ToDatetime()
    scheduled: dict[int, Any] = {}
    waits = []
    for event in history.events:
        kind = event.WhichOneof("attributes")
        at = event.event_time.ToDatetime()
        if kind in (
            "activity_task_scheduled_event_attributes",
            "workflow_task_scheduled_event_attributes",
        ):
            scheduled[event.event_id] = at
        elif kind == "activity_task_started_event_attributes":
            waits.append(
                at - scheduled[event.activity_task_started_event_attributes.scheduled_event_id]
            )
        elif kind == "workflow_task_started_event_attributes":
            waits.append(
                at - scheduled[event.workflow_task_started_event_attributes.scheduled_event_id]
            )
    total = (history.events[-1].event_time.ToDatetime() - first).total_seconds() * 1000
    median_wait = statistics.median(w.total_seconds() for w in waits) * 1000
    return (
        f"{total:.0f} ms from start to completion on the server; {len(waits)} task dispatches "
        f"(workflow and activity tasks), each waiting {median_wait:.0f} ms (median) in its queue"
    )


async def main(count: int, concurrency: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="idflow-bench-"))
    settings = bench_settings(home)
    os.environ.update(devstack_env(settings))
    devstack.prepare(settings)
    pairs = sample_pairs()
    cases = [pairs["same person"], pairs["different people"]]
    work = [cases[i % 2] for i in range(count)]

    stack = devstack.DevStack(settings)
    await stack.start()
    try:
        client = await VerificationClient.connect(settings)
        await stack.wait_until_polling(client.temporal)
        for pair in cases:  # warm-up: first runs pay for connections and caches
            await verify(client, pair)

        sequential = [await verify(client, pair) for pair in work]
        latencies = [ms for ms, _ in sequential]
        median_id = sorted(sequential)[len(sequential) // 2][1]
        breakdown = await hop_breakdown(client, median_id)

        limit = asyncio.Semaphore(concurrency)

        async def bounded(pair: SamplePair) -> float:
            async with limit:
                return (await verify(client, pair))[0]

        many = [cases[i % 2] for i in range(count * 2)]
        started = time.perf_counter()
        await asyncio.gather(*(bounded(pair) for pair in many))
        orchestrated_rate = len(many) / (time.perf_counter() - started)
    finally:
        stack.stop()

    policy = BatchPolicy(settings.batch_max_size, settings.batch_max_wait_ms)
    with ModelServer(settings.model_cache, batch_policy=policy) as server:
        models = FaceModels.load(server, resolve_all(get_engine(settings.database_url), {}))
        run = bare_pipeline(models)
        for pair in cases:
            run(pair)
        bare = [run(pair) for pair in work]
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(run, many))
        bare_rate = len(many) / (time.perf_counter() - started)

    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"{count} verifications one after another (same person / different people alternating):")
    for name, values in (("orchestrated", latencies), ("bare pipeline", bare)):
        print(
            f"  {name:<14} p50 {statistics.median(values):6.0f} ms   p95 {percentile(values, 0.95):6.0f} ms"
        )
    print(
        f"  ratio orchestrated/bare, p50: {statistics.median(latencies) / statistics.median(bare):.2f}"
    )
    print(f"  median verification: {breakdown}")
    print(f"{len(many)} verifications, {concurrency} in flight:")
    print(f"  orchestrated   {orchestrated_rate:6.2f} verifications/s")
    print(f"  bare pipeline  {bare_rate:6.2f} verifications/s")
    print(f"  ratio orchestrated/bare throughput: {orchestrated_rate / bare_rate:.2f}")


def devstack_env(settings: Settings) -> dict[str, str]:
    """The worker processes read their settings from the environment."""
    return {
        "IDFLOW_HOME": str(settings.home),
        "IDFLOW_BLOB_DIR": str(settings.blob_dir),
        "IDFLOW_DATABASE_URL": settings.database_url,
        "IDFLOW_MODEL_CACHE": str(settings.model_cache),
        "IDFLOW_TEMPORAL_ADDRESS": settings.temporal_address,
        "IDFLOW_TEMPORAL_UI_PORT": str(settings.temporal_ui_port),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--count", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    options = parser.parse_args()
    asyncio.run(main(options.count, options.concurrency))
