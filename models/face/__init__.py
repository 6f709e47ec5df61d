"""Face pipeline: decode, detect, landmarks, alignment, crops and quality measures.

Plain typed functions, no Temporal; the activities call the entry points below.
"""

from imaging.decode import ImageLimits, decode_image

from .crops import FaceCrops
from .pipeline import (
    FaceModels,
    cosine_similarity,
    crop_liveness,
    crops_similarity,
    face_embedding,
    liveness_score,
    observe_faces,
)

__all__ = [
    "FaceCrops",
    "FaceModels",
    "ImageLimits",
    "cosine_similarity",
    "crop_liveness",
    "crops_similarity",
    "decode_image",
    "face_embedding",
    "liveness_score",
    "observe_faces",
]
