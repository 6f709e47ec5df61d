"""Benchmark of the face models on this machine (not a test: it prints numbers).

    .venv/bin/python bench/bench_models.py [--repeat N] [--threads T] [--json]

1. Per-stage latency (median ms) on the registry sample photos: decode, detect,
   landmarks, align+embed, liveness, eye, pose, quality measures, and the whole
   per-image chain (decode -> observe_faces -> liveness -> embedding).
2. Throughput of the whole chain with 1, 2 and 4 caller threads (as activities).
3. Batching gain for the GPU pool's models (embed, liveness), as ratios measured
   in this run: ``session``: one session.run of B items vs B runs of one item;
   ``batcher``: B threads calling ``Runner.run`` through the dynamic batcher vs
   the same B threads calling an unbatched runner.

Models and photos are pulled through the package registries on first use.
Numbers on a shared machine are noisy: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import median_ms
from domain.enums import DECIDING_TASKS
from models.batching import BatchPolicy
from models.face import (
    FaceModels,
    decode_image,
    face_embedding,
    liveness_score,
    observe_faces,
    stages,
)
from models.face.quality import exposure, face_view
from models.lifecycle.pull import pull
from models.lifecycle.registry import register_pulled, resolve_all
from models.lifecycle.samples import BIDEN, OBAMA, fetch_samples
from models.serving import CPU, CUDA, ModelServer
from settings import Settings
from store.engine import get_engine

PHOTOS = (*OBAMA, BIDEN, "astronaut.png")
BATCH_SIZES = (1, 4, 8, 16)


def stage_latencies(models: FaceModels, photos: dict[str, bytes], repeat: int) -> dict[str, float]:
    """Median ms of each stage, averaged over the photos."""
    per_stage: dict[str, list[float]] = {}
    for data in photos.values():
        for stage, run in _stages(models, data).items():
            per_stage.setdefault(stage, []).append(median_ms(run, repeat, warm_up=True))
    return {stage: round(statistics.mean(values), 2) for stage, values in per_stage.items()}


def _stages(models: FaceModels, data: bytes) -> dict[str, Callable[[], object]]:
    """Each stage of the chain on one photo, as a call to time."""
    image = decode_image(data)
    height, width = image.shape[:2]
    faces, _ = observe_faces(image, models)
    face = faces[0]
    box = tuple(face.box)
    view = stages.detector_view(image)
    points68 = stages.read_landmarks(models.landmarks.run(stages.landmarks_input(image, box)), box)
    return {
        "decode": lambda: decode_image(data),
        "detect": lambda: stages.read_detections(
            models.detect.run(stages.detect_input(stages.detector_view(image))), width, height
        ),
        "landmarks": lambda: stages.read_landmarks(
            models.landmarks.run(stages.landmarks_input(image, box)), box
        ),
        "align+embed": lambda: face_embedding(image, face, models),
        "liveness": lambda: liveness_score(image, face, models),
        "eye (both)": lambda: [
            models.eye.run(stages.eye_input(image, b)) for b in stages.eye_boxes(points68)
        ],
        "pose": lambda: stages.read_pose(models.pose.run(stages.pose_input(image, box))),
        "quality measures": lambda: (exposure(face_view(image, box)), exposure(view)),
        "whole chain": lambda: _chain(data, models),
    }


def _one_by_one(runner, items) -> list:
    return [runner.run(x) for x in items]


def _chain(data: bytes, models: FaceModels) -> float:
    image = decode_image(data)
    faces, _ = observe_faces(image, models)
    liveness_score(image, faces[0], models)
    face_embedding(image, faces[0], models)
    return 0.0


def chain_throughput(
    models: FaceModels, photos: dict[str, bytes], callers: int, seconds: float
) -> float:
    """Images per second through the whole chain with ``callers`` threads (like activities)."""
    images = list(photos.values())
    rounds = max(1, int(seconds * 1000 / (len(images) * 30)))  # about ``seconds`` at 30 ms/image
    rate = concurrent_rate(lambda data: _chain(data, models), images, callers, rounds * len(images))
    return round(rate, 1)


def concurrent_rate(run: Callable[[object], object], items, callers: int, per_caller: int) -> float:
    """Items per second when ``callers`` threads each run ``per_caller`` items."""
    start = threading.Barrier(callers + 1)

    def caller(index: int) -> None:
        start.wait()
        for i in range(per_caller):
            run(items[(index + i) % len(items)])

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return callers * per_caller / (time.perf_counter() - began)


def batching_gains(cache: Path, choices: dict, threads: int, repeat: int) -> dict[str, dict]:
    results: dict[str, dict] = {}
    with ModelServer(cache, threads=threads) as plain:
        for task in DECIDING_TASKS:
            single = plain.runner(choices[task])
            items = np.random.default_rng(0).random((16, *single.input_shape), dtype=np.float32)
            rows = {}
            for size in BATCH_SIZES:
                # Forced on whatever provider runs here, to measure what the default skips.
                policy = BatchPolicy(max_batch_size=size, max_wait_ms=2.0, providers=(CPU, CUDA))
                with ModelServer(cache, batch_policy=policy, threads=threads) as batching:
                    batched = batching.runner(choices[task])
                    one_by_one = median_ms(
                        functools.partial(_one_by_one, single, items[:size]), repeat, warm_up=True
                    )
                    as_batch = median_ms(
                        functools.partial(batched.run_batch, items[:size]), repeat, warm_up=True
                    )
                    per_caller = max(4, repeat * 2 // size)
                    unbatched_rate = concurrent_rate(single.run, items, size, per_caller)
                    batched_rate = concurrent_rate(batched.run, items, size, per_caller)
                    sizes = batched.batch_sizes
                    rows[size] = {
                        "session_gain": round(one_by_one / as_batch, 2),
                        "batcher_gain": round(batched_rate / unbatched_rate, 2),
                        "batched_items_per_s": round(batched_rate, 1),
                        "unbatched_items_per_s": round(unbatched_rate, 1),
                        "mean_batch": round(
                            sum(k * v for k, v in sizes.items()) / max(1, sum(sizes.values())), 1
                        ),
                        "mode": batched.batching,
                    }
            results[task] = rows
    return results


def production_choices(cache: Path) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        engine = get_engine(f"sqlite:///{scratch}/registry.db")
        register_pulled(engine, cache)
        choices = resolve_all(engine, {})
        engine.dispose()
    return choices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per measurement")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="onnxruntime intra-op threads per session (default: serving's)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    cache = pull(settings, progress=lambda _: None).cache_root
    photo_dir = fetch_samples(progress=lambda _: None)
    photos = {name: (photo_dir / name).read_bytes() for name in PHOTOS}
    choices = production_choices(cache)
    with ModelServer(cache, threads=args.threads) as server:
        models = FaceModels.load(server, choices)
        report = {
            "machine": {
                "cpus": os.cpu_count(),
                "load_average": os.getloadavg(),
                "provider": server.provider,
                "threads": server.threads,
            },
            "photos": {
                name: "x".join(map(str, decode_image(data).shape[1::-1]))
                for name, data in photos.items()
            },
            "stage_ms": stage_latencies(models, photos, args.repeat),
            "chain_images_per_s": {
                callers: chain_throughput(models, photos, callers, 3.0) for callers in (1, 2, 4)
            },
        }
        threads = server.threads
    report["batching"] = batching_gains(cache, choices, threads, args.repeat)
    report["machine"]["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def render(report: dict) -> str:
    machine = report["machine"]
    lines = [
        f"face models on {machine['cpus']} CPUs, {machine['provider']}, "
        f"{machine['threads']} threads/session; load average before "
        f"{'/'.join(f'{v:.2f}' for v in machine['load_average'])}, after "
        f"{'/'.join(f'{v:.2f}' for v in machine['load_average_after'])}",
        f"photos: {', '.join(f'{k} {v}' for k, v in report['photos'].items())}",
        "",
        f"{'stage':<18}{'median ms (mean over photos)':>30}",
    ]
    lines += [f"{stage:<18}{ms:>30.2f}" for stage, ms in report["stage_ms"].items()]
    lines += [
        "",
        "whole chain throughput: "
        + ", ".join(
            f"{rate} images/s with {callers} caller thread(s)"
            for callers, rate in report["chain_images_per_s"].items()
        ),
        "",
    ]
    lines.append(
        f"{'model':<10}{'batch':>6}{'session gain':>14}{'batcher gain':>14}"
        f"{'batched/s':>11}{'unbatched/s':>13}{'mean batch':>12}  mode"
    )
    for task, rows in report["batching"].items():
        for size, row in rows.items():
            lines.append(
                f"{task:<10}{size:>6}{row['session_gain']:>14.2f}"
                f"{row['batcher_gain']:>14.2f}{row['batched_items_per_s']:>11.1f}"
                f"{row['unbatched_items_per_s']:>13.1f}{row['mean_batch']:>12.1f}"
                f"  {row['mode']}"
            )
    lines.append("gain = batched / one-at-a-time throughput in this run; > 1 means batching helps")
    lines.append(
        f"the pools batch only on {', '.join(BatchPolicy().providers)} "
        "(models/batching.py BatchPolicy.providers); elsewhere each call runs at once"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
