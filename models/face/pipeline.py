"""The face pipeline: what the quality, liveness and face-match activities call.

``observe_faces`` runs once per image (CPU pool): detect -> pick the subject
face (models/face/selection.py) -> 68 landmarks -> five points, plus the
quality measures of the subject face (exposure, size, eye state, head pose:
models/face/pose.py). Its small ``FaceObservation`` is all that later stages
need: ``liveness_score`` and ``face_embedding`` crop and align from it without
detecting again. In the service the quality check cuts those crops once
(``FaceCrops``) and the GPU pool scores them (``crop_liveness``,
``crops_similarity``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import numpy as np

from domain.contracts import FaceObservation, ModelChoice, QualityMeasures
from domain.enums import ModelTask
from domain.signatures import ModelSignature

from ..serving import ModelServer, Runner
from ..usage import FACE_PIPELINE, measure
from . import stages
from .crops import FaceCrops
from .geometry import Box, visible_area
from .inputs import (
    crop,
    input_from_crops,
    liveness_crops,
    read_embedding,
    read_score,
    source_px_per_input_px,
)
from .mirror import both_ways
from .pose import head_pose
from .quality import exposure, face_view, grey
from .selection import select_faces

MAX_FACES = 16  # faces observed in full; more are only counted


@dataclass(frozen=True)
class FaceModels:
    """The runners a worker serves, one field per ModelTask. Unused ones stay None."""

    detect: Runner | None = None
    landmarks: Runner | None = None
    eye: Runner | None = None
    pose: Runner | None = None
    liveness: Runner | None = None
    embed: Runner | None = None

    @classmethod
    def load(cls, server: ModelServer, choices: Mapping[ModelTask, ModelChoice]) -> FaceModels:
        """One runner per task of ``choices`` (task -> exact model version)."""
        tasks = {f.name for f in fields(cls)}
        unknown = set(choices) - tasks
        if unknown:
            raise ValueError(f"no face stage for tasks {sorted(unknown)}; known: {sorted(tasks)}")
        return cls(**{task: server.runner(choice) for task, choice in choices.items()})

    def need(self, task: ModelTask) -> Runner:
        runner = getattr(self, task)
        if runner is None:
            raise ValueError(f"this worker serves no {task!r} model")
        return runner


@measure(FACE_PIPELINE)
def observe_faces(
    image: np.ndarray, models: FaceModels, liveness: ModelSignature | None = None
) -> tuple[list[FaceObservation], QualityMeasures]:
    """The subject face first, then the other faces that count (see selection.py), and the
    quality measures of the subject (or of the whole image when there is no face). With the
    ``liveness`` signature (a selfie), also how many image pixels its crops would rest on."""
    height, width = image.shape[:2]
    view = stages.detector_view(image)
    detections = select_faces(
        stages.read_detections(
            models.need(ModelTask.DETECT).run(stages.detect_input(view)), width, height
        )
    )
    faces, points = [], []
    for detection in detections[:MAX_FACES]:
        points68 = stages.read_landmarks(
            models.need(ModelTask.LANDMARKS).run(stages.landmarks_input(image, detection.box)),
            detection.box,
        )
        points.append(points68)
        faces.append(
            FaceObservation(
                box=[round(v, 2) for v in detection.box],
                landmarks5=[[round(float(v), 2) for v in p] for p in stages.five_points(points68)],
                detection_score=round(detection.score, 4),
            )
        )
    if not faces:
        return [], QualityMeasures(
            width=width, height=height, face_count=0, **vars(exposure(grey(view)))
        )
    measures = _face_measures(image, faces[0], points[0], len(detections), models)
    if liveness is not None:
        reach = source_px_per_input_px(liveness, width, height, faces[0])
        measures = replace(measures, liveness_source_px=round(reach, 3))
    return faces, measures


def _face_measures(
    image: np.ndarray,
    face: FaceObservation,
    points68: np.ndarray,
    face_count: int,
    models: FaceModels,
) -> QualityMeasures:
    height, width = image.shape[:2]
    box = _box(face)
    left_eye, right_eye = np.asarray(face.landmarks5[:2])
    # Eyes are closed when both read closed (a blink): one eye misread at the image border, in
    # shadow or on a turned face must not send a photo back. An eye cut off by the border has
    # nothing to judge: the other eye decides. On the face sets' photos and their mirror images
    # this reads both sides alike (95th percentile gap 0.002).
    eyes = [b for b in stages.eye_boxes(points68) if visible_area(b, width, height) >= 4]
    eyes_closed = min(
        (_eye_closed(models.need(ModelTask.EYE), image, b) for b in eyes), default=None
    )
    pose = head_pose(points68, models.need(ModelTask.POSE), image, box)
    return QualityMeasures(
        width=width,
        height=height,
        face_count=face_count,
        **vars(exposure(face_view(image, box))),
        face_size_px=round(box[3] - box[1], 1),
        inter_eye_px=round(float(np.hypot(*(right_eye - left_eye))), 1),
        roll_deg=round(pose.roll_deg, 1),
        yaw_deg=round(pose.yaw_deg, 1),
        pitch_deg=round(pose.pitch_deg, 1),
        eyes_closed=None if eyes_closed is None else round(eyes_closed, 4),
    )


def _eye_closed(eye: Runner, image: np.ndarray, box: Box) -> float:
    """P(closed) of one eye, the mean of its crop's and its mirror image's readings."""
    readings = both_ways(eye, stages.eye_input(image, box))
    return float(np.mean([stages.read_eye_closed(outputs) for outputs in readings]))


@measure(FACE_PIPELINE)
def liveness_score(image: np.ndarray, face: FaceObservation, models: FaceModels) -> float:
    """P(bona fide) of the face: high for a live capture, low for a print or a screen."""
    runner = models.need(ModelTask.LIVENESS)
    return crop_liveness(liveness_crops(runner.signature, image, face), models)


@measure(FACE_PIPELINE)
def crop_liveness(crops: np.ndarray, models: FaceModels) -> float:
    """P(bona fide) from the selfie's liveness crops (``liveness_crops``: one per input of the
    version's signature)."""
    runner = models.need(ModelTask.LIVENESS)
    signature = runner.signature
    return read_score(signature.output, runner.run_named(input_from_crops(signature, crops)))


@measure(FACE_PIPELINE)
def face_embedding(image: np.ndarray, face: FaceObservation, models: FaceModels) -> np.ndarray:
    """The face's identity vector, L2-normalised (float32)."""
    runner = models.need(ModelTask.EMBED)
    return aligned_embedding(crop(runner.signature.inputs[0], image, face), models)


def aligned_embedding(aligned: np.ndarray, models: FaceModels) -> np.ndarray:
    """The embedding of a face already cut as the version's signature says (``crop``)."""
    runner = models.need(ModelTask.EMBED)
    signature = runner.signature
    return read_embedding(
        signature.output, runner.run_named(input_from_crops(signature, aligned[None]))
    )


@measure(FACE_PIPELINE)
def crops_similarity(crops: FaceCrops, models: FaceModels) -> float:
    """The cosine similarity of the selfie's and the document's face, from their crops."""
    return cosine_similarity(
        aligned_embedding(crops.selfie_aligned, models),
        aligned_embedding(crops.document_aligned, models),
    )


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two embeddings: about 1 for the same face, about 0 for strangers."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def _box(face: FaceObservation) -> Box:
    x1, y1, x2, y2 = face.box
    return (float(x1), float(y1), float(x2), float(y2))
