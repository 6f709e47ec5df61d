"""Where a verification's time goes through the stack, against the bare pipeline (not a test).

    .venv/bin/python bench/bench_verification.py [-n 20] [--concurrency 8]
        [--scale 1,8,32,128] [--soak 2000] [--profile DIR]

Starts the real dev stack (``temporal server start-dev`` with its persistent
SQLite file in WAL mode, the codec server, both worker pools as processes) in
a temporary data dir on free ports, then, in one process and one run:

1. N verifications one after another (client: sanitise, encrypted blob store,
   nonce; workflow: models, quality check, liveness + face match on the GPU
   pool, record): p50/p95 latency from ``create`` to the decision.
2. 2N verifications with ``--concurrency`` in flight: throughput, and per
   verification: CPU seconds of each process (from /proc: Temporal server,
   codec server, CPU pool, GPU pool, this client), how each pool's CPU splits
   (model inference, image decoding, face pipeline, the rest: the pools report
   it on SIGUSR1, see ``models/usage.py``), task dispatches, history events and
   payload bytes (from the histories), and each process's peak RSS.
3. The scale curve: throughput and p50/p95 latency at each ``--scale`` level.
4. ``--soak K``: K verifications at ``--concurrency`` in flight, the RSS of
   every process sampled ten times: it must stay flat (minutes: not for CI).
5. The bare pipeline on the same models without Temporal (decode, observe
   faces, liveness, two embeddings, cosine): sequential p50/p95 and throughput
   at the same levels, so that the ratios printed are measured in this run.

``--profile DIR`` runs the pools under pyinstrument (``pip install
'.[bench]'``) and writes ``DIR/cpu.txt`` and ``DIR/gpu.txt``; profiling slows
the pools down, so read its numbers as shares, not as the benchmark's.
Numbers on a shared machine are noisy: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from google.protobuf.message import Message

from devstack import stack as devstack
from devstack.samples import SamplePair, sample_pairs
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
from workers.profiling import PROFILE_DIR_VARIABLE

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
POOLS = ("cpu", "gpu")


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


# --- Processes, from /proc ----------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _members(pid: int, others: Iterable[int]) -> set[int]:
    """The process and its live descendants, less the trees of ``others`` among them."""
    children = _children()
    excluded = {member for other in others for member in _tree(other, children)}
    return set(_tree(pid, children)) - excluded


def cpu_seconds(pid: int, others: Iterable[int] = ()) -> float:
    """CPU time of the process and its live descendants (user + system)."""
    total = 0.0
    for member in _members(pid, others):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) * _TICK_S
    return total


def memory_mb(pid: int, field: str, others: Iterable[int] = ()) -> float:
    """VmRSS or VmHWM (peak) of the process and its live descendants, in MB."""
    total = 0.0
    for member in _members(pid, others):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


CLIENT = "client (this)"  # with its decoding processes; the stack's processes are its own


def processes(stack: devstack.DevStack) -> dict[str, int]:
    assert stack.server is not None and stack.codec is not None
    return {
        "temporal server": stack.server.pid,
        "codec server": stack.codec.pid,
        "cpu pool": stack.workers["cpu"].pid,
        "gpu pool": stack.workers["gpu"].pid,
        CLIENT: os.getpid(),
    }


def _others(pids: dict[str, int], name: str) -> list[int]:
    return [pid for other, pid in pids.items() if other != name] if name == CLIENT else []


def cpu_by_process(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid, _others(pids, name)) for name, pid in pids.items()}


def memory_by_process(pids: dict[str, int], field: str) -> dict[str, float]:
    return {name: memory_mb(pid, field, _others(pids, name)) for name, pid in pids.items()}


async def pool_usage(stack: devstack.DevStack) -> dict[str, dict[str, float]]:
    """Each pool's CPU split by kind of work (asks with SIGUSR1, reads its report)."""
    reports = {}
    for pool in POOLS:
        path = stack.settings.home / "usage" / f"{pool}.json"
        path.unlink(missing_ok=True)
        stack.workers[pool].send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {pool} pool wrote no usage report")
            await asyncio.sleep(0.02)
        reports[pool] = json.loads(path.read_text())
    return reports


