"""Typed errors for input that can never succeed, whatever the retry.

Each error carries the reason code the workflow turns into a decision.
Messages name the kind of problem and non-personal facts (sizes, formats,
ids), never image bytes, claims or scores of a person.
Activities raise them as non-retryable Temporal ``ApplicationError`` whose
``type`` is the reason code (see ``activities.errors``).
"""

from __future__ import annotations

from .reasons import ReasonCode


class InputRejected(Exception):
    """Base class: input that no retry can fix."""

    reason: ReasonCode = ReasonCode.INPUT_UNREADABLE


class ImageUnreadable(InputRejected):
    """Corrupt, truncated, empty or otherwise undecodable image bytes."""

    reason = ReasonCode.INPUT_UNREADABLE


class ImageTooLarge(InputRejected):
    """Too many bytes or pixels (including decompression bombs)."""

    reason = ReasonCode.INPUT_TOO_LARGE


class UnsupportedImageFormat(InputRejected):
    """Decodable, but not one of the allowed formats."""

    reason = ReasonCode.INPUT_UNSUPPORTED_FORMAT


class BlobIntegrityError(InputRejected):
    """A blob's content does not match the sha256 of its reference."""

    reason = ReasonCode.INPUT_INTEGRITY


class BlobPurged(InputRejected):
    """The blob's data key was destroyed by retention: it can never be read again."""

    reason = ReasonCode.INPUT_PURGED


class DeviceProofInvalid(InputRejected):
    """The proof of possession of the device key does not hold."""

    reason = ReasonCode.DEVICE_PROOF_INVALID


class ClaimsInvalid(InputRejected):
    """Credential claims are unknown, missing or malformed."""

    reason = ReasonCode.CLAIMS_INVALID


class ModelUnavailable(InputRejected):
    """A pinned model version or alias does not exist in the registry."""

    reason = ReasonCode.MODEL_UNAVAILABLE
