"""The face crops a verification's biometric models need, cut once where the images are decoded.

The quality check (CPU pool) decodes both images anyway: it cuts the liveness
crop of the selfie and the aligned faces of both images right there, and the
biometric step (GPU pool) reads these few kilobytes back from the encrypted
blob store instead of fetching, decrypting and decoding both photos again.
The crops are cut as the deciding versions' signatures say (models/face/inputs.py),
exactly what the models would cut from the full images, so scores do not change. A
shadow liveness version whose signature asks for other crops gets its own, cut here
beside the deciding version's (a shadow without a signature gets none, and no score).

They are biometric data: stored encrypted under the verification's data key
like the photos (and shredded with them), never sent through Temporal.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields

import numpy as np

from domain.contracts import FaceObservation
from domain.signatures import ModelSignature

from ..usage import FACE_PIPELINE, measure
from .inputs import crop, liveness_crops, same_crops

MEDIA_TYPE = "application/x-idflow-face-crops"  # an uncompressed NumPy .npz archive
MAX_SIDE = 1024  # no model input is larger


@dataclass(frozen=True)
class FaceCrops:
    """uint8 RGB pixels, cut as the deciding versions' signatures say: the selfie's liveness
    crops (one per input of the liveness signature: (K, H, W, 3)) and both faces as the
    embedding signature cuts them."""

    liveness: np.ndarray  # (K, H, W, 3), inputs.liveness_crops
    selfie_aligned: np.ndarray  # (H, W, 3), inputs.crop
    document_aligned: np.ndarray
    # The shadow liveness version's crops, when they differ from the deciding version's.
    shadow_liveness: np.ndarray | None = None

    @classmethod
    @measure(FACE_PIPELINE)
    def cut(
        cls,
        selfie: np.ndarray,
        selfie_face: FaceObservation,
        document: np.ndarray,
        document_face: FaceObservation,
        liveness: ModelSignature,
        embed: ModelSignature,
        shadow_liveness: ModelSignature | None = None,
    ) -> FaceCrops:
        shadow = None
        if shadow_liveness is not None and not same_crops(shadow_liveness, liveness):
            shadow = liveness_crops(shadow_liveness, selfie, selfie_face)
        return cls(
            liveness=liveness_crops(liveness, selfie, selfie_face),
            selfie_aligned=crop(embed.inputs[0], selfie, selfie_face),
            document_aligned=crop(embed.inputs[0], document, document_face),
            shadow_liveness=shadow,
        )

    def shadow_liveness_crops(self) -> np.ndarray:
        """What a shadow liveness version scores: its own crops, or the deciding version's
        when its signature cuts the same."""
        return self.liveness if self.shadow_liveness is None else self.shadow_liveness

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        arrays = {f.name: getattr(self, f.name) for f in fields(self)}
        np.savez(out, **{name: a for name, a in arrays.items() if a is not None})
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> FaceCrops:
        """Read ``to_bytes`` output back; anything else (wrong arrays, shapes) is refused."""
        dims = {"liveness": 4, "selfie_aligned": 3, "document_aligned": 3, "shadow_liveness": 4}
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        if not set(dims) - {"shadow_liveness"} <= set(arrays) <= set(dims) or any(
            arrays[name].ndim != ndim
            or arrays[name].shape[-1] != 3
            or max(arrays[name].shape[-3:-1]) > MAX_SIDE
            or arrays[name].dtype != np.uint8
            for name, ndim in dims.items()
            if name in arrays
        ):
            raise ValueError("not a face-crops archive of the expected arrays and shapes")
        return cls(**arrays)
