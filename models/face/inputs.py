"""A model's input built from its signature (verification/signatures.py), and its score read.

The signature says which region of the image to crop (the whole image, the
face box scaled about its centre, the five points aligned to the ArcFace
template, an eye box), at what size, in which colour order, value range and
layout; a fused model stacks one such crop per member. No code here knows a
model by name.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from domain.contracts import FaceObservation
from domain.signatures import InputSignature, ModelSignature, OutputSignature

from .geometry import (
    ARCFACE_TEMPLATE,
    Box,
    clip_box,
    expand_box,
    resample,
    similarity_transform,
    warp_affine,
)


def model_input(
    signature: ModelSignature,
    image: np.ndarray,
    face: FaceObservation | None = None,
    eye_box: Box | None = None,
) -> np.ndarray:
    """One item (no batch axis) for the model: (C, H, W), or (K, C, H, W) for K stacked crops."""
    crops = [tensor(item, crop(item, image, face, eye_box)) for item in signature.inputs]
    return np.stack(crops) if signature.stacked else crops[0]


def liveness_crops(
    signature: ModelSignature, image: np.ndarray, face: FaceObservation
) -> np.ndarray:
    """The RGB pixels of each input of ``signature``, stacked: (K, H, W, 3) uint8. What the
    quality check keeps for the GPU step (models/face/crops.py)."""
    return np.stack([crop(item, image, face) for item in signature.inputs])


def same_crops(a: ModelSignature, b: ModelSignature) -> bool:
    """Whether two signatures cut the same pixels (colour, values and layout come later)."""

    def cuts(signature: ModelSignature) -> list[tuple]:
        return [(i.region, i.scale, i.fit, tuple(i.size)) for i in signature.inputs]

    return cuts(a) == cuts(b)


def input_from_crops(signature: ModelSignature, crops: np.ndarray) -> np.ndarray:
    """The model's item from ``liveness_crops``-style pixels (K, H, W, 3), one per input."""
    expected = [(item.size[1], item.size[0], 3) for item in signature.inputs]
    if [tuple(c.shape) for c in crops] != expected:
        raise ValueError(
            f"the face crops {[tuple(c.shape) for c in crops]} were not cut for this "
            f"signature, which needs {expected}"
        )
    items = [tensor(item, pixels) for item, pixels in zip(signature.inputs, crops, strict=True)]
    return np.stack(items) if signature.stacked else items[0]


def read_score(output: OutputSignature, outputs: dict[str, np.ndarray]) -> float:
    """The probability of the signature's positive class (e.g. bona fide)."""
    values = outputs[output.tensor].astype(np.float64).reshape(-1)
    if output.kind == "logits":
        values = np.exp(values - values.max())
        values /= values.sum()
    elif output.kind != "probabilities":
        raise ValueError(f"a {output.kind} output has no class score")
    return float(values[output.positive_class])


def read_embedding(output: OutputSignature, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The embedding, L2-normalised (float32)."""
    if output.kind != "embedding":
        raise ValueError(f"a {output.kind} output is not an embedding")
    vector = outputs[output.tensor].astype(np.float32).reshape(-1)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def scaled_box(box: Box, scale: float, fit: str, width: int, height: int) -> Box:
    """``box`` scaled about its centre. ``shift`` (Silent-Face's CropImage): shrink the scale
    until the box fits, then shift it inside the image; ``clip``: cut at the image border."""
    x1, y1, x2, y2 = box
    if fit == "clip":
        return expand_box(box, (scale - 1) / 2, width, height)
    box_w, box_h = x2 - x1, y2 - y1
    scale = min((height - 1) / box_h, (width - 1) / box_w, scale)
    new_w, new_h = box_w * scale, box_h * scale
    left, top = (x1 + x2 - new_w) / 2, (y1 + y2 - new_h) / 2
    left = min(max(left, 0.0), width - 1 - new_w)
    top = min(max(top, 0.0), height - 1 - new_h)
    return (left, top, left + new_w, top + new_h)


def crop(
    item: InputSignature,
    image: np.ndarray,
    face: FaceObservation | None = None,
    eye_box: Box | None = None,
) -> np.ndarray:
    """The region ``item`` names, at its size, as RGB uint8 (H, W, 3); colour order, values
    and layout are applied by ``tensor``."""
    height, width = image.shape[:2]
    size = (item.size[0], item.size[1])
    if item.region == "image":
        whole = Image.fromarray(image)
        return np.asarray(whole.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0))
    if item.region == "face-points":
        return warp_affine(image, _alignment(item, _need(face, item)), size)
    return resample(image, _region(item, width, height, face, eye_box), size)


def source_px_per_input_px(
    signature: ModelSignature, width: int, height: int, face: FaceObservation
) -> float:
    """Image pixels behind one pixel of the model's input, the fewest over its inputs: below 1
    the crop is enlarged, and the model sees interpolation instead of the texture it judges
    (skin, paper, a screen's pixels). Read from the signature alone, as ``crop`` cuts."""
    ratios = []
    for item in signature.inputs:
        if item.region == "image":
            ratios.append(min(width / item.size[0], height / item.size[1]))
        elif item.region == "face-points":
            matrix = _alignment(item, face)
            ratios.append(1.0 / float(np.hypot(matrix[0, 0], matrix[1, 0])))
        elif item.region == "face-box":
            x1, y1, x2, y2 = clip_box(_region(item, width, height, face), width, height)
            ratios.append(min((x2 - x1) / item.size[0], (y2 - y1) / item.size[1]))
    if not ratios:
        raise ValueError("the signature has no input cut from the image or the face")
    return min(ratios)


def _alignment(item: InputSignature, face: FaceObservation) -> np.ndarray:
    """The 2x3 similarity mapping the five points onto the template at the input's size."""
    points = np.asarray(face.landmarks5, np.float64)
    return similarity_transform(points, ARCFACE_TEMPLATE * (np.array(item.size) / 112.0))


def _region(
    item: InputSignature,
    width: int,
    height: int,
    face: FaceObservation | None,
    eye_box: Box | None = None,
) -> Box:
    """The box a face-box or eye-box input resamples (before clipping to the image)."""
    region = eye_box if item.region == "eye-box" else tuple(_need(face, item).box)
    if region is None:
        raise ValueError("an eye-box input needs the eye box")
    return scaled_box(region, item.scale, item.fit, width, height)


def _need(face: FaceObservation | None, item: InputSignature) -> FaceObservation:
    if face is None:
        raise ValueError(f"a {item.region} input needs the face observation")
    return face


def tensor(item: InputSignature, pixels: np.ndarray) -> np.ndarray:
    """RGB uint8 pixels (H, W, 3) -> float32 in the signature's colour, values and layout."""
    if item.colour == "grey":
        pixels = np.asarray(Image.fromarray(pixels).convert("L"))
    values = pixels.astype(np.float32)
    if item.colour == "grey":
        values = values[:, :, None]
    elif item.colour == "BGR":
        values = values[:, :, ::-1]
    values = (values - np.asarray(item.mean, np.float32)) / np.asarray(item.std, np.float32)
    if item.layout == "NCHW":
        values = values.transpose(2, 0, 1)
    return np.ascontiguousarray(values, dtype=np.float32)
