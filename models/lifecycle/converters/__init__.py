"""Converters of published checkpoints to ONNX, without the framework that trained them.

``convert`` takes a checkpoint of a supported architecture family and returns
the ONNX bytes (deterministic: the same checkpoint gives the same sha256).
"""

from __future__ import annotations

from pathlib import Path

from models.cache import sha256_of
from models.errors import ModelHashMismatch

from .minifasnet import ConversionError, minifasnet_onnx
from .torch_checkpoint import CheckpointError, read_state_dict

ARCHITECTURES = {"minifasnet": "MiniFASNet V2 / V1SE (Silent-Face-Anti-Spoofing) PyTorch .pth"}

__all__ = ["ARCHITECTURES", "CheckpointError", "ConversionError", "convert", "convert_file"]


def convert(checkpoint: Path, architecture: str) -> bytes:
    """The ONNX model of ``checkpoint`` (one of ``ARCHITECTURES``)."""
    if architecture != "minifasnet":
        raise ConversionError(
            f"no converter for architecture {architecture!r}; known: {sorted(ARCHITECTURES)}"
        )
    return minifasnet_onnx(read_state_dict(checkpoint))


def convert_file(checkpoint: Path, sha256: str, architecture: str, into: Path) -> Path:
    """Check ``checkpoint`` against ``sha256``, convert it, write ``<stem>.onnx`` into ``into``."""
    actual = sha256_of(checkpoint)
    if actual != sha256:
        raise ModelHashMismatch(f"checkpoint {checkpoint.name}", sha256, actual)
    target = Path(into) / f"{checkpoint.stem}.onnx"
    target.write_bytes(convert(checkpoint, architecture))
    return target
