"""Labelled sets for ``idflow models evaluate``: their layout, reading, and the sample sets.

Layouts (a folder or a CSV; image paths in a CSV are relative to the CSV):
- embed: a folder with one sub-folder per person (every pair inside one folder
  is genuine, every pair across folders an impostor), or a CSV ``a,b,same``
  (``same`` = 1/0, true/false, yes/no).
- liveness: a folder with ``live/`` and ``attack/`` (any depth below), or a
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
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

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


@dataclass(frozen=True)
class Presentation:
    image: Path
    live: bool
    kind: str = "live"  # for attacks: the sub-folder of attack/ (or CSV column "attack")


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
        return [Pair(a, b, pa == pb) for (pa, a), (pb, b) in combinations(tagged, 2)]
    return [
        Pair(
            source.parent / row["a"], source.parent / row["b"], row["same"].strip().lower() in _TRUE
        )
        for row in _csv_rows(source, ("a", "b", "same"))
    ]


def read_presentations(source: Path) -> list[Presentation]:
    """Bona fide and attack presentations from ``live/`` + ``attack/`` or a CSV ``image,label``."""
    if _existing(source).is_dir():
        live, attack = source / "live", source / "attack"
        if not live.is_dir() or not attack.is_dir():
            raise LabelledSetError(f"{source} must hold the folders live/ and attack/")
        return [Presentation(p, True) for p in _images(live)] + [
            Presentation(p, False, _attack_kind(attack, p)) for p in _images(attack)
        ]
    presentations = []
    for row in _csv_rows(source, ("image", "label")):
        label = row["label"].strip().lower()
        if label not in ("live", "attack"):
            raise LabelledSetError(f"{source}: label must be live or attack, got {label!r}")
        kind = "live" if label == "live" else (row.get("attack") or "attack")
        presentations.append(Presentation(source.parent / row["image"], label == "live", kind))
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


def _attack_kind(attack_dir: Path, image: Path) -> str:
    folder = image.parent.relative_to(attack_dir).as_posix()
    return "attack" if folder == "." else folder


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
