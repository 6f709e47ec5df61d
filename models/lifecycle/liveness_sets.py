"""The liveness labelled sets: the main set and a stress set, from registry photos only.

``write_liveness_sets(root)`` writes two sets in the layout ``idflow models evaluate
liveness`` reads (``live/<kind>/`` and ``attack/<group>/<kind>/``), from the
face_recognition sdist photos (Obama x5, Biden), scikit-image's astronaut and, when a
mirror holds MiniFASNet (``../shared/models``), upstream's three labelled samples:

Every image is made from the photo reduced to at most 1024 px on its long side, and is
named after its source photo: ``evaluate`` splits tune/holdout by that name, so no attack
of a held-out photo is tuned on.

- bona fide (``live/``): each photo as it is (``photo``), downscaled to 480 px on its
  long side and saved as JPEG quality 70 (``photo-phone``), to 240 px as JPEG quality 75
  (``photo-low-res``: a low-resolution real capture, faces ~45-85 px), and mirrored
  (``photo-mirrored``); upstream's real sample T1.
- print attacks (``attack/print/``): the photo printed (blur 1.2 px, ink range x0.78+28,
  grain sigma 5, a white paper margin of 1/12 of its width), held at 70 % of the frame in
  front of a plain lit wall, flat, tilted (8 % keystone) or in grey (4 % keystone); the
  scene lit unevenly (x1.1 to x0.85 across), then the camera's blur (0.8 px) and noise
  (sigma 3), JPEG quality 95.
- screen attacks (``attack/screen/``): the photo on a display (1/3 resolution shown
  with nearest pixels, R/G/B sub-pixel stripes at 80 %, gamma 0.8, a black bezel of 1/16
  of its width), presented the same way flat, tilted, or with a diagonal glare band.
- captured attacks (``attack/captured/``): upstream's two real attack samples F1, F2.

``stress`` holds what is reported apart because no threshold fixes it: close-ups (the
medium fills the whole frame, no border: models/lifecycle/labelled_sets.py print, screen,
moire and 1/4 re-capture of every photo) and 100 LFW-subset faces (25x25 grey, enlarged
4x) as low-resolution bona fide. Files are written once; a second call costs nothing.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from imaging.decode import decode_image

from .labelled_sets import ATTACKS, _write
from .samples import BIDEN, OBAMA, fetch_samples

# Close-ups: the whole frame is the medium (lifecycle/labelled_sets.py ATTACKS).
CLOSE_UP = ("print", "screen", "moire", "recapture-4x")
PHOTOS = (*OBAMA, BIDEN, "astronaut.png")
LFW_FACES = 100  # lfw_subset.npy: the first 100 are faces
MAX_SIDE = 1024


def _reduced(image: Image.Image, side: int, quality: int) -> Image.Image:
    scale = side / max(image.size)
    small = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def _phone(image: Image.Image) -> Image.Image:
    return _reduced(image, 480, 70)


def _low_res(image: Image.Image) -> Image.Image:
    return _reduced(image, 240, 75)


BONA_FIDE_VARIANTS = {
    "photo": lambda image: image,
    "photo-phone": _phone,
    "photo-low-res": _low_res,
    "photo-mirrored": ImageOps.mirror,
}


def _scene(size: tuple[int, int], seed: int) -> np.ndarray:
    """A plain room behind the medium: a lit wall, smooth and slightly noisy, float RGB."""
    width, height = size
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.8, 1.1, height)[:, None, None]
    base = np.array(rng.uniform(70, 150, 3))[None, None, :]
    return base * rows * np.ones((height, width, 3)) + rng.normal(0, 3, (height, width, 3))


def _printed_medium(face: Image.Image, grey: bool = False) -> Image.Image:
    """The photo printed on paper: softened, duller ink, grain, a white paper margin."""
    image = ImageOps.grayscale(face).convert("RGB") if grey else face
    ink = np.asarray(image.filter(ImageFilter.GaussianBlur(1.2)), np.float32) * 0.78 + 28
    ink += np.random.default_rng(1).normal(0, 5, ink.shape)
    margin = max(4, image.width // 12)
    return ImageOps.expand(_image(ink), border=margin, fill=(235, 232, 225))


def _screen_medium(face: Image.Image) -> Image.Image:
    """The photo on a phone or monitor: display pixels, sub-pixel stripes, gamma, a bezel."""
    coarse = face.resize((face.width // 3, face.height // 3), Image.Resampling.BILINEAR)
    pixels = np.asarray(coarse.resize(face.size, Image.Resampling.NEAREST), np.float32)
    stripes = np.ones_like(pixels)
    for channel in range(3):
        stripes[:, channel::3, channel] *= 1.0
        stripes[:, (channel + 1) % 3 :: 3, channel] *= 0.8
    pixels = 255 * ((pixels * stripes) / 255) ** 0.8
    return ImageOps.expand(_image(pixels), border=max(4, face.width // 16), fill=(12, 12, 14))


def _presented(
    medium: Image.Image, frame: tuple[int, int], tilt: float, glare: bool
) -> Image.Image:
    """The medium held in front of the camera at 70 % of the frame, tilted by ``tilt`` (a
    keystone: the top edge narrower), lit unevenly, optionally with a glare band; then
    the camera's blur and noise."""
    width, height = frame
    scale = 0.7 * min(width / medium.width, height / medium.height)
    size = (max(8, round(medium.width * scale)), max(8, round(medium.height * scale)))
    shown = medium.resize(size, Image.Resampling.BILINEAR)
    inset = tilt * size[0]
    quad = (-inset, 0, -0.0, size[1], size[0], size[1], size[0] + inset, 0)
    warped = shown.transform(size, Image.Transform.QUAD, quad, Image.Resampling.BILINEAR)
    mask = Image.new("L", size, 255).transform(size, Image.Transform.QUAD, quad)
    scene = _image(_scene(frame, seed=size[0]))
    scene.paste(warped, ((width - size[0]) // 2, (height - size[1]) // 2), mask)
    pixels = np.asarray(scene, np.float32)
    light = np.linspace(1.1, 0.85, width)[None, :, None]
    pixels = pixels * light
    if glare:
        rows, cols = np.mgrid[0:height, 0:width]
        band = np.exp(-(((cols - rows * 0.6 - width * 0.3) / (0.08 * width)) ** 2))
        pixels = pixels + 90 * band[..., None]
    camera = _image(pixels).filter(ImageFilter.GaussianBlur(0.8))
    noisy = np.asarray(camera, np.float32) + np.random.default_rng(2).normal(0, 3, pixels.shape)
    return _image(noisy)


def _image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


# Re-captured media: the medium and its border inside a scene, as a camera sees an attack.
PRINT = {
    "flat": lambda face: _presented(_printed_medium(face), face.size, 0.0, False),
    "tilted": lambda face: _presented(_printed_medium(face), face.size, 0.08, False),
    "grey": lambda face: _presented(_printed_medium(face, grey=True), face.size, 0.04, False),
}
SCREEN = {
    "flat": lambda face: _presented(_screen_medium(face), face.size, 0.0, False),
    "tilted": lambda face: _presented(_screen_medium(face), face.size, 0.08, False),
    "glare": lambda face: _presented(_screen_medium(face), face.size, 0.03, True),
}


def write_liveness_sets(
    root: Path, photo_dir: Path | None = None, mirror: Path | None = None
) -> tuple[Path, Path]:
    """Write the main and the stress liveness sets under ``root``; their folders."""
    photos = photo_dir or fetch_samples()
    main, stress = root / "liveness", root / "stress"
    sources = {name: photos / name for name in PHOTOS}
    samples = (Path(mirror) / "minifasnet" / "samples") if mirror else None
    if samples is not None and samples.is_dir():
        sources["image_T1.jpg"] = samples / "image_T1.jpg"
        for attack in ("image_F1.jpg", "image_F2.jpg"):
            _save(main / "attack" / "captured" / attack, samples / attack)
    for name, path in sources.items():
        stem = Path(name).stem
        upright = None
        for kind, variant in BONA_FIDE_VARIANTS.items():
            upright = _each(main / "live" / kind / f"{stem}.jpg", path, variant, upright)
        for group, kinds in (("print", PRINT), ("screen", SCREEN)):
            for kind, simulate in kinds.items():
                target = main / "attack" / group / kind / f"{stem}.jpg"
                upright = _each(target, path, simulate, upright)
        for kind in CLOSE_UP:
            target = stress / "attack" / "close-up" / kind / f"{stem}.jpg"
            upright = _each(target, path, ATTACKS[kind], upright)
    faces = np.load(photos / "lfw_subset.npy")[:LFW_FACES]
    for index, face in enumerate(faces):
        target = stress / "live" / "low-res" / f"lfw-{index:03d}.png"
        if not target.exists():
            grey = Image.fromarray(np.round(face * 255).astype(np.uint8))
            large = grey.resize((100, 100), Image.Resampling.BICUBIC).convert("RGB")
            _write(target, _encoded(large, "PNG"))
    return main, stress


def _each(target: Path, source: Path, make, upright: Image.Image | None) -> Image.Image | None:
    """Write ``make(photo)`` to ``target`` unless it exists; the photo decoded once, at most
    ``MAX_SIDE`` px on its long side (an attack frame is a new capture, not the original)."""
    if target.exists():
        return upright
    if upright is None:
        upright = Image.fromarray(decode_image(source.read_bytes()))
        upright.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
    _write(target, _encoded(make(upright), "JPEG"))
    return upright


def _save(target: Path, source: Path) -> None:
    if not target.exists():
        _write(target, source.read_bytes())


def _encoded(image: Image.Image, kind: str) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **({"quality": 95} if kind == "JPEG" else {}))
    return out.getvalue()
