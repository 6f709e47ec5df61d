"""Blob store for images and issued credentials, grouped per verification.

Images never travel through Temporal: the starter writes them here and the
workflow carries a ``BlobRef`` (id + sha256). Reads check the sha256.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from verification.contracts import BlobRef
from verification.errors import BlobIntegrityError, ImageUnreadable

if TYPE_CHECKING:
    from settings import Settings


class BlobStore(Protocol):
    def put(self, verification_id: str, data: bytes, media_type: str) -> BlobRef: ...

    def get(self, verification_id: str, ref: BlobRef) -> bytes: ...

    def delete_verification(self, verification_id: str) -> int: ...


def _safe_component(value: str) -> str:
    # Ids become path components: refuse anything that could escape the store.
    if not value or "/" in value or "\\" in value or value in (".", "..") or "\0" in value:
        raise ValueError(f"invalid id for a blob path: {value!r}")
    return value


class FilesystemBlobStore:
    """Plain files under ``root/<verification_id>/<blob_id>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, verification_id: str, blob_id: str) -> Path:
        return self.root / _safe_component(verification_id) / _safe_component(blob_id)

    def put(self, verification_id: str, data: bytes, media_type: str) -> BlobRef:
        ref = BlobRef(
            blob_id=uuid.uuid4().hex,
            sha256=hashlib.sha256(data).hexdigest(),
            media_type=media_type,
        )
        path = self._path(verification_id, ref.blob_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers never see a half-written blob
        return ref

    def get(self, verification_id: str, ref: BlobRef) -> bytes:
        path = self._path(verification_id, ref.blob_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImageUnreadable(f"blob {ref.blob_id} does not exist") from None
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise BlobIntegrityError(f"blob {ref.blob_id} does not match its sha256 reference")
        return data

    def delete_verification(self, verification_id: str) -> int:
        folder = self.root / _safe_component(verification_id)
        if not folder.is_dir():
            return 0
        count = 0
        for path in folder.iterdir():
            path.unlink()
            count += 1
        folder.rmdir()
        return count


def open_blob_store(settings: "Settings") -> BlobStore:
    """The blob store every process uses, configured from settings."""
    return FilesystemBlobStore(settings.blob_dir)
