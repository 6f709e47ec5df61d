"""Readings that a mirror image must not change, taken on a crop and on its mirror image.

A selfie camera mirrors and a document does not, so the same face arrives both
ways. The eye-state and pose models read a crop and its mirror image
differently (one photo's eye: P(closed) 0.23, its mirror 0.9999); one run on
both, as a batch of two, gives the two readings to average.
"""

from __future__ import annotations

import numpy as np

from ..serving import Runner


def both_ways(model: Runner, item: np.ndarray) -> list[list[np.ndarray]]:
    """The outputs of ``model`` for ``item`` (C, H, W) and for its left-right mirror image."""
    outputs = model.run_batch(np.stack([item, item[..., ::-1]]))
    return [[output[i] for output in outputs] for i in range(2)]
