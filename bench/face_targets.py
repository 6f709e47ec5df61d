"""Face-match and quality targets on the registry face sets (models/lifecycle/labelled_sets).

    .venv/bin/python -m bench.face_targets

For each part (``tune``: what thresholds and rules were set on; ``holdout``:
never looked at while tuning) it prints FNMR at FMR 0.1 % (goal <= 1 %), the
production thresholds' FMR/FNMR, and the share of genuine pairs of ordinary
photos that the quality check sends back (goal <= 3 %), with the reasons. It
also prints how mirror-consistent the measured yaw and eye state are: for each
photo and its mirror image, |yaw(photo) + yaw(mirror)| and |P(closed) -
P(closed, mirror)| (0 when consistent).
The same numbers come from ``idflow models evaluate embed <set>``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from models.face import FaceModels, decode_image, observe_faces
from models.lifecycle.evaluate import evaluate
from models.lifecycle.labelled_sets import write_face_sets
from models.lifecycle.pull import pull
from models.lifecycle.registry import register_pulled, resolve_all
from models.lifecycle.samples import sample_root
from models.serving import ModelServer
from settings import Settings
from store.engine import get_engine


def quiet(_: str) -> None:
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="where the sets are written")
    args = parser.parse_args()
    settings = Settings.from_env()
    cache = pull(settings, progress=quiet).cache_root
    sets = write_face_sets(args.root or sample_root(settings) / "eval")
    with tempfile.TemporaryDirectory() as scratch:
        engine = get_engine(f"sqlite:///{scratch}/registry.db")
        register_pulled(engine, cache)
        print(
            f"{'part':<8} {'genuine':>7} {'impostor':>8} {'FNMR@FMR0.1%':>12} {'threshold':>9} "
            f"{'FMR/FNMR@accept':>16} {'no face':>7}  photos: retry (reasons)"
        )
        for part, face_set in sets.items():
            run = evaluate(
                engine, cache, "embed", face_set.folder, record=False, progress=quiet, split=False
            )
            photos = evaluate(
                engine, cache, "embed", face_set.photos, record=False, progress=quiet, split=False
            )
            m, retry = run.metrics, photos.metrics["genuine_quality_retry"]
            at = m["fnmr_at_fmr"]["0.001"]
            accept = m["at_accept"]
            print(
                f"{part:<8} {m['genuine_pairs']:>7} {m['impostor_pairs']:>8} {at['fnmr']:>12.2%} "
                f"{at['threshold']:>9.3f} {accept['fmr']:>7.2%}/{accept['fnmr']:<8.2%} "
                f"{m['failed_to_acquire']:>7}  {retry['retried']}/{retry['pairs']} "
                f"= {retry['rate']:.1%} {retry['reasons']}"
            )
        choices = resolve_all(engine, {})
    mirror_consistency(cache, choices, sets)


def mirror_consistency(cache: Path, choices, sets) -> None:
    pairs = {}
    for face_set in sets.values():
        for original in sorted(face_set.folder.glob("*/*-original.jpg")):
            pairs[original] = original.with_name(original.name.replace("-original", "-mirrored"))
        for original in sorted(face_set.folder.glob("lfw-*/original.png")):
            pairs[original] = original.with_name("mirrored.png")
    with ModelServer(cache) as server:
        models = FaceModels.load(
            server, {t: choices[t] for t in ("detect", "landmarks", "eye", "pose")}
        )
        measured = [
            [observe_faces(decode_image(p.read_bytes()), models)[1] for p in pair]
            for pair in pairs.items()
        ]
    both = [(a, b) for a, b in measured if a.face_count and b.face_count]
    yaw, yaw_mirror = np.array([(a.yaw_deg, b.yaw_deg) for a, b in both]).T
    gap = np.abs(yaw + yaw_mirror)
    print(
        f"yaw of a photo vs its mirror image ({len(both)} pairs): correlation of yaw with "
        f"-yaw(mirror) {np.corrcoef(yaw, -yaw_mirror)[0, 1]:.2f}, |yaw + yaw(mirror)| median "
        f"{np.median(gap):.1f} deg, 95th percentile {np.percentile(gap, 95):.1f}, "
        f"max {gap.max():.1f}"
    )
    eyes = np.array([(a.eyes_closed, b.eyes_closed) for a, b in both if a.eyes_closed is not None])
    eye_gap = np.abs(eyes[:, 0] - eyes[:, 1])
    print(
        f"eyes closed, photo vs mirror image ({len(eyes)} pairs): |P - P(mirror)| median "
        f"{np.median(eye_gap):.3f}, 95th percentile {np.percentile(eye_gap, 95):.3f}, "
        f"max {eye_gap.max():.3f}; pairs on opposite sides of 0.7: "
        f"{int(((eyes > 0.7).sum(axis=1) == 1).sum())}"
    )


if __name__ == "__main__":
    main()
