"""Labelled sets for ``idflow models evaluate``: their layout, reading, and the sample sets.

Layouts (a folder or a CSV; image paths in a CSV are relative to the CSV):
- embed: a folder with one sub-folder per person (every pair inside one folder
  is genuine, every pair across folders an impostor), or a CSV ``a,b,same``
  (``same`` = 1/0, true/false, yes/no).
- liveness: a folder with ``live/`` and ``attack/`` (any depth below; the
  sub-folder names the kind, e.g. ``live/photo``, ``attack/print/held-up``, and
  rates are also reported per kind, attacks per group = first sub-folder), or a
  CSV ``image,label`` (``label`` = live or attack).

``write_sample_sets`` builds both from the registry sample photos
(models/lifecycle/samples.py). They are small, and honest about it: 4 people (10 genuine
and 18 impostor pairs); 7 genuine photos and 70 simulated attacks (print,
screen replay, re-capture, ...), made by image processing, not captured.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from imaging.decode import decode_image

from .samples import BIDEN, OBAMA, fetch_samples

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
_TRUE = {"1", "true", "yes", "same", "genuine"}


class LabelledSetError(ValueError):
    """The labelled set is not laid out as described above."""


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path
    same: bool
    groups: tuple[str, str] = ("", "")  # the subjects of a and b (split_groups)


@dataclass(frozen=True)
class Presentation:
    image: Path
    live: bool
    kind: str = "live"  # the sub-folder of live/ or attack/ (or CSV column "attack")
    group: str = ""  # the source photo or subject (split_groups)


def split_groups(groups: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(tune, holdout): the groups ordered by the sha256 of their names, every second one held
    out. Deterministic, half of them (rounded down) held out, and never an image of one group
    in both parts. A group is a liveness image's file name without its suffix (the source
    photo: ``live/photo/obama.jpg`` and ``attack/print/flat/obama.jpg`` are one group) or the
    CSV's ``group`` column; an embed image's person folder, or in a CSV the folder above
    each image."""
    ranked = sorted(set(groups), key=lambda g: hashlib.sha256(g.encode()).hexdigest())
    return frozenset(ranked[0::2]), frozenset(ranked[1::2])


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def _csv_rows(path: Path, columns: tuple[str, str, str] | tuple[str, str]) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or any(c not in rows[0] for c in columns):
        raise LabelledSetError(f"{path} must be a CSV with columns {', '.join(columns)}")
    return rows


def _existing(source: Path) -> Path:
    if not source.exists():
        raise LabelledSetError(f"labelled set {source} does not exist")
    return source


def read_pairs(source: Path) -> list[Pair]:
    """Genuine and impostor pairs from identity folders or a CSV ``a,b,same``."""
    if _existing(source).is_dir():
        people = {d.name: _images(d) for d in sorted(source.iterdir()) if d.is_dir()}
        tagged = [(person, image) for person, images in people.items() for image in images]
        return [Pair(a, b, pa == pb, (pa, pb)) for (pa, a), (pb, b) in combinations(tagged, 2)]
    pairs = []
    for row in _csv_rows(source, ("a", "b", "same")):
        a, b = source.parent / row["a"], source.parent / row["b"]
        same = row["same"].strip().lower() in _TRUE
        pairs.append(Pair(a, b, same, (a.parent.name, b.parent.name)))
    return pairs


def read_presentations(source: Path) -> list[Presentation]:
    """Bona fide and attack presentations from ``live/`` + ``attack/`` or a CSV ``image,label``."""
    if _existing(source).is_dir():
        live, attack = source / "live", source / "attack"
        if not live.is_dir() or not attack.is_dir():
            raise LabelledSetError(f"{source} must hold the folders live/ and attack/")
        return [Presentation(p, True, _kind(live, p, "live"), p.stem) for p in _images(live)] + [
            Presentation(p, False, _kind(attack, p, "attack"), p.stem) for p in _images(attack)
        ]
    presentations = []
    for row in _csv_rows(source, ("image", "label")):
        label = row["label"].strip().lower()
        if label not in ("live", "attack"):
            raise LabelledSetError(f"{source}: label must be live or attack, got {label!r}")
        kind = "live" if label == "live" else (row.get("attack") or "attack")
        image = source.parent / row["image"]
        group = row.get("group") or image.stem
        presentations.append(Presentation(image, label == "live", kind, group))
    return presentations


