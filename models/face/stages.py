"""What each face model takes and gives: input tensors and reading of outputs.

One pair of functions per stage of the quality check (``*_input`` builds one
item without batch axis, ``read_*`` interprets that item's outputs), following
the signatures in models/lifecycle/sources.py SIGNATURES, which were measured on real
photos. Liveness and embedding inputs are built from the signature of
whatever version runs (models/face/inputs.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .geometry import (
    Box,
    resample,
    square_box,
    warp_affine,
)

DETECT_SIZE = (320, 240)
DETECT_MIN_SCORE = 0.65
NMS_IOU = 0.4
EYE_PADDING = 1.6
POSE_EXPAND = 0.25
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
# iBUG-68 indices
_LEFT_EYE_CENTRE = (37, 38, 40, 41)
_RIGHT_EYE_CENTRE = (43, 44, 46, 47)
_LEFT_EYE_CORNERS = (36, 39)
_RIGHT_EYE_CORNERS = (42, 45)
_NOSE_TIP = 30


@dataclass(frozen=True)
class Detection:
    box: Box  # square, clipped to the image
    score: float


def _bgr_planes(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> (3, H, W) float32 in B, G, R order."""
    return np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


# detect: faceplugin fr_detect -------------------------------------------------------------


def detector_view(image: np.ndarray) -> np.ndarray:
    """The whole image squeezed to 320x240 RGB, as the detector sees it."""
    small = Image.fromarray(image).resize(DETECT_SIZE, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(small)


def detect_input(view: np.ndarray) -> np.ndarray:
    return (_bgr_planes(view) - 127.0) / 128.0


def read_detections(
    outputs: list[np.ndarray], width: int, height: int, min_score: float = DETECT_MIN_SCORE
) -> list[Detection]:
    scores, boxes = outputs[0][:, 1], outputs[1]
    keep = scores >= min_score
    scores, boxes = scores[keep], boxes[keep] * np.array([width, height, width, height])
    detections = []
    for index in non_max_suppression(boxes, scores, NMS_IOU):
        box = square_box(tuple(float(v) for v in boxes[index]), width, height)
        if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
            detections.append(Detection(box, float(scores[index])))
    return detections


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Indices of the boxes kept, best score first, dropping overlaps above ``iou``."""
    order = list(np.argsort(-scores))
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept: list[int] = []
    while order:
        best, order = order[0], order[1:]
        kept.append(int(best))
        if not order:
            break
        rest = boxes[order]
        w = np.clip(
            np.minimum(rest[:, 2], boxes[best, 2]) - np.maximum(rest[:, 0], boxes[best, 0]), 0, None
        )
        h = np.clip(
            np.minimum(rest[:, 3], boxes[best, 3]) - np.maximum(rest[:, 1], boxes[best, 1]), 0, None
        )
        overlap = w * h / (areas[order] + areas[best] - w * h + 1e-9)
        order = [i for i, o in zip(order, overlap, strict=True) if o <= iou]
    return kept


# landmarks: 68 iBUG points -> 5 points ------------------------------------------------------


def landmarks_input(image: np.ndarray, box: Box) -> np.ndarray:
    grey = resample(image, box, (64, 64), grey=True)
    return (grey.astype(np.float32) / 256.0)[None]


def read_landmarks(outputs: list[np.ndarray], box: Box) -> np.ndarray:
    """The 68 points (68, 2) in image pixels."""
    x1, y1, x2, y2 = box
    points = outputs[0].reshape(68, 2).astype(np.float64)
    return points * [x2 - x1, y2 - y1] + [x1, y1]


def five_points(points68: np.ndarray) -> np.ndarray:
    """Left eye, right eye, nose tip, left and right mouth corner: (5, 2)."""
    return np.array(
        [
            points68[list(_LEFT_EYE_CENTRE)].mean(axis=0),
            points68[list(_RIGHT_EYE_CENTRE)].mean(axis=0),
            points68[_NOSE_TIP],
            points68[[48, 60]].mean(axis=0),
            points68[[54, 64]].mean(axis=0),
        ]
    )


# eye state ----------------------------------------------------------------------------------


def eye_boxes(points68: np.ndarray) -> tuple[Box, Box]:
    """Square boxes around the left and right eye, 1.6x the corner-to-corner width."""
    boxes = []
    for centre, corners in (
        (_LEFT_EYE_CENTRE, _LEFT_EYE_CORNERS),
        (_RIGHT_EYE_CENTRE, _RIGHT_EYE_CORNERS),
    ):
        cx, cy = points68[list(centre)].mean(axis=0)
        side = max(abs(points68[corners[1], 0] - points68[corners[0], 0]) * EYE_PADDING, 2.0)
        boxes.append((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
    return boxes[0], boxes[1]


def eye_input(image: np.ndarray, eye_box: Box) -> np.ndarray:
    return (resample(image, eye_box, (24, 24), grey=True).astype(np.float32) / 255.0)[None]


def read_eye_closed(outputs: list[np.ndarray]) -> float:
    """P(closed)."""
    return float(_softmax(outputs[0].astype(np.float64))[0])


# head pose ----------------------------------------------------------------------------------


def pose_input(image: np.ndarray, box: Box, roll_deg: float = 0.0) -> np.ndarray:
    """The face box grown by POSE_EXPAND on every side and turned by ``roll_deg`` about its
    centre, so that the eye line is level, at 224x224: the pose model's pitch drifts with a
    tilted head (up to 21 degrees for an 8 degree tilt; 6 once levelled)."""
    x1, y1, x2, y2 = box
    angle = math.radians(roll_deg)
    scale = 224 / ((y2 - y1) * (1 + 2 * POSE_EXPAND))
    turn = scale * np.array(
        [[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]]
    )
    shift = np.array([112.0, 112.0]) - turn @ np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    face = warp_affine(image, np.hstack([turn, shift[:, None]]), (224, 224))
    bgr = face[:, :, ::-1].astype(np.float32) / 255.0
    return np.ascontiguousarray(((bgr - _IMAGENET_MEAN) / _IMAGENET_STD).transpose(2, 0, 1))


def read_pose(outputs: list[np.ndarray]) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees: expectation over 66 bins of 3 degrees from -99."""
    bins = np.arange(66, dtype=np.float64)
    yaw, pitch, roll = (float(_softmax(o.astype(np.float64)) @ bins * 3 - 99) for o in outputs[:3])
    return yaw, pitch, roll
