"""Face pipeline: decode, detect, landmarks, alignment, crops and quality measures.

Plain typed functions, no Temporal; the activities call the entry points below.
"""

from imaging.decode import ImageLimits, decode_image

from .pipeline import FaceModels, cosine_similarity, face_embedding, liveness_score, observe_faces

__all__ = [
    "FaceModels",
    "ImageLimits",
    "cosine_similarity",
    "decode_image",
    "face_embedding",
    "liveness_score",
    "observe_faces",
]