# --- Verifications ------------------------------------------------------------------


async def verify(client: VerificationClient, pair: SamplePair) -> tuple[float, str]:
    started = time.perf_counter()
    draft = await client.create(pair.selfie, pair.document, subject_ref="bench")
    await client.start(draft)
    result = await client.result(draft.verification_id)
    assert result.decision.value == pair.expected.split()[0], (pair.name, result)
    return (time.perf_counter() - started) * 1000, draft.verification_id


async def in_flight(
    client: VerificationClient, pairs: list[SamplePair], concurrency: int
) -> tuple[float, list[float], list[str]]:
    """Verifications/s, latencies (ms) and ids of ``pairs``, ``concurrency`` at a time."""
    limit = asyncio.Semaphore(concurrency)

    async def bounded(pair: SamplePair) -> tuple[float, str]:
        async with limit:
            return await verify(client, pair)

    started = time.perf_counter()
    done = await asyncio.gather(*(bounded(pair) for pair in pairs))
    rate = len(pairs) / (time.perf_counter() - started)
    return rate, [ms for ms, _ in done], [vid for _, vid in done]


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


def bare_in_flight(
    run: Callable[[SamplePair], float], pairs: list[SamplePair], concurrency: int
) -> tuple[float, list[float]]:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(run, pairs))
    return len(pairs) / (time.perf_counter() - started), latencies


# --- Histories ----------------------------------------------------------------------


def payload_bytes(message: Message) -> int:
    """Bytes of every Payload's data in a protobuf message (encrypted, as stored)."""
    if message.DESCRIPTOR.full_name == "temporal.api.common.v1.Payload":
        return len(message.data)  # type: ignore[attr-defined]
    total = 0
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if isinstance(value, Message):
            total += payload_bytes(value)
        else:  # a repeated field or a map
            items = value.values() if hasattr(value, "values") else value
            total += sum(payload_bytes(item) for item in items if isinstance(item, Message))
    return total


async def history_costs(client: VerificationClient, ids: Iterable[str]) -> dict[str, float]:
    """Mean per verification: history events, task dispatches, payload and history bytes."""
    rows = []
    for verification_id in ids:
        history = await client.handle(verification_id).fetch_history()
        kinds = [event.WhichOneof("attributes") for event in history.events]
        rows.append(
            (
                len(history.events),
                kinds.count("workflow_task_scheduled_event_attributes"),
                kinds.count("activity_task_scheduled_event_attributes"),
                kinds.count("upsert_workflow_search_attributes_event_attributes"),
                kinds.count("marker_recorded_event_attributes"),
                sum(payload_bytes(event) for event in history.events),
                sum(event.ByteSize() for event in history.events),
            )
        )
    names = (
        "events",
        "workflow tasks",
        "activity tasks",
        "search-attribute upserts",
        "local-activity markers",
        "payload bytes",
        "history bytes",
    )
    return {
        name: statistics.mean(column)
        for name, column in zip(names, zip(*rows, strict=True), strict=True)
    }


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
        f"{total:.0f} ms from start to completion on the server; {len(waits)} task dispatches, "
        f"each waiting {median_wait:.0f} ms (median) in its queue"
    )


# --- The run ------------------------------------------------------------------------


@dataclasses.dataclass
class StackNumbers:
    latencies: list[float]
    breakdown: str
    rate: float
    cpu_per_verification: dict[str, float]
    usage: dict[str, dict[str, float]]  # pool -> kind -> CPU seconds per verification
    history: dict[str, float]
    peak_rss: dict[str, float]
    scale: dict[int, tuple[float, list[float]]]
    soak: list[tuple[int, dict[str, float]]]


