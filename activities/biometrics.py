"""Activities: liveness of the selfie and the face match (GPU pool).

Both start from the faces the quality check observed, decode each image once,
run their model through the worker's batcher and return a single score: the
embeddings never leave the activity. When the task has a shadow version it
scores the same images in the same activity; its failure only loses its score.
They heartbeat between steps so that a dead worker is noticed within the
heartbeat timeout and the work moves on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from temporalio import activity

from domain.contracts import (
    BlobRef,
    FaceMatchInput,
    FaceMatchResult,
    FaceObservation,
    LivenessInput,
    LivenessResult,
    ModelChoice,
)
from models.face import FaceModels, cosine_similarity, decode_image, face_embedding, liveness_score
from models.serving import ModelServer
from store.blobs import BlobStore

from . import names
from .errors import non_retryable_rejections

log = logging.getLogger(__name__)
SCORE_DECIMALS = 4  # enough to decide; no more of a person's biometrics than needed


class BiometricActivities:
    def __init__(self, server: ModelServer, blobs: BlobStore) -> None:
        self.server = server
        self.blobs = blobs

    @activity.defn(name=names.CHECK_LIVENESS)
    @non_retryable_rejections
    def check_liveness(self, request: LivenessInput) -> LivenessResult:
        image = self._decode(request.verification_id, request.selfie)

        def score(model: ModelChoice) -> float:
            models = FaceModels.load(self.server, {"liveness": model})
            return round(liveness_score(image, request.face, models), SCORE_DECIMALS)

        return LivenessResult(score(request.model), _shadow(score, request.shadow))

    @activity.defn(name=names.MATCH_FACES)
    @non_retryable_rejections
    def match_faces(self, request: FaceMatchInput) -> FaceMatchResult:
        selfie = self._decode(request.verification_id, request.selfie)
        document = self._decode(request.verification_id, request.document)

        def similarity(model: ModelChoice) -> float:
            models = FaceModels.load(self.server, {"embed": model})
            a = self._embed(selfie, request.selfie_face, models)
            b = self._embed(document, request.document_face, models)
            return round(cosine_similarity(a, b), SCORE_DECIMALS)

        return FaceMatchResult(similarity(request.model), _shadow(similarity, request.shadow))

    def _embed(self, image: np.ndarray, face: FaceObservation, models: FaceModels) -> np.ndarray:
        embedding = face_embedding(image, face, models)
        activity.heartbeat()
        return embedding

    def _decode(self, verification_id: str, ref: BlobRef) -> np.ndarray:
        image = decode_image(self.blobs.get(verification_id, ref))
        activity.heartbeat()
        return image


def _shadow(score: Callable[[ModelChoice], float], model: ModelChoice | None) -> float | None:
    """The shadow version's score, or None: a shadow that fails must not touch the decision."""
    if model is None:
        return None
    try:
        return score(model)
    except Exception as error:  # whatever it is, the deciding score stands
        log.warning("shadow %s failed: %s", model.ref, type(error).__name__)
        return None
