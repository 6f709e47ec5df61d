"""Head pose of the subject face, mirror-consistent by construction.

- **yaw** (left/right turn) from the 68 landmarks: the nose tip's place between
  the two sides of the jaw contour at ear level, after levelling the eye line.
  ``asin((left - right) / (left + right))`` is 0 for a frontal face and grows
  with the turn; a mirrored face swaps left and right, so its yaw is exactly
  the negative. Positive when the nose points to the image's right.
  Measured on the face sets (models/lifecycle/labelled_sets.py: 98 photos and
  their mirror images): |yaw + yaw(mirror)| median 1.3 deg, 95th percentile
  4.5; an 8 deg head tilt changes it by 0.6 deg (median). The pose model's yaw
  was not mirror-consistent (photo vs mirror correlated at -0.12, gaps up to
  129 deg, a tilt moved it up to 25 deg), and averaging it over the crop and its
  mirror still left gaps of 31 deg (95th percentile), since the detector's box
  on the mirror image differs.
- **pitch** (up/down) from the pose model on a crop turned so that the eye line
  is level, averaged with the crop's mirror image: a mirror changes no pitch,
  and a head tilt should not either. On the face sets' photos an 8 deg tilt
  moved the model's pitch by up to 21 deg on the upright crop, 6 on the levelled
  one; photo vs mirror image: up to 6.3 deg apart before, 1.5 after.
- **roll** (in-plane tilt) from the eye line: it follows a rotated photo within
  a few degrees, where the pose model's roll drifts past 15 deg.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..serving import Runner
from . import stages
from .geometry import Box
from .mirror import both_ways

# iBUG-68 indices: jaw contour at ear level on the image's left and right, nose tip, eyes.
_JAW_LEFT = (0, 1, 2)
_JAW_RIGHT = (14, 15, 16)
_NOSE_TIP = 30


@dataclass(frozen=True)
class HeadPose:
    yaw_deg: float
    pitch_deg: float
    roll_deg: float


def roll_deg(left_eye: np.ndarray, right_eye: np.ndarray) -> float:
    """The eye line's angle to the horizontal; positive when the right eye is lower."""
    dx, dy = np.asarray(right_eye, np.float64) - np.asarray(left_eye, np.float64)
    return float(np.degrees(np.arctan2(dy, dx)))


def yaw_deg(points68: np.ndarray) -> float:
    """Yaw from the landmark geometry (see the module doc)."""
    points = np.asarray(points68, np.float64)
    left_eye, right_eye = stages.five_points(points)[:2]
    angle = np.radians(roll_deg(left_eye, right_eye))
    level = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    x = (points @ level.T)[:, 0]  # x along the levelled eye line
    left = x[_NOSE_TIP] - x[list(_JAW_LEFT)].mean()
    right = x[list(_JAW_RIGHT)].mean() - x[_NOSE_TIP]
    if left + right <= 0:  # a degenerate contour: no width to judge by
        return 0.0
    return float(np.degrees(np.arcsin(np.clip((left - right) / (left + right), -1.0, 1.0))))


def pitch_deg(pose: Runner, image: np.ndarray, box: Box, roll: float) -> float:
    """The pose model's pitch on the levelled face crop, averaged with its mirror image."""
    readings = both_ways(pose, stages.pose_input(image, box, roll))
    return float(np.mean([stages.read_pose(outputs)[1] for outputs in readings]))


def head_pose(points68: np.ndarray, pose: Runner, image: np.ndarray, box: Box) -> HeadPose:
    left_eye, right_eye = stages.five_points(points68)[:2]
    roll = roll_deg(left_eye, right_eye)
    return HeadPose(yaw_deg(points68), pitch_deg(pose, image, box, roll), roll)