def _content(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        raise LabelledSetError(f"cannot read {path}: {error.strerror or error}") from None


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def pairs_digest(pairs: list[Pair]) -> str:
    """sha256 over the pairs' image contents and labels: the same set has it anywhere."""
    lines = []
    for pair in pairs:
        a, b = sorted((_content(pair.a), _content(pair.b)))
        lines.append(f"{a} {b} {'same' if pair.same else 'different'}")
    return _digest(lines)


def presentations_digest(presentations: list[Presentation]) -> str:
    """sha256 over the presentations' image contents, labels and attack kinds."""
    return _digest(
        [f"{_content(p.image)} {p.kind if not p.live else 'live'}" for p in presentations]
    )


def _kind(folder: Path, image: Path, default: str) -> str:
    """The sub-folder of ``live/`` or ``attack/`` the image is in (its kind), or ``default``."""
    below = image.parent.relative_to(folder).as_posix()
    return default if below == "." else below


# Simulated presentation attacks ---------------------------------------------------------


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def _printed(image: Image.Image) -> Image.Image:
    """Ink on paper: softened, reduced dynamic range (paper white, ink black), grain."""
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(1.5)), np.float32) * 0.75 + 30
    pixels += np.random.default_rng(0).normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _screen(image: Image.Image) -> Image.Image:
    """A replay on a display: coarse pixels, RGB sub-pixel stripes, display gamma."""
    coarse = image.resize((image.width // 3, image.height // 3), Image.Resampling.BILINEAR)
    pixels = np.asarray(coarse.resize(image.size, Image.Resampling.NEAREST), np.float32)
    stripes = np.ones_like(pixels)
    for channel in range(3):
        stripes[:, channel::3, :] *= 0.75
    pixels = 255 * ((pixels * stripes) / 255) ** 0.8
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _moire(image: Image.Image) -> Image.Image:
    pixels = np.asarray(image, np.float32)
    rows, cols = np.mgrid[0 : image.height, 0 : image.width]
    pattern = 1 + 0.12 * np.sin(cols * 0.9 + rows * 0.35)
    return Image.fromarray(np.clip(pixels * pattern[..., None], 0, 255).astype(np.uint8))


def _held_up(image: Image.Image) -> Image.Image:
    """The picture held in front of the camera: smaller, on a plain background."""
    background = Image.new("RGB", (int(image.width * 1.6), int(image.height * 1.6)), (90, 80, 70))
    background.paste(
        image, ((background.width - image.width) // 2, (background.height - image.height) // 2)
    )
    return background


def _recaptured(factor: int) -> Callable[[Image.Image], Image.Image]:
    def run(image: Image.Image) -> Image.Image:
        small = image.resize(
            (image.width // factor, image.height // factor), Image.Resampling.BILINEAR
        )
        return small.resize(image.size, Image.Resampling.BILINEAR)

    return run


ATTACKS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "recapture-4x": _recaptured(4),
    "recapture-8x": _recaptured(8),
    "blur": lambda image: image.filter(ImageFilter.GaussianBlur(3)),
    "jpeg-q10": lambda image: _jpeg(image, 10),
    "screen": _screen,
    "moire": _moire,
    "print": _printed,
    "held-up": _held_up,
    "grey-print": lambda image: ImageOps.grayscale(image).convert("RGB"),
    "print-held-up": lambda image: _held_up(_printed(image)),
}

IDENTITIES = {
    "barack-obama": OBAMA,
    "joe-biden": (BIDEN,),
    "eileen-collins": ("astronaut.png",),
    "cameraman": ("camera.png",),
}
BONA_FIDE = (*OBAMA, BIDEN, "astronaut.png")


def write_sample_sets(root: Path, photo_dir: Path | None = None) -> tuple[Path, Path]:
    """Write the identity set and the liveness set of the sample photos under ``root``.

    Returns (identities folder, liveness folder). Files are rewritten only when
    missing, so a second call costs nothing.
    """
    photos = photo_dir or fetch_samples()
    identities, liveness = root / "identities", root / "liveness"
    for person, names in IDENTITIES.items():
        for name in names:
            _copy(photos / name, identities / person / name)
    for name in BONA_FIDE:
        _copy(photos / name, liveness / "live" / name)
        upright = None
        for attack, simulate in ATTACKS.items():
            target = liveness / "attack" / attack / f"{Path(name).stem}.jpg"
            if target.exists():
                continue
            if upright is None:
                upright = Image.fromarray(decode_image((photos / name).read_bytes()))
            out = io.BytesIO()
            simulate(upright).save(out, "JPEG", quality=95)
            _write(target, out.getvalue())
    return identities, liveness


def _copy(source: Path, target: Path) -> None:
    if not target.exists():
        _write(target, source.read_bytes())


def _write(target: Path, data: bytes) -> None:
    """Write whole or not at all: an interrupted run leaves no half image behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    partial.write_bytes(data)
    os.replace(partial, target)


# Face-match sets: ordinary capture variations of real photos ------------------------------


def lfw_thumbnail(face: np.ndarray) -> np.ndarray:
    """A 25x25 grey LFW crop as a 112 px face on a grey canvas 1.5x its size: the detector
    needs some context around a tight crop."""
    big = Image.fromarray(face).convert("RGB").resize((112, 112), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (168, 168), (127, 127, 127))
    canvas.paste(big, (28, 28))
    return np.asarray(canvas)


def _turned(degrees: float) -> Callable[[Image.Image], Image.Image]:
    return lambda image: image.rotate(
        degrees, Image.Resampling.BILINEAR, expand=True, fillcolor=(127, 127, 127)
    )


def _mirrored(image: Image.Image) -> Image.Image:
    return ImageOps.mirror(image)


def _half_size_jpeg(image: Image.Image) -> Image.Image:
    return _jpeg(image.resize((image.width // 2, image.height // 2), Image.Resampling.BILINEAR), 60)


# What changes between two ordinary captures of one face: side (a selfie camera mirrors),
# a head tilt, resolution and compression, light. Each variant stays an easy photo to judge.
CAPTURE_VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "original": lambda image: image,
    "mirrored": _mirrored,
    "turned-8": _turned(8),
    "mirrored-turned-minus-8": lambda image: _turned(-8)(_mirrored(image)),
    "half-size-jpeg-q60": _half_size_jpeg,
    "dimmer-mirrored": lambda image: ImageEnhance.Brightness(_mirrored(image)).enhance(0.8),
}
LFW_VARIANTS = ("original", "mirrored")

# Tune on one part, report both: people (and Obama's photos) never cross parts.
FACE_SET_PARTS: dict[str, dict[str, tuple[str, ...]]] = {
    "tune": {
        "barack-obama": ("obama.jpg", "obama2.jpg", "obama_partial_face.jpg"),
        "eileen-collins": ("astronaut.png",),
    },
    "holdout": {
        "barack-obama": ("obama3.jpg", "obama_partial_face2.jpg"),
        "joe-biden": (BIDEN,),
    },
}
LFW_PARTS = {"tune": range(0, 50), "holdout": range(50, 100)}


@dataclass(frozen=True)
class FaceSet:
    """One part of the face-match set: every pair of ``folder`` (identity folders), and
    ``photos``, a CSV of the pairs between ordinary photos only (no LFW thumbnails)."""

    folder: Path
    photos: Path


def write_face_sets(root: Path, photo_dir: Path | None = None) -> dict[str, FaceSet]:
    """Write the face-match sets ``tune`` and ``holdout`` under ``root`` (see FACE_SET_PARTS).

    Identities: the sample photos, each in every CAPTURE_VARIANTS, and the 100 LFW
    thumbnails of scikit-image's ``lfw_subset`` (each its own identity, original and
    mirrored; LFW repeats some people, so a few "impostor" pairs may be one person,
    which can only raise the measured FMR). Files are rewritten only when missing.
    """
    photos = photo_dir or fetch_samples()
    lfw = np.round(np.load(photos / "lfw_subset.npy")[:100] * 255).astype(np.uint8)
    sets = {}
    for part, people in FACE_SET_PARTS.items():
        folder = root / f"faces-{part}"
        photo_files = []
        for person, names in people.items():
            for name in names:
                upright = None
                for variant, change in CAPTURE_VARIANTS.items():
                    target = folder / person / f"{Path(name).stem}-{variant}.jpg"
                    photo_files.append(target)
                    if target.exists():
                        continue
                    if upright is None:
                        upright = Image.fromarray(decode_image((photos / name).read_bytes()))
                    _write(target, _jpeg_bytes(change(upright)))
        for index in LFW_PARTS[part]:
            for variant in LFW_VARIANTS:
                target = folder / f"lfw-{index:03d}" / f"{variant}.png"
                if not target.exists():
                    thumbnail = Image.fromarray(lfw_thumbnail(lfw[index]))
                    out = io.BytesIO()
                    CAPTURE_VARIANTS[variant](thumbnail).save(out, "PNG")
                    _write(target, out.getvalue())
        csv_path = root / f"faces-{part}-photos.csv"
        lines = ["a,b,same"] + [
            f"{a.relative_to(root)},{b.relative_to(root)},{int(a.parent == b.parent)}"
            for a, b in combinations(photo_files, 2)
        ]
        _write(csv_path, ("\n".join(lines) + "\n").encode())
        sets[part] = FaceSet(folder, csv_path)
    return sets


def _jpeg_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=95)
    return out.getvalue()
