"""Typed names for the model tasks and the image roles.

Both are StrEnums: their values are the strings recorded in histories, the
registry and the result, so ``ModelTask.LIVENESS == "liveness"`` and a
recorded ``"liveness"`` still reads as ``ModelTask.LIVENESS``.
"""

from __future__ import annotations

from enum import StrEnum


class ModelTask(StrEnum):
    """What a model does; the registry keeps versions and aliases per task."""

    DETECT = "detect"
    LANDMARKS = "landmarks"
    EMBED = "embed"
    LIVENESS = "liveness"
    EYE = "eye"
    POSE = "pose"


# Find a face and measure it: the quality check runs these (CPU pool).
QUALITY_TASKS = (ModelTask.DETECT, ModelTask.LANDMARKS, ModelTask.EYE, ModelTask.POSE)
# Their scores decide, so they need thresholds: served batched on the GPU
# pool and evaluated against labelled sets.
DECIDING_TASKS = (ModelTask.LIVENESS, ModelTask.EMBED)


class ImageRole(StrEnum):
    """Which of the two images of a verification: rules differ per role."""

    SELFIE = "selfie"
    DOCUMENT = "document"
