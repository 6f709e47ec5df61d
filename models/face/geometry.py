"""Boxes, crops and the similarity alignment shared by the face stages.

Images are RGB ``uint8`` arrays (H, W, 3); boxes are ``(x1, y1, x2, y2)`` in
pixels of that image. Crops clip their box to the image and resample only the
pixels they need, so a 12 MP photo costs no more than a small one.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

Box = tuple[float, float, float, float]

# ArcFace's 112x112 positions of: left eye, right eye, nose tip, mouth left, mouth right.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def clip_box(box: Box, width: int, height: int) -> Box:
    x1, y1, x2, y2 = box
    return (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )


def visible_area(box: Box, width: int, height: int) -> float:
    """Pixels of ``box`` inside the image."""
    x1, y1, x2, y2 = clip_box(box, width, height)
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def square_box(box: Box, width: int, height: int) -> Box:
    """A square of side = the box's height, centred on the box, clipped to the image."""
    x1, y1, x2, y2 = box
    side = y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return clip_box((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), width, height)


def resample(image: np.ndarray, box: Box, size: tuple[int, int], grey: bool = False) -> np.ndarray:
    """The (clipped) box of ``image`` resized to ``size`` = (width, height), bilinear."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = clip_box(box, width, height)
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise ValueError(f"crop box {box} is empty inside a {width}x{height} image")
    left, top = math.floor(x1), math.floor(y1)
    right, bottom = math.ceil(x2), math.ceil(y2)
    patch = Image.fromarray(image[top:bottom, left:right])
    if grey:
        patch = patch.convert("L")
    # reducing_gap: shrink by whole factors first (fast box filter), then bilinear.
    resized = patch.resize(
        size,
        Image.Resampling.BILINEAR,
        reducing_gap=3.0,
        box=(x1 - left, y1 - top, x2 - left, y2 - top),
    )
    return np.asarray(resized)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991) mapping points ``src`` onto ``dst``: 2x3."""
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rotation = u @ np.diag(sign) @ vt
    scale = (singular * sign).sum() / src_c.var(axis=0).sum()
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` mapped by the 2x3 ``matrix`` into an output of ``size``; outside is black."""
    out_w, out_h = size
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    corners = np.array([[0, 0, 1], [out_w, 0, 1], [0, out_h, 1], [out_w, out_h, 1]], float)
    reach = corners @ inverse.T  # where the output's corners come from in the input
    height, width = image.shape[:2]
    left = int(max(0, math.floor(reach[:, 0].min()) - 1))
    top = int(max(0, math.floor(reach[:, 1].min()) - 1))
    right = int(min(width, math.ceil(reach[:, 0].max()) + 1))
    bottom = int(min(height, math.ceil(reach[:, 1].max()) + 1))
    if right <= left or bottom <= top:
        return np.zeros((out_h, out_w, image.shape[2]), np.uint8)
    patch = Image.fromarray(image[top:bottom, left:right])
    a, b, c = inverse[0]
    d, e, f = inverse[1]
    coefficients = (a, b, c - left, d, e, f - top)  # output pixel -> patch pixel
    warped = patch.transform(
        size, Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR
    )
    return np.asarray(warped)
