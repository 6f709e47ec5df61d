"""Blob store for images and issued credentials, grouped per verification.

Images never travel through Temporal: the starter writes them here and the
workflow carries a ``BlobRef`` (id + sha256 of the plaintext). Every blob is
encrypted with its verification's data key (envelope encryption, see
``store.envelope``); reads authenticate the ciphertext, then check the
sha256. ``delete_verification`` destroys the data key first (crypto-shredding:
any copy left anywhere is unreadable) and then the files; later reads raise
``BlobPurged``.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import Protocol

from domain.contracts import BlobRef
from domain.errors import BlobIntegrityError, ImageUnreadable
from settings import Settings
from settings.files import private_dir, write_private
from store.envelope import DataKeys, blob_aad, open_data_keys, open_sealed, seal

_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")


class BlobStore(Protocol):
    def put(self, verification_id: str, data: bytes, media_type: str) -> BlobRef: ...

    def get(self, verification_id: str, ref: BlobRef) -> bytes: ...

    def delete_verification(self, verification_id: str, reason: str = "deleted") -> int: ...


def _safe_component(value: str) -> str:
    # Ids become path components: refuse anything that could escape the store.
    if not value or "/" in value or "\\" in value or value in (".", "..") or "\0" in value:
        raise ValueError(f"invalid id for a blob path: {value!r}")
    return value


class EncryptedBlobStore:
    """AES-256-GCM files under ``root/<verification_id>/<blob_id>``, one data key per
    verification."""

    def __init__(self, root: Path, keys: DataKeys) -> None:
        self.root = root
        self.keys = keys

    def _path(self, verification_id: str, blob_id: str) -> Path:
        return self.root / _safe_component(verification_id) / _safe_component(blob_id)

    def put(self, verification_id: str, data: bytes, media_type: str) -> BlobRef:
        if not _MEDIA_TYPE.fullmatch(media_type):
            raise ValueError(f"invalid media type {media_type!r}")
        path = self._path(verification_id, uuid.uuid4().hex)
        key = self.keys.for_writing(verification_id)
        ref = BlobRef(
            blob_id=path.name, sha256=hashlib.sha256(data).hexdigest(), media_type=media_type
        )
        private_dir(path.parent)
        tmp = path.with_suffix(".tmp")
        write_private(tmp, seal(key, data, blob_aad(verification_id, ref.blob_id, media_type)))
        os.replace(tmp, path)  # readers never see a half-written blob
        return ref

    def get(self, verification_id: str, ref: BlobRef) -> bytes:
        key = self.keys.for_reading(verification_id)  # BlobPurged once shredded
        path = self._path(verification_id, ref.blob_id)
        try:
            sealed = path.read_bytes()
        except FileNotFoundError:
            raise ImageUnreadable(f"blob {ref.blob_id} does not exist") from None
        aad = blob_aad(verification_id, ref.blob_id, ref.media_type)
        data = open_sealed(key, sealed, aad, what=f"blob {ref.blob_id}")
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise BlobIntegrityError(f"blob {ref.blob_id} does not match its sha256 reference")
        return data

    def delete_verification(self, verification_id: str, reason: str = "deleted") -> int:
        """Shred the data key, then delete the files; returns how many blobs were deleted."""
        self.keys.shred(verification_id, reason)
        folder = self.root / _safe_component(verification_id)
        if not folder.is_dir():
            return 0
        count = 0
        for path in folder.iterdir():
            path.unlink()
            count += path.suffix != ".tmp"
        folder.rmdir()
        return count


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store every process uses, configured from settings and the blob key ring."""
    return EncryptedBlobStore(settings.blob_dir, open_data_keys(settings))
