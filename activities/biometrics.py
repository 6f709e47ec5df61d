"""Activity: liveness of the selfie and the face match, together (GPU pool).

One task per verification: it reads the face crops the quality check cut
(a few kilobytes from the encrypted blob store, no photo decoded), runs the
liveness and embedding models through the worker's model server and returns
two scores: the embeddings never leave the activity. When a task has a shadow
version it scores in the same activity, from the crops its own signature asks
for (cut by the quality check beside the deciding ones); its failure only loses
its score. Short enough not to heartbeat: a worker that dies mid-way is
noticed by the heartbeat timeout, which runs from the start, and the task
moves to another worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from temporalio import activity

from domain.contracts import BiometricsInput, BiometricsResult, ModelChoice
from domain.enums import ModelTask
from models.face import FaceCrops, FaceModels, crop_liveness, crops_similarity
from models.serving import ModelServer
from store.blobs import BlobStore

from . import metrics, names
from .errors import non_retryable_rejections

log = logging.getLogger(__name__)
SCORE_DECIMALS = 4  # enough to decide; no more of a person's biometrics than needed


class BiometricActivities:
    def __init__(self, server: ModelServer, blobs: BlobStore) -> None:
        self.server = server
        self.blobs = blobs

    @activity.defn(name=names.CHECK_BIOMETRICS)
    @non_retryable_rejections
    def check_biometrics(self, request: BiometricsInput) -> BiometricsResult:
        crops = FaceCrops.from_bytes(self.blobs.get(request.verification_id, request.face_crops))

        def liveness(model: ModelChoice, pixels=crops.liveness) -> float:
            models = FaceModels.load(self.server, {ModelTask.LIVENESS: model})
            score = round(crop_liveness(pixels, models), SCORE_DECIMALS)
            metrics.observe_score("liveness", model.ref, score)
            return score

        def shadow_liveness(model: ModelChoice) -> float:
            # Cut by the quality check as its own signature says (FaceCrops.cut).
            return liveness(model, crops.shadow_liveness_crops())

        def face_match(model: ModelChoice) -> float:
            models = FaceModels.load(self.server, {ModelTask.EMBED: model})
            score = round(crops_similarity(crops, models), SCORE_DECIMALS)
            metrics.observe_score("face_match", model.ref, score)
            return score

        return BiometricsResult(
            liveness(request.liveness),
            face_match(request.embed),
            _shadow(shadow_liveness, request.shadow_liveness),
            _shadow(face_match, request.shadow_embed),
        )


def _shadow(score: Callable[[ModelChoice], float], model: ModelChoice | None) -> float | None:
    """The shadow version's score, or None: a shadow that fails must not touch the decision."""
    if model is None:
        return None
    try:
        return score(model)
    except Exception as error:  # whatever it is, the deciding score stands
        log.warning("shadow %s failed: %s", model.ref, type(error).__name__)
        return None
