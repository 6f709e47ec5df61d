"""Activity: the quality check of both images of a verification (CPU pool).

Decodes each image once, observes its faces and measures quality, the two
images side by side. What leaves is small: a ``QualityReport`` per image (face
box, five points, measures, reason codes) and, when both images show a face,
a reference to the biometric models' face crops, cut here from the decoded
pixels and kept in the encrypted blob store: the GPU pool neither detects nor
decodes again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from temporalio import activity

from domain.contracts import (
    BlobRef,
    ModelChoice,
    QualityCheckInput,
    QualityReport,
    QualityResult,
)
from domain.enums import QUALITY_TASKS, ImageRole, ModelTask
from domain.quality_rules import assess_quality
from models import usage
from models.face import FaceCrops, FaceModels, decode_image, observe_faces
from models.face.crops import MEDIA_TYPE as FACE_CROPS
from models.serving import ModelServer, required_signature
from store.blobs import BlobStore

from . import names
from .errors import non_retryable_rejections


class QualityActivities:
    def __init__(self, server: ModelServer, blobs: BlobStore, concurrency: int) -> None:
        self.server = server
        self.blobs = blobs
        # The document is checked beside the selfie: one extra thread per running activity.
        self._beside = ThreadPoolExecutor(concurrency, thread_name_prefix="quality-document")

    def close(self) -> None:
        self._beside.shutdown()

    @activity.defn(name=names.CHECK_QUALITY)
    @non_retryable_rejections
    def check_quality(self, request: QualityCheckInput) -> QualityResult:
        vid, models = request.verification_id, request.models
        document = self._beside.submit(
            self._check, vid, ImageRole.DOCUMENT, request.document, models
        )
        selfie_image, selfie = self._check(vid, ImageRole.SELFIE, request.selfie, models)
        document_image, document_report = document.result()
        crops = None
        if selfie.face is not None and document_report.face is not None:
            cut = FaceCrops.cut(
                selfie_image,
                selfie.face,
                document_image,
                document_report.face,
                required_signature(models["liveness"]),
                required_signature(models["embed"]),
                request.shadow_liveness.signature if request.shadow_liveness else None,
            )
            crops = self.blobs.put(vid, cut.to_bytes(), FACE_CROPS)
        return QualityResult(selfie, document_report, crops)

    def _check(
        self,
        verification_id: str,
        role: ImageRole,
        ref: BlobRef,
        choices: dict[ModelTask, ModelChoice],
    ) -> tuple[np.ndarray, QualityReport]:
        data = self.blobs.get(verification_id, ref)
        with usage.measure(usage.DECODE):
            image = decode_image(data)  # refuses bad input before any model is asked for
        models = FaceModels.load(self.server, {task: choices[task] for task in QUALITY_TASKS})
        # Liveness judges the selfie only: whether its crops rest on enough pixels is a
        # quality question of the selfie (domain/quality_rules.py).
        liveness = choices.get(ModelTask.LIVENESS) if role is ImageRole.SELFIE else None
        faces, measures = observe_faces(
            image, models, required_signature(liveness) if liveness else None
        )
        reasons = assess_quality(role, measures)
        return image, QualityReport(role, measures, faces[0] if faces else None, reasons)