async def run_stack(
    settings: Settings,
    cases: list[SamplePair],
    count: int,
    concurrency: int,
    scale: list[int],
    soak: int,
) -> StackNumbers:
    stack = devstack.DevStack(settings)
    await stack.start()
    try:
        client = await VerificationClient.connect(settings)
        await asyncio.to_thread(stack.wait_ready)
        for pair in cases * 2:  # warm-up: first runs pay for connections and caches
            await verify(client, pair)

        work = [cases[i % 2] for i in range(count)]
        sequential = [await verify(client, pair) for pair in work]
        median_id = sorted(sequential)[len(sequential) // 2][1]
        breakdown = await hop_breakdown(client, median_id)

        pids = processes(stack)
        many = [cases[i % 2] for i in range(count * 2)]
        cpu_before = cpu_by_process(pids)
        usage_before = await pool_usage(stack)
        rate, _, ids = await in_flight(client, many, concurrency)
        usage_after = await pool_usage(stack)
        cpu_after = cpu_by_process(pids)
        cpu = {name: (cpu_after[name] - cpu_before[name]) / len(many) for name in pids}
        split = {
            pool: {
                kind: (usage_after[pool][kind] - usage_before[pool][kind]) / len(many)
                for kind in usage_after[pool]
                if kind != "peak_rss_mb"
            }
            for pool in POOLS
        }
        history = await history_costs(client, ids)

        curve = {}
        for level in scale:
            level_rate, latencies, _ = await in_flight(
                client, [cases[i % 2] for i in range(max(count, 2 * level))], level
            )
            curve[level] = (level_rate, latencies)

        samples = []
        if soak:
            step = max(1, soak // 10)
            samples.append((0, memory_by_process(pids, "VmRSS")))
            for done in range(step, soak + 1, step):
                print(f"soak: {done}/{soak}", file=sys.stderr, flush=True)
                await in_flight(client, [cases[i % 2] for i in range(step)], concurrency)
                samples.append((done, memory_by_process(pids, "VmRSS")))
        peak = memory_by_process(pids, "VmHWM")
    finally:
        stack.stop()
    return StackNumbers(
        [ms for ms, _ in sequential], breakdown, rate, cpu, split, history, peak, curve, samples
    )


def report(
    stack: StackNumbers,
    bare: list[float],
    bare_rate: float,
    bare_scale: dict[int, tuple[float, list[float]]],
    count: int,
    concurrency: int,
) -> None:
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"{count} verifications one after another (same person / different people alternating):")
    for name, values in (("through the stack", stack.latencies), ("bare pipeline", bare)):
        print(
            f"  {name:<18} p50 {statistics.median(values):6.0f} ms"
            f"   p95 {percentile(values, 0.95):6.0f} ms"
        )
    p50_ratio = statistics.median(stack.latencies) / statistics.median(bare)
    print(f"  median verification: {stack.breakdown}")

    print(f"{count * 2} verifications, {concurrency} in flight:")
    print(f"  through the stack  {stack.rate:6.2f} verifications/s")
    print(f"  bare pipeline      {bare_rate:6.2f} verifications/s")
    print("  CPU ms per verification, by process:")
    for name, seconds in stack.cpu_per_verification.items():
        print(f"    {name:<16} {seconds * 1000:7.1f}")
    total = sum(stack.cpu_per_verification.values())
    print(f"    {'all':<16} {total * 1000:7.1f}")
    overheads = {}
    print("  inside the pools, CPU ms per verification:")
    print(
        f"    {'pool':<6}{'process':>9}{'inference':>11}{'decode':>8}{'face pipeline':>15}"
        f"{'Temporal core':>15}{'other Python':>14}"
    )
    pool_total = spent = 0.0
    for pool, kinds in stack.usage.items():
        other = kinds["process"] - kinds["inference"] - kinds["decode"]
        python = other - kinds["face_pipeline"] - kinds["native_other"]
        print(
            f"    {pool:<6}{kinds['process'] * 1000:9.1f}{kinds['inference'] * 1000:11.1f}"
            f"{kinds['decode'] * 1000:8.1f}{kinds['face_pipeline'] * 1000:15.1f}"
            f"{kinds['native_other'] * 1000:15.1f}{python * 1000:14.1f}"
        )
        overheads[pool] = other / kinds["process"]
        pool_total += kinds["process"]
        spent += kinds["inference"] + kinds["decode"]
    print("  per verification, from its history:")
    for name, value in stack.history.items():
        print(f"    {name:<26} {value:9.1f}")
    print("  peak RSS, MB:")
    for name, mb in stack.peak_rss.items():
        print(f"    {name:<16} {mb:7.0f}")

    print("scale curve (verifications/s, latency p50 / p95 in ms):")
    print(
        f"  {'in flight':>9}  {'stack/s':>8} {'p50':>6} {'p95':>6}"
        f"   {'bare/s':>7} {'p50':>6} {'p95':>6}"
    )
    for level, (rate, latencies) in stack.scale.items():
        level_bare, bare_latencies = bare_scale[level]
        print(
            f"  {level:>9}  {rate:8.2f} {statistics.median(latencies):6.0f}"
            f" {percentile(latencies, 0.95):6.0f}   {level_bare:7.2f}"
            f" {statistics.median(bare_latencies):6.0f} {percentile(bare_latencies, 0.95):6.0f}"
        )
    if stack.soak:
        print("soak: RSS in MB after N verifications:")
        names = list(stack.soak[0][1])
        print("  " + f"{'N':>6}" + "".join(f"{name:>17}" for name in names))
        for done, rss in stack.soak:
            print("  " + f"{done:>6}" + "".join(f"{rss[name]:17.0f}" for name in names))
        first, last = stack.soak[1][1], stack.soak[-1][1]  # after the first step: warm
        growth = ", ".join(f"{name} {last[name] / first[name]:.2f}x" for name in names)
        print(f"  last / first warm sample: {growth}")

    print("targets (ratios in this run):")
    print(
        f"  throughput stack/bare at {concurrency} in flight: {stack.rate / bare_rate:.2f} (>= 0.6)"
    )
    print(f"  p50 stack/bare, one at a time: {p50_ratio:.2f} (<= 1.3)")
    worker_overhead = (pool_total - spent) / pool_total
    by_pool = ", ".join(f"{pool} {share:.0%}" for pool, share in overheads.items())
    print(f"  pool CPU not in inference or decoding: {worker_overhead:.0%} ({by_pool}) (<= 20%)")


async def main(options: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="idflow-bench-"))
    settings = bench_settings(home)
    os.environ.update(settings.to_env())  # prepare() reads keys from the environment
    if options.profile:
        os.environ[PROFILE_DIR_VARIABLE] = str(Path(options.profile).resolve())
    devstack.prepare(settings)
    pairs = sample_pairs()
    cases = [pairs["same person"], pairs["different people"]]
    scale = [int(level) for level in options.scale.split(",") if level]

    stack = await run_stack(
        settings, cases, options.count, options.concurrency, scale, options.soak
    )

    with ModelServer(settings.model_cache) as server:
        models = FaceModels.load(server, resolve_all(get_engine(settings.database_url), {}))
        run = bare_pipeline(models)
        for pair in cases * 2:
            run(pair)
        bare = [run(pair) for pair in (cases[i % 2] for i in range(options.count))]
        many = [cases[i % 2] for i in range(options.count * 2)]
        bare_rate, _ = bare_in_flight(run, many, options.concurrency)
        bare_scale = {
            level: bare_in_flight(
                run, [cases[i % 2] for i in range(max(options.count, 2 * level))], level
            )
            for level in scale
        }
    report(stack, bare, bare_rate, bare_scale, options.count, options.concurrency)
    if options.profile:
        print(f"profiles: {options.profile}/cpu.txt, {options.profile}/gpu.txt")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--count", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--scale", default="1,8,32,128", help="in-flight levels, comma-separated")
    parser.add_argument("--soak", type=int, default=0, help="verifications of the RSS soak")
    parser.add_argument("--profile", help="directory for the pools' pyinstrument profiles")
    asyncio.run(main(parser.parse_args()))
