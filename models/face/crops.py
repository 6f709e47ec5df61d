"""The face crops a verification's biometric models need, cut once where the images are decoded.

The quality check (CPU pool) decodes both images anyway: it cuts the liveness
crop of the selfie and the aligned faces of both images right there, and the
biometric step (GPU pool) reads these few kilobytes back from the encrypted
blob store instead of fetching, decrypting and decoding both photos again.
The crops are exactly what ``liveness_input`` and ``embed_input`` would have
cut from the full images, so scores do not change.

They are biometric data: stored encrypted under the verification's data key
like the photos (and shredded with them), never sent through Temporal.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields

import numpy as np

from domain.contracts import FaceObservation

from ..usage import FACE_PIPELINE, measure
from . import stages

MEDIA_TYPE = "application/x-idflow-face-crops"  # an uncompressed NumPy .npz archive


@dataclass(frozen=True)
class FaceCrops:
    """uint8 RGB pixels: the selfie's liveness crop and both faces aligned for the embedding."""

    liveness: np.ndarray  # (128, 128, 3), stages.liveness_crop
    selfie_aligned: np.ndarray  # (112, 112, 3), stages.aligned_face
    document_aligned: np.ndarray

    @classmethod
    @measure(FACE_PIPELINE)
    def cut(
        cls,
        selfie: np.ndarray,
        selfie_face: FaceObservation,
        document: np.ndarray,
        document_face: FaceObservation,
    ) -> FaceCrops:
        x1, y1, x2, y2 = selfie_face.box
        return cls(
            liveness=stages.liveness_crop(selfie, (x1, y1, x2, y2)),
            selfie_aligned=stages.aligned_face(selfie, np.asarray(selfie_face.landmarks5)),
            document_aligned=stages.aligned_face(document, np.asarray(document_face.landmarks5)),
        )

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        np.savez(out, **{f.name: getattr(self, f.name) for f in fields(self)})
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> FaceCrops:
        """Read ``to_bytes`` output back; anything else (wrong arrays, shapes) is refused."""
        expected = {
            "liveness": (*stages.LIVENESS_SIZE[::-1], 3),
            "selfie_aligned": (*stages.ALIGNED_SIZE[::-1], 3),
            "document_aligned": (*stages.ALIGNED_SIZE[::-1], 3),
        }
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        if set(arrays) != set(expected) or any(
            arrays[name].shape != shape or arrays[name].dtype != np.uint8
            for name, shape in expected.items()
        ):
            raise ValueError("not a face-crops archive of the expected arrays and shapes")
        return cls(**arrays)
