"""Model-free image quality measures of a face (or of the whole picture).

Measured on a fixed-size grey view of the region, so that numbers compare
across photo resolutions: a 128x128 view of the face box, or the detector's
320x240 view of the whole image when there is no face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .geometry import Box, resample

FACE_VIEW = (128, 128)
DARK_LEVEL = 5
BRIGHT_LEVEL = 250


@dataclass(frozen=True)
class Exposure:
    sharpness: float  # variance of the 4-neighbour Laplacian
    brightness: float  # mean luma 0..255
    contrast: float  # std of luma
    clipped_dark: float  # fraction of pixels <= 5
    clipped_bright: float  # fraction of pixels >= 250


def grey(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


def face_view(image: np.ndarray, box: Box) -> np.ndarray:
    return resample(image, box, FACE_VIEW, grey=True)


def exposure(grey: np.ndarray) -> Exposure:
    """Measures of a grey ``uint8`` view (H, W)."""
    luma = grey.astype(np.float32)
    return Exposure(
        sharpness=round(laplacian_variance(luma), 1),
        brightness=round(float(luma.mean()), 1),
        contrast=round(float(luma.std()), 1),
        clipped_dark=round(float((grey <= DARK_LEVEL).mean()), 4),
        clipped_bright=round(float((grey >= BRIGHT_LEVEL).mean()), 4),
    )


def laplacian_variance(luma: np.ndarray) -> float:
    """Variance of the Laplacian: high for crisp edges, low for blur."""
    centre = luma[1:-1, 1:-1]
    laplacian = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * centre
    return float(laplacian.var())
