"""Activity: the quality check of one image (CPU pool).

Decodes the image once, observes its faces and measures quality; what leaves
is a small ``QualityReport`` (face box, five points, measures, reason codes)
that liveness and face match consume — neither detects the face again.
"""

from __future__ import annotations

from temporalio import activity

from domain.contracts import QualityCheckInput, QualityReport
from domain.quality_rules import assess_quality
from models.face import FaceModels, decode_image, observe_faces
from models.serving import ModelServer
from store.blobs import BlobStore

from . import names
from .errors import non_retryable_rejections

QUALITY_TASKS = ("detect", "landmarks", "eye", "pose")


class QualityActivities:
    def __init__(self, server: ModelServer, blobs: BlobStore) -> None:
        self.server = server
        self.blobs = blobs

    @activity.defn(name=names.CHECK_QUALITY)
    @non_retryable_rejections
    def check_quality(self, request: QualityCheckInput) -> QualityReport:
        image = decode_image(self.blobs.get(request.verification_id, request.image))
        models = FaceModels.load(
            self.server, {task: request.models[task] for task in QUALITY_TASKS}
        )
        faces, measures = observe_faces(image, models)
        reasons = assess_quality(request.role, measures)
        return QualityReport(request.role, measures, faces[0] if faces else None, reasons)
