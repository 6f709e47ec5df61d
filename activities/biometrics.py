"""Activities: liveness of the selfie and the face match (GPU pool).

Both start from the faces the quality check observed, decode each image once,
run their model through the worker's batcher and return a single score: the
embeddings never leave the activity. They heartbeat between steps so that a
dead worker is noticed within the heartbeat timeout and the work moves on.
"""

from __future__ import annotations

import numpy as np
from temporalio import activity

from domain.contracts import (
    BlobRef,
    FaceMatchInput,
    FaceMatchResult,
    FaceObservation,
    LivenessInput,
    LivenessResult,
)
from models.face import FaceModels, cosine_similarity, decode_image, face_embedding, liveness_score
from models.serving import ModelServer
from store.blobs import BlobStore

from . import names
from .errors import non_retryable_rejections

SCORE_DECIMALS = 4  # enough to decide; no more of a person's biometrics than needed


class BiometricActivities:
    def __init__(self, server: ModelServer, blobs: BlobStore) -> None:
        self.server = server
        self.blobs = blobs

    @activity.defn(name=names.CHECK_LIVENESS)
    @non_retryable_rejections
    def check_liveness(self, request: LivenessInput) -> LivenessResult:
        models = FaceModels.load(self.server, {"liveness": request.model})
        image = self._decode(request.verification_id, request.selfie)
        score = liveness_score(image, request.face, models)
        return LivenessResult(round(score, SCORE_DECIMALS))

    @activity.defn(name=names.MATCH_FACES)
    @non_retryable_rejections
    def match_faces(self, request: FaceMatchInput) -> FaceMatchResult:
        models = FaceModels.load(self.server, {"embed": request.model})
        selfie = self._embed(request.verification_id, request.selfie, request.selfie_face, models)
        document = self._embed(
            request.verification_id, request.document, request.document_face, models
        )
        return FaceMatchResult(round(cosine_similarity(selfie, document), SCORE_DECIMALS))

    def _embed(
        self, verification_id: str, ref: BlobRef, face: FaceObservation, models: FaceModels
    ) -> np.ndarray:
        embedding = face_embedding(self._decode(verification_id, ref), face, models)
        activity.heartbeat()
        return embedding

    def _decode(self, verification_id: str, ref: BlobRef) -> np.ndarray:
        image = decode_image(self.blobs.get(verification_id, ref))
        activity.heartbeat()
        return image
