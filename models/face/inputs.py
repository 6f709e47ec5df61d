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

from .geometry import ARCFACE_TEMPLATE, Box, expand_box, resample, similarity_transform, warp_affine


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
        points = np.asarray(_need(face, item).landmarks5, np.float64)
        template = ARCFACE_TEMPLATE * (np.array(size, np.float64) / 112.0)
        return warp_affine(image, similarity_transform(points, template), size)
    region = eye_box if item.region == "eye-box" else tuple(_need(face, item).box)
    if region is None:
        raise ValueError("an eye-box input needs the eye box")
    return resample(image, scaled_box(region, item.scale, item.fit, width, height), size)


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
